//! Running `tenzir` client processes: every pipeline is one process
//! (`tenzir --endpoint=… '<pipeline>'`). All running processes are in one
//! registry, so that one reaper thread kills those past their deadline and
//! a stop kills them all; their error output is collected (bounded) for
//! log lines.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use threatbus_http::Stopper;
use threatbus_plugin_api::logging::excerpt;

/// How long the client tries to reach the node before it gives up.
const CONNECT_TIMEOUT: &str = "5s";

/// Most error output kept per process, in bytes.
const MAX_STDERR: usize = 4096;

/// A running process, shared by its reader and the reaper.
type SharedChild = Arc<Mutex<Child>>;

/// The registry of running processes, with their deadlines.
#[derive(Default)]
pub struct Processes {
    next: AtomicU64,
    running: Mutex<HashMap<u64, (SharedChild, Option<Instant>)>>,
}

impl Processes {
    fn add(&self, child: SharedChild, deadline: Option<Instant>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(id, (child, deadline));
        id
    }

    fn remove(&self, id: u64) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Kills the processes past their deadline (or all, when `all`).
    pub fn reap(&self, all: bool) {
        let now = Instant::now();
        for (child, deadline) in self.running.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if all || deadline.is_some_and(|d| d <= now) {
                let _ = child.lock().unwrap_or_else(|e| e.into_inner()).kill();
            }
        }
    }

    /// The reaper: every 100 ms kills overdue processes; at stop, all.
    pub fn run_reaper(&self, stop: &Stopper) {
        while !stop.wait(Duration::from_millis(100)) {
            self.reap(false);
        }
        self.reap(true);
    }
}

/// A running process whose output is read line by line.
pub struct Running {
    id: u64,
    child: SharedChild,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    procs: Arc<Processes>,
}

impl Running {
    /// The next output line (`None` at the end of the output).
    pub fn next_line(&mut self, buf: &mut String) -> Option<()> {
        buf.clear();
        match self.stdout.read_line(buf) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(()),
        }
    }

    /// Kills the process (e.g. when enough output was read).
    pub fn kill(&self) {
        let _ = self.child.lock().unwrap_or_else(|e| e.into_inner()).kill();
    }

    /// Waits for the end; the exit status and (an excerpt of) the error output.
    pub fn finish(mut self) -> (Option<ExitStatus>, String) {
        let status = self.child.lock().unwrap_or_else(|e| e.into_inner()).wait().ok();
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        self.procs.remove(self.id);
        (status, stderr)
    }
}

/// The `tenzir` client of one node.
pub struct Tenzir {
    binary: String,
    endpoint: String,
    procs: Arc<Processes>,
}

/// Keeps the last [`MAX_STDERR`] bytes of a stream, without the client's
/// connection chatter, as one line.
fn collect_stderr(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * MAX_STDERR {
                kept.drain(..kept.len() - MAX_STDERR);
            }
        }
        let text = String::from_utf8_lossy(&kept);
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains("client connect") && !l.trim().is_empty()).collect();
        excerpt(lines.join(" | ").as_bytes())
    })
}

impl Tenzir {
    /// A client of `endpoint` using `binary`.
    pub fn new(binary: &str, endpoint: &str, procs: Arc<Processes>) -> Self {
        Self { binary: binary.to_string(), endpoint: endpoint.to_string(), procs }
    }

    fn command(&self, pipeline: &str) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg(format!("--endpoint={}", self.endpoint))
            .arg(format!("--connection-timeout={CONNECT_TIMEOUT}"))
            .arg("--console-verbosity=warning")
            .arg(pipeline)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts `pipeline` with `input` on its standard input; its output is
    /// read with [`Running::next_line`]. Killed at `timeout`, if any.
    pub fn start(&self, pipeline: &str, input: Option<Vec<u8>>, timeout: Option<Duration>) -> Result<Running, String> {
        let mut cmd = self.command(pipeline);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", self.binary))?;
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let stderr = child.stderr.take().map(collect_stderr);
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            // A writer thread, so that a large batch cannot dead-lock with
            // output the pipeline writes meanwhile.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }
        let child = Arc::new(Mutex::new(child));
        let id = self.procs.add(child.clone(), timeout.map(|t| Instant::now() + t));
        Ok(Running { id, child, stdout, stderr, procs: self.procs.clone() })
    }

    /// Runs `pipeline` to its end; `Err` with the reason if it failed.
    pub fn run(&self, pipeline: &str, input: Option<Vec<u8>>, timeout: Duration) -> Result<(), String> {
        let mut p = self.start(pipeline, input, Some(timeout))?;
        let mut line = String::new();
        while p.next_line(&mut line).is_some() {}
        match p.finish() {
            (Some(s), _) if s.success() => Ok(()),
            (status, stderr) => Err(format!(
                "tenzir {} ({})",
                status.map_or("did not run".to_string(), |s| s.to_string()),
                if stderr.is_empty() { "no error output".to_string() } else { stderr }
            )),
        }
    }
}
