//! End to end with real third-party software: Suricata (Debian package from
//! bookworm-backports) in unix-socket mode and the published
//! `suricata-threatbus` app from PyPI, subscribed to our bus. An indicator
//! with `pattern_type: suricata` becomes a loaded Suricata rule; a REMOVE
//! update removes it again. Installed by `.ci/suricata-setup.sh`; in CI
//! (`CI=true`) a missing installation fails the test.

mod zmq_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use threatbus_integration_tests::*;
use zmq_support::*;

/// Kills a child process when dropped (also when the test fails).
struct Proc(Child);

impl Proc {
    fn terminate(&mut self) -> bool {
        // SAFETY: a plain signal to our own child, not yet waited for (so
        // its pid is not reused).
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

fn app_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SURICATA_THREATBUS_BIN") {
        return Some(PathBuf::from(p));
    }
    let venv = std::env::var("THREATBUS_APPS_VENV").unwrap_or_else(|_| "/opt/threatbus-apps".into());
    let p = Path::new(&venv).join("bin/suricata-threatbus");
    if p.is_file() {
        return Some(p);
    }
    which("suricata-threatbus")
}

/// Runs `suricatasc -c <cmd> <socket>` and returns its JSON answer.
fn suricatasc(socket: &Path, cmd: &str) -> Option<serde_json::Value> {
    let out = Command::new("suricatasc").args(["-c", cmd]).arg(socket).output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn rules_loaded(socket: &Path) -> Option<u64> {
    let v = suricatasc(socket, "ruleset-stats")?;
    v["message"][0]["rules_loaded"].as_u64()
}

/// Polls `f` until it is true; panics with `what` and `context()` after [`WAIT`].
fn eventually(what: &str, mut f: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "{what} did not happen within {WAIT:?}\n{}", context());
        std::thread::sleep(Duration::from_millis(200));
    }
}

const RULE: &str = r#"alert ip any any -> 6.6.6.6 any (msg:"threatbus e2e"; sid:7130001; rev:1;)"#;

fn suricata_indicator(update: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--7130e2e0-0000-4000-8000-000000000001",
        "created": "2022-05-16T10:00:00.000Z",
        "modified": "2022-05-16T10:00:00.000Z",
        "pattern": RULE,
        "pattern_type": "suricata",
        "valid_from": "2022-05-16T10:00:00Z",
    });
    if let Some(u) = update {
        v["x_threatbus_update"] = u.into();
    }
    v.to_string()
}

#[test]
fn suricata_threatbus_loads_and_removes_a_rule() {
    let (Some(app), Some(_)) = (app_bin(), which("suricata").and(which("suricatasc"))) else {
        panic!("this test needs Suricata and suricata-threatbus: run `bash tests/run.sh`, which installs them");
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("log")).unwrap();
    let rules = d.join("threatbus.rules");
    std::fs::write(&rules, "").unwrap();
    let socket = d.join("command.socket");

    // A copy of the packaged suricata.yaml that reads the rules file from
    // disk (a reload re-reads the YAML, so `-S` would not survive it).
    let yaml = std::fs::read_to_string("/etc/suricata/suricata.yaml").expect("packaged suricata.yaml");
    let mut patched = 0;
    let yaml: String = yaml
        .lines()
        .map(|l| {
            let new = if l.starts_with("default-log-dir:") {
                format!("default-log-dir: {}", d.join("log").display())
            } else if l.starts_with("default-rule-path:") {
                format!("default-rule-path: {}", d.display())
            } else if l == "  - suricata.rules" {
                "  - threatbus.rules".to_string()
            } else if l.trim_start().starts_with("filename:") && l.contains("suricata-command.socket") {
                format!("  filename: {}", socket.display())
            } else {
                return format!("{l}\n");
            };
            patched += 1;
            format!("{new}\n")
        })
        .collect();
    assert_eq!(patched, 4, "the layout of /etc/suricata/suricata.yaml changed");
    std::fs::write(d.join("suricata.yaml"), yaml).unwrap();

    let mut bus = ZmqBus::start();
    let suricata_log = d.join("suricata.out");
    let mut suricata = Proc(
        Command::new("suricata")
            .arg("-c")
            .arg(d.join("suricata.yaml"))
            .arg("--unix-socket")
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&suricata_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start suricata"),
    );
    let suri_out = || std::fs::read_to_string(&suricata_log).unwrap_or_default();
    eventually("suricata answering on its unix socket", || rules_loaded(&socket) == Some(0), suri_out);

    std::fs::write(
        d.join("config.yaml"),
        format!(
            "logging:\n  console: true\n  console_verbosity: DEBUG\n  file: false\nthreatbus: 127.0.0.1:{}\nsocket: {}\nrules_file: {}\nreload_interval: 1\n",
            bus.ports.manage,
            socket.display(),
            rules.display()
        ),
    )
    .unwrap();
    let app_log = d.join("app.out");
    let mut app = Proc(
        Command::new(&app)
            .args(["-c", "config.yaml"])
            .current_dir(d)
            .env_remove("THREATBUS_PLUGIN_DIR")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&app_log).unwrap())
            .stderr(std::fs::File::create(d.join("app.err")).unwrap())
            .spawn()
            .expect("start suricata-threatbus"),
    );
    let app_out = || {
        format!(
            "app stdout:\n{}\napp stderr:\n{}\nsuricata:\n{}",
            std::fs::read_to_string(&app_log).unwrap_or_default(),
            std::fs::read_to_string(d.join("app.err")).unwrap_or_default(),
            suri_out()
        )
    };
    // The app subscribes with its default snapshot of 30 days.
    bus.bus.wait_for("added for topics [\"stix2/indicator\"]");

    // PUB/SUB drops until the app's SUB socket is connected, so publish
    // until the rule shows up; repeating the same sid only rewrites it.
    let publisher = bus.publisher();
    let add = suricata_indicator(None);
    let has_rule = || std::fs::read_to_string(&rules).unwrap_or_default().contains("sid:7130001;");
    eventually(
        "the rule in the rules file",
        || {
            publisher.indicator(&add);
            has_rule()
        },
        app_out,
    );
    assert_eq!(std::fs::read_to_string(&rules).unwrap(), format!("{RULE}\n"));
    eventually("suricata loading the rule", || rules_loaded(&socket) == Some(1), app_out);

    // suricata-threatbus takes the time of its last reload only after
    // `suricatasc` returned, so a rule change that lands while the reload
    // command runs is never reloaded (a race in the app, not in the bus).
    // Wait until that reload is over before changing the rule again.
    let app_err = d.join("app.err");
    eventually(
        "suricata-threatbus finishing its reload",
        || std::fs::read_to_string(&app_err).unwrap_or_default().contains("Triggered rule reload"),
        app_out,
    );
    let remove = suricata_indicator(Some("REMOVE"));
    publisher.indicator(&remove);
    eventually("the rule leaving the rules file", || !has_rule(), app_out);
    eventually("suricata dropping the rule", || rules_loaded(&socket) == Some(0), app_out);

    // On SIGTERM the app unsubscribes (atexit), like in production.
    assert!(app.terminate(), "suricata-threatbus did not stop\n{}", app_out());
    bus.bus.wait_for("removed (topics [\"stix2/indicator\"])");
    assert!(suricata.terminate(), "suricata did not stop");
}
