//! A real Tenzir node for the tenzir plugin's tests: Tenzir 6.20 from
//! PyPI (the `tenzir` wheel, installed by `.ci/tenzir-setup.sh` into
//! `TENZIR_VENV`, default `/opt/tenzir`) bundles the static `tenzir` client
//! and `tenzir-engine`, which runs a node when invoked as `tenzir-node`.
//! Each test gets its own node on a free port with its state in a
//! temporary directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use threatbus_integration_tests::*;

use crate::zmq_support::*;

/// The wheel's `bundled` directory; panics, saying how to install it.
fn bundled() -> PathBuf {
    let venv = std::env::var_os("TENZIR_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/opt/tenzir"));
    let lib = venv.join("lib");
    let found = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/tenzir/bundled"))
        .find(|p| p.join("bin/tenzir").is_file());
    found.unwrap_or_else(|| {
        panic!(
            "Tenzir is not installed in {}: run `bash tests/run.sh`, which installs it (or set TENZIR_VENV)",
            venv.display()
        )
    })
}

/// The `tenzir` client.
pub fn client() -> PathBuf {
    bundled().join("bin/tenzir")
}

/// A running node.
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node and waits until it accepts clients.
    pub fn start() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, free_port())
    }

    fn start_in(dir: tempfile::TempDir, port: u16) -> Node {
        let exe = dir.path().join("tenzir-node");
        if !exe.exists() {
            std::os::unix::fs::symlink(bundled().join("libexec/tenzir-engine"), &exe).expect("symlink");
        }
        let log = std::fs::File::create(dir.path().join("node.log")).expect("log");
        let child = Command::new(&exe)
            .arg(format!("--endpoint=127.0.0.1:{port}"))
            .arg(format!("--state-directory={}", dir.path().join("state").display()))
            .arg(format!("--cache-directory={}", dir.path().join("cache").display()))
            .arg("--console-verbosity=info")
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tenzir-node");
        let mut node = Node { child: Some(child), port, dir };
        node.wait_ready();
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// Waits until the node runs pipelines (the node writes its log to a
    /// file, which is read again until then).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if self.log().contains("node listens for node-to-node connections") && self.try_run("version").is_ok() {
                return;
            }
            let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            assert!(!exited && Instant::now() < deadline, "the Tenzir node did not start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs a pipeline with the client; its output.
    pub fn try_run(&self, pipeline: &str) -> Result<String, String> {
        let out = Command::new(client())
            .arg(format!("--endpoint={}", self.endpoint()))
            .arg("--connection-timeout=5s")
            .arg("--console-verbosity=warning")
            .arg(pipeline)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn run(&self, pipeline: &str) -> String {
        self.try_run(pipeline).unwrap_or_else(|e| panic!("tenzir '{pipeline}' failed: {e}"))
    }

    /// The lookup table's (key, indicator id) pairs, sorted (none while
    /// the table does not exist).
    pub fn table(&self, name: &str) -> Vec<(String, String)> {
        let out = self.try_run(&format!("context_inspect \"{name}\"\nwrite_ndjson")).unwrap_or_default();
        let mut rows: Vec<(String, String)> = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["key"].as_str().unwrap_or_default().to_string(),
                    v["value"]["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    /// Waits until the lookup table has an entry for indicator `id` (the
    /// table is read again until then).
    pub fn wait_in_table(&self, name: &str, id: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.table(name).iter().any(|(_, i)| i == id) {
            assert!(Instant::now() < deadline, "{id} not in the lookup table within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the node (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the node again, on the same port and state.
    pub fn restart(mut self) -> Node {
        self.kill();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        Self::start_in(dir, self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bus with inmem, zmq (port 0) and tenzir; `tenzir_yaml` is the tenzir
/// section's body (lines at column 0), `tenzir_binary` and `endpoint` are
/// added.
pub fn start_bus(node: &Node, tenzir_yaml: &str) -> ZmqBus {
    let mut yaml = String::from(
        "logging:\n  console: true\n  console_verbosity: DEBUG\nplugins:\n  backbones:\n    inmem: {}\n  apps:\n    zmq:\n      host: 127.0.0.1\n      manage: 0\n      pub: 0\n      sub: 0\n    tenzir:\n",
    );
    let body = format!("tenzir_binary: {}\nendpoint: \"{}\"\n{tenzir_yaml}", client().display(), node.endpoint());
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("      ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq", "threatbus_app_tenzir"]);
    let mut bus = Bus::start(&yaml, dir.path());
    bus.wait_for("Tenzir app plugin started");
    ZmqBus::from_started(bus, dir)
}

/// A STIX indicator as a zmq app publishes it.
pub fn indicator(tag: u32, n: u64, pattern: &str, remove: bool) -> String {
    let mut v = serde_json::json!({
        "type": "indicator", "spec_version": "2.1", "id": indicator_id(tag, n),
        "created": "2021-03-22T10:00:00.123Z", "modified": "2021-03-22T10:00:00.123Z",
        "pattern": pattern, "pattern_type": "stix", "pattern_version": "2.1",
        "valid_from": "2021-03-22T10:00:00.123Z"
    });
    if remove {
        v["x_threatbus_update"] = "REMOVE".into();
    }
    v.to_string()
}
