//! Harness for workspace-level tests: builds the workspace once, prepares
//! plugin directories with the real `.so` files, and runs the real
//! `threatbus` binary.
//!
//! The harness builds with the same profile as the tests (`debug` unless
//! `THREATBUS_TEST_PROFILE=release`).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long tests wait for the bus to show something before giving up.
pub const WAIT: Duration = Duration::from_secs(30);

/// Root of the cargo workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn release() -> bool {
    std::env::var("THREATBUS_TEST_PROFILE").is_ok_and(|p| p == "release")
}

/// Directory holding the built binary and plugin libraries.
pub fn artifact_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    target.join(if release() { "release" } else { "debug" })
}

/// Builds every crate of the workspace once per test process.
pub fn build() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root()).args(["build", "--workspace", "--lib", "--bins"]);
        if release() {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build --workspace failed");
    });
}

/// Path of the `threatbus` binary (built on first use).
pub fn threatbus_bin() -> PathBuf {
    build();
    artifact_dir().join("threatbus")
}

/// Path of a built plugin library by its crate lib name, e.g.
/// `threatbus_backbone_inmem` → `…/libthreatbus_backbone_inmem.so`.
pub fn plugin_lib(lib_name: &str) -> PathBuf {
    build();
    let p = artifact_dir().join(format!("lib{lib_name}.so"));
    assert!(p.exists(), "plugin library {} was not built", p.display());
    p
}

/// A private plugin directory (mode 0755) with copies of plugin libraries
/// (mode 0644), removed when dropped.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    /// A directory with the given plugins (crate lib names).
    pub fn with(libs: &[&str]) -> PluginDir {
        let d = PluginDir { dir: tempfile::tempdir().expect("tempdir") };
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
        for lib in libs {
            d.add(lib);
        }
        d
    }

    /// Copies a built plugin into the directory under its usual file name.
    pub fn add(&self, lib: &str) -> PathBuf {
        self.add_as(lib, &format!("lib{lib}.so"))
    }

    /// Copies a built plugin into the directory as `file_name`.
    pub fn add_as(&self, lib: &str, file_name: &str) -> PathBuf {
        self.add_file(&plugin_lib(lib), file_name)
    }

    /// Copies any file into the directory as `file_name`, mode 0644.
    pub fn add_file(&self, src: &Path, file_name: &str) -> PathBuf {
        let dst = self.path().join(file_name);
        std::fs::copy(src, &dst).expect("copy plugin");
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644)).expect("chmod plugin");
        dst
    }

    /// Writes raw bytes into the directory as `file_name`, mode 0644.
    pub fn add_bytes(&self, bytes: &[u8], file_name: &str) -> PathBuf {
        let dst = self.path().join(file_name);
        std::fs::write(&dst, bytes).expect("write file");
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o644)).expect("chmod file");
        dst
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A TCP port on 127.0.0.1 that is free now, for a process under test to bind.
pub fn free_port() -> u16 {
    // Not from the kernel's ephemeral range (32768 and up on Linux): a port
    // from there can be taken by any outgoing connection (e.g. a bus's own
    // AMQP client) before the process under test binds it. Each test
    // process walks its own sequence through 20000..32000 and skips ports
    // in use.
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % 12_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((start + n.wrapping_mul(7)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[derive(Default)]
struct LogBuf {
    text: Mutex<String>,
    grew: Condvar,
}

/// A running `threatbus` process with its captured output.
pub struct Bus {
    child: Option<Child>,
    log: Arc<LogBuf>,
    _config: Option<tempfile::NamedTempFile>,
}

impl Bus {
    /// Starts `threatbus -c <config> --plugin-dir <dir>`.
    pub fn start(config_yaml: &str, plugin_dir: &Path) -> Bus {
        Self::start_with_env(config_yaml, plugin_dir, &[])
    }

    /// Like [`Bus::start`] with extra environment variables.
    pub fn start_with_env(config_yaml: &str, plugin_dir: &Path, env: &[(&str, &str)]) -> Bus {
        let config = tempfile::Builder::new().suffix(".yaml").tempfile().expect("config file");
        std::fs::write(config.path(), config_yaml).expect("write config");
        let mut bus = Self::spawn_args(
            &[OsStr::new("-c"), config.path().as_os_str(), OsStr::new("--plugin-dir"), plugin_dir.as_os_str()],
            env,
        );
        bus._config = Some(config);
        bus
    }

    /// Starts `threatbus <args>` (e.g. with a config file of the caller's).
    pub fn spawn_args(args: &[&OsStr], env: &[(&str, &str)]) -> Bus {
        Self::spawn_bin(&threatbus_bin(), args, env)
    }

    /// Like [`Bus::start`], with another build of the host.
    pub fn start_bin(bin: &Path, config_yaml: &str, plugin_dir: &Path) -> Bus {
        let config = tempfile::Builder::new().suffix(".yaml").tempfile().expect("config file");
        std::fs::write(config.path(), config_yaml).expect("write config");
        let mut bus = Self::spawn_bin(
            bin,
            &[OsStr::new("-c"), config.path().as_os_str(), OsStr::new("--plugin-dir"), plugin_dir.as_os_str()],
            &[],
        );
        bus._config = Some(config);
        bus
    }

    /// Starts `<bin> <args>`, where `bin` is a build of the host.
    pub fn spawn_bin(bin: &Path, args: &[&OsStr], env: &[(&str, &str)]) -> Bus {
        let mut cmd = host_command(bin, &[], env);
        cmd.args(args);
        let mut child = cmd.spawn().expect("spawn threatbus");
        let log = Arc::new(LogBuf::default());
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os("THREATBUS_TEST_ECHO").is_some() {
                        eprintln!("bus| {line}");
                    }
                    let mut t = log.text.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                    log.grew.notify_all();
                }
            });
        }
        Bus { child: Some(child), log, _config: None }
    }

    /// Everything the bus printed so far.
    pub fn log(&self) -> String {
        self.log.text.lock().unwrap().clone()
    }

    /// How often `needle` occurs in the output so far.
    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Waits until the output contains `needle`; panics with the output if
    /// it does not appear within [`WAIT`] or the process exits first.
    pub fn wait_for(&mut self, needle: &str) {
        self.wait_for_count(needle, 1)
    }

    /// Waits until `needle` occurs at least `n` times.
    pub fn wait_for_count(&mut self, needle: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        let mut text = self.log.text.lock().unwrap();
        loop {
            if text.matches(needle).count() >= n {
                return;
            }
            let now = Instant::now();
            let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if now >= deadline || exited {
                drop(text);
                // Let the reader threads catch up with the last lines.
                std::thread::sleep(Duration::from_millis(200));
                let log = self.log();
                if log.matches(needle).count() >= n {
                    return;
                }
                panic!("bus output did not contain {n}x {needle:?} (exited: {exited}); output:\n{log}");
            }
            text = self.log.grew.wait_timeout(text, Duration::from_millis(100)).unwrap().0;
        }
    }

    /// Sends a signal to the bus.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Waits for the process to exit, at most `limit`. `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM and wait (up to [`WAIT`]); panics with the output if the bus
    /// does not exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(WAIT) {
            Some(st) => st,
            None => panic!("bus did not exit after SIGTERM; output:\n{}", self.log()),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A `threatbus <args>` command with piped output, a clean environment (no
/// `RUST_LOG`, no stray `THREATBUS_*` config overrides) plus `env`.
pub fn threatbus_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    host_command(&threatbus_bin(), args, env)
}

