//! The original Python Threat Bus (PyPI, 2022.5.16, installed by
//! `.ci/python-threatbus-setup.sh` into `THREATBUS_PYTHON_VENV`, default
//! `/opt/threatbus-python`) as a peer of differential and interop tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use threatbus_integration_tests::*;

use crate::zmq_support::*;

/// The Python `threatbus` executable; panics, saying how to install it,
/// when it is missing.
pub fn python_threatbus() -> PathBuf {
    let venv = std::env::var_os("THREATBUS_PYTHON_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/threatbus-python"));
    let bin = venv.join("bin/threatbus");
    if bin.exists() {
        return bin;
    }
    panic!(
        "the Python Threat Bus is not installed at {}: run `bash tests/run.sh`, which installs it (or set THREATBUS_PYTHON_VENV)",
        bin.display()
    );
}

/// The `zmq:` app section (indented for `apps:`) of a Python bus.
pub fn zmq_app_yaml(ports: Ports) -> String {
    format!(
        "    zmq:\n      host: 127.0.0.1\n      manage: {}\n      pub: {}\n      sub: {}\n",
        ports.manage, ports.pub_port, ports.sub_port
    )
}

/// The Python host: `threatbus -c config.yaml`, output in a file.
pub struct PyBus {
    child: Child,
    pub ports: Ports,
    dir: tempfile::TempDir,
}

impl PyBus {
    /// Starts the Python bus with this `plugins:` body (backbones and apps,
    /// indented by two); `ports` are those of its zmq app.
    pub fn start(bin: &Path, plugins_yaml: &str, ports: Ports, env: &[(&str, &str)]) -> PyBus {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "logging:\n  console: true\n  console_verbosity: DEBUG\n  file: false\n  file_verbosity: INFO\n  filename: threatbus.log\nplugins:\n{plugins_yaml}"
        );
        std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config");
        let out = std::fs::File::create(dir.path().join("out.log")).expect("log file");
        let mut cmd = Command::new(bin);
        cmd.arg("-c")
            .arg("config.yaml")
            .current_dir(dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the Python threatbus");
        PyBus { child, ports, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("out.log")).unwrap_or_default()
    }

    /// Waits until the output contains `needle` (the Python bus writes to
    /// a file, which is read again until it does).
    pub fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.log().contains(needle) {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            assert!(!exited && Instant::now() < deadline, "Python bus: no {needle:?}; output:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Subscribes through its zmq app's management port.
    pub fn subscribe(&self, topic: Value, snapshot: u64) -> Client {
        let req = json!({"action": "subscribe", "topic": topic, "snapshot": snapshot}).to_string();
        let raw = try_request_raw(self.ports.manage, &[req.as_bytes()])
            .unwrap_or_else(|| panic!("the Python bus did not answer a subscription; its output:\n{}", self.log()));
        let reply: Value = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("reply {raw:?}: {e}"));
        assert_eq!(reply["status"], "success", "{reply}");
        Client::connect(self.ports.pub_port, reply["topic"].as_str().expect("p2p").to_string())
    }
}

impl Drop for PyBus {
    fn drop(&mut self) {
        // The Python bus handles SIGINT only.
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
