//! Helpers of the metrics tests: scraping the real bus's `/metrics` over
//! plain HTTP, reading values out of the exposition, and publishing to the
//! zmq app without warm-up messages (they would show in the counts).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use threatbus_integration_tests::*;

/// The address from `metrics: Prometheus metrics at http://ADDR/metrics`.
pub fn metrics_addr(bus: &mut Bus) -> String {
    const HEAD: &str = "metrics: Prometheus metrics at http://";
    bus.wait_for(HEAD);
    let log = bus.log();
    let rest = &log[log.find(HEAD).expect("waited for it") + HEAD.len()..];
    rest.split("/metrics").next().expect("address").to_string()
}

/// One HTTP/1.1 request; the status code and the body.
pub fn http(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap_or_else(|e| panic!("no answer from {addr}: {e}"));
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad answer: {text}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// `GET path`.
pub fn get(addr: &str, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"))
}

/// One scrape of `/metrics`.
pub struct Scrape {
    pub text: String,
}

impl Scrape {
    pub fn take(addr: &str) -> Scrape {
        let (status, text) = get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        Scrape { text }
    }

    /// The value of the sample `name` whose labels include `labels`;
    /// `None` if there is none. Panics if several match.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in self.text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (n, l) = series.split_once('{').map(|(n, l)| (n, l.trim_end_matches('}'))).unwrap_or((series, ""));
            if n != name || !labels.iter().all(|(k, v)| l.split(',').any(|kv| kv == format!("{k}=\"{v}\""))) {
                continue;
            }
            assert!(found.is_none(), "several samples of {name} {labels:?}:\n{}", self.text);
            found = Some(value.parse::<f64>().expect("numeric value"));
        }
        found
    }

    /// Like [`Scrape::value`], 0 when absent (counters that never counted).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.value(name, labels).unwrap_or(0.0) as u64
    }
}

/// Scrapes until `done` holds; panics with the last scrape after [`WAIT`].
pub fn scrape_until(addr: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = Scrape::take(addr);
        if done(&s) {
            return s;
        }
        if Instant::now() >= deadline {
            panic!("metrics never showed {what} within {WAIT:?}; last scrape:\n{}", s.text);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An XPUB socket on the bus's sub port: sends only once the bus's
/// subscription arrived, so no frame is lost and no warm-up is needed.
pub struct XPublisher {
    sock: zmq::Socket,
}

impl XPublisher {
    pub fn connect(ctx: &zmq::Context, sub_port: u16) -> XPublisher {
        let sock = ctx.socket(zmq::XPUB).unwrap();
        sock.set_linger(5000).unwrap();
        sock.set_sndhwm(0).unwrap();
        sock.connect(&format!("tcp://127.0.0.1:{sub_port}")).unwrap();
        assert!(sock.poll(zmq::POLLIN, WAIT.as_millis() as i64).unwrap() > 0, "the bus never subscribed");
        let sub = sock.recv_bytes(0).unwrap();
        assert_eq!(sub.first(), Some(&1), "a subscription frame");
        XPublisher { sock }
    }

    pub fn send(&self, frame: &str) {
        self.sock.send(frame.as_bytes(), 0).unwrap();
    }
}

/// Runs `promtool check metrics` on `text`; its output on failure.
pub fn promtool_check(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed: .ci/run and tests/run.sh install it");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\non:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