/// Like [`threatbus_command`], with another build of the host.
pub fn host_command(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args).env_remove("RUST_LOG").env_remove("THREATBUS_PLUGIN_DIR");
    remove_threatbus_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Runs `threatbus <args>` to completion (for `plugins list`, failing
/// start-ups and the like), with a time limit of [`WAIT`].
pub fn run_threatbus(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_host(&threatbus_bin(), args, env)
}

/// Like [`run_threatbus`], with another build of the host.
pub fn run_host(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = host_command(bin, args, env);
    let mut child = cmd.spawn().expect("spawn threatbus");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "threatbus {args:?} did not finish; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes a config file with the given YAML into a temp file and returns it.
pub fn config_file(yaml: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".yaml").tempfile().expect("config file");
    std::fs::write(f.path(), yaml).expect("write config");
    f
}

/// A field of the frozen plugin manifest that [`patched_plugin`] can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclField {
    /// The 16 magic bytes (patched to a wrong magic; the value is ignored).
    Magic,
    /// `abi_major`.
    AbiMajor,
    /// `abi_minor`.
    AbiMinor,
    /// `kind` (1 = app, 2 = backbone).
    Kind,
    /// `panic_unwind` (0 = built with panic=abort).
    PanicUnwind,
}

/// Byte offset of the plugin manifest inside a library file: the one
/// occurrence of the magic that is followed by the manifest size of
/// this plugin-api.
pub fn manifest_offset(bytes: &[u8]) -> usize {
    use threatbus_plugin_api::abi::{PluginManifest, PLUGIN_MAGIC};
    let size = (std::mem::size_of::<PluginManifest>() as u32).to_le_bytes();
    let hits: Vec<usize> = bytes
        .windows(20)
        .enumerate()
        .filter(|(_, w)| w[..16] == PLUGIN_MAGIC && w[16..20] == size)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "expected exactly one plugin manifest in the library, found {}", hits.len());
    hits[0]
}

/// The bytes of a built plugin library (crate lib name) with one field of its
/// manifest changed, e.g. `patched_plugin("threatbus_test_app", DeclField::AbiMajor, 2)`.
pub fn patched_plugin(lib: &str, field: DeclField, value: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(plugin_lib(lib)).expect("read plugin library");
    let at = manifest_offset(&bytes);
    let field_at = |i: usize| at + 16 + 4 * i;
    match field {
        DeclField::Magic => bytes[at + 15] ^= 0x20,
        DeclField::AbiMajor => bytes[field_at(1)..field_at(1) + 4].copy_from_slice(&value.to_le_bytes()),
        DeclField::AbiMinor => bytes[field_at(2)..field_at(2) + 4].copy_from_slice(&value.to_le_bytes()),
        DeclField::Kind => bytes[field_at(3)..field_at(3) + 4].copy_from_slice(&value.to_le_bytes()),
        DeclField::PanicUnwind => bytes[field_at(4)..field_at(4) + 4].copy_from_slice(&value.to_le_bytes()),
    }
    bytes
}

/// The bytes of a built plugin library with every occurrence of `from`
/// replaced by `to` (same length), e.g. to rename the test plugin
/// `testapp` to `testap2` so that two instances of it can run at once.
pub fn renamed_plugin(lib: &str, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "replacement must keep the length");
    let mut bytes = std::fs::read(plugin_lib(lib)).expect("read plugin library");
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(n > 0, "{from:?} not found in {lib}");
    bytes
}

/// Removes every inherited `THREATBUS_*` variable (e.g. the harness's own
/// `THREATBUS_TEST_ECHO`) from `cmd`: the host reads them as config
/// overrides and would reject the unknown keys.
pub fn remove_threatbus_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("THREATBUS_") {
            cmd.env_remove(k);
        }
    }
}

/// Runs cargo with `args` in the workspace and asserts that it succeeds.
fn cargo(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo).current_dir(workspace_root()).args(args).status().expect("run cargo");
    assert!(status.success(), "cargo {} failed", args.join(" "));
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// The backbone plugin built against the frozen ABI 1.0 definitions
/// (`tests/fixtures/abi-1.0-backbone`, outside the workspace), built once.
pub fn frozen_abi_1_0_backbone() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_frozen_fixture("abi-1.0-backbone", "threatbus_frozen_abi_1_0_backbone")).clone()
}

/// The ABI 1.0 app built against the frozen definitions
/// (`tests/fixtures/abi-1.0-app`, outside the workspace), built once.
pub fn frozen_abi_1_0_app() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_frozen_fixture("abi-1.0-app", "threatbus_frozen_abi_1_0_app")).clone()
}

/// Builds the fixture crate `tests/fixtures/<dir>` into its own target
/// directory; returns the path of `lib<lib>.so`.
fn build_frozen_fixture(dir: &str, lib: &str) -> PathBuf {
    let target = target_dir().join("abi-fixtures");
    let manifest = workspace_root().join(format!("tests/fixtures/{dir}/Cargo.toml"));
    cargo(&[
        "build",
        "--manifest-path",
        manifest.to_str().expect("utf-8 path"),
        "--target-dir",
        target.to_str().expect("utf-8 path"),
    ]);
    target.join(format!("debug/lib{lib}.so"))
}

/// The artifact directory of the `abi-next` build: host and test plugin of
/// ABI minor + 1 (one appended entry in the host and plugin tables), built
/// once into their own target directory.
pub fn abi_next_artifacts() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = target_dir().join("abi-next");
            cargo(&[
                "build",
                "-p",
                "threatbus",
                "-p",
                "threatbus-test-app",
                "--features",
                "threatbus/abi-next",
                "--target-dir",
                dir.to_str().expect("utf-8 path"),
            ]);
            dir.join("debug")
        })
        .clone()
}

/// The commented-out `plugins.apps.<name>` section of `config.yaml.example`,
/// uncommented, indented for `plugins.apps` (four spaces), up to the next
/// app's section.
pub fn example_app_section(name: &str) -> String {
    let example = std::fs::read_to_string(workspace_root().join("config.yaml.example")).expect("config.yaml.example");
    let head = format!("    # {name}:");
    let start = example.find(&head).unwrap_or_else(|| panic!("no {name} section in config.yaml.example"));
    let is_app_head = |l: &str| {
        l.strip_prefix("    # ")
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    };
    let mut out = String::new();
    for (i, l) in example[start..].lines().enumerate() {
        if !l.starts_with("    #") || (i > 0 && is_app_head(l)) {
            break;
        }
        out.push_str("    ");
        out.push_str(&l[6..]);
        out.push('\n');
    }
    out
}
