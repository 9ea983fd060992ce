//! A web API double for the plugins that talk to web APIs (misp, cif3):
//! a real HTTP (or HTTPS) server on 127.0.0.1 that records every request
//! (zlib bodies inflated, as `Content-Encoding: deflate` says), answers
//! through a route of the caller's, and can be told to answer the next
//! requests with an error status or garbage, or to hold requests until
//! released (a stalled server).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use threatbus_integration_tests::WAIT;

/// One request the double got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body as JSON (inflated first when it came deflated); `Null`
    /// when it is not JSON.
    pub body: Value,
    /// The body as it came.
    pub raw: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// How the double answers the next requests instead of its route.
#[derive(Debug, Clone)]
pub enum Answer {
    /// This status with a short JSON error (for 5xx an HTML error page).
    Status(u16),
    /// 200 with a body that is not JSON.
    Garbage,
}

/// The answer (status, JSON text) of the API to one request.
pub type Route = Box<dyn Fn(&Recorded) -> (u16, String) + Send + Sync>;

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    /// Answers for the next requests; with a key, only for requests whose
    /// body `id` or whose path is that key.
    next: VecDeque<(Option<String>, Answer)>,
    /// While true, requests wait before they are answered.
    held: bool,
    /// Requests waiting now.
    waiting: usize,
}

/// The double; see the module docs.
pub struct HttpDouble {
    pub port: u16,
    scheme: &'static str,
    state: Arc<(Mutex<State>, Condvar)>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl HttpDouble {
    /// Starts an HTTP double on 127.0.0.1.
    pub fn start(route: Route) -> HttpDouble {
        Self::serve(route, tiny_http::Server::http("127.0.0.1:0").expect("HTTP double"), "http")
    }

    /// Like [`HttpDouble::start`], on this port.
    pub fn start_on(route: Route, port: u16) -> HttpDouble {
        Self::serve(route, tiny_http::Server::http(("127.0.0.1", port)).expect("HTTP double"), "http")
    }

    /// Like [`HttpDouble::start`], over HTTPS with a self-signed certificate
    /// for 127.0.0.1, written as PEM into `dir`; returns its path too.
    pub fn start_tls(route: Route, dir: &std::path::Path) -> (HttpDouble, std::path::PathBuf) {
        let (cert, pkey) = (dir.join("double-cert.pem"), dir.join("double-key.pem"));
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
            .args([
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-keyout",
            ])
            .arg(&pkey)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the openssl command (Debian package openssl; bash tests/run.sh installs it)");
        assert!(status.success(), "openssl req failed");
        let ssl = tiny_http::SslConfig {
            certificate: std::fs::read(&cert).unwrap(),
            private_key: std::fs::read(&pkey).unwrap(),
        };
        let server = tiny_http::Server::https("127.0.0.1:0", ssl).expect("HTTPS double");
        (Self::serve(route, server, "https"), cert)
    }

    fn serve(route: Route, server: tiny_http::Server, scheme: &'static str) -> HttpDouble {
        let server = Arc::new(server);
        let port = server.server_addr().to_ip().expect("ip").port();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let (srv, st, route) = (server.clone(), state.clone(), Arc::new(route));
        let thread = std::thread::spawn(move || {
            for req in srv.incoming_requests() {
                // One thread per request, so that a held request does not
                // stop the others (as a real web server).
                let (st, route) = (st.clone(), route.clone());
                std::thread::spawn(move || serve(req, &st, &route));
            }
        });
        HttpDouble { port, scheme, state, server, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// Answers the next requests (any path) like this, in order.
    pub fn push_answers(&self, answers: &[Answer]) {
        self.state.0.lock().unwrap().next.extend(answers.iter().map(|a| (None, a.clone())));
    }

    /// Answers the next requests whose body `id` is `key` (a MISP
    /// sighting's attribute), or whose path is `key`, like this, in order.
    pub fn push_answers_for(&self, key: &str, answers: &[Answer]) {
        self.state.0.lock().unwrap().next.extend(answers.iter().map(|a| (Some(key.to_string()), a.clone())));
    }

    /// Holds every request until [`HttpDouble::release`].
    pub fn hold(&self) {
        self.state.0.lock().unwrap().held = true;
    }

    pub fn release(&self) {
        self.state.0.lock().unwrap().held = false;
        self.state.1.notify_all();
    }

    /// Waits until `n` requests are held.
    pub fn wait_held(&self, n: usize) {
        let (lock, cond) = &*self.state;
        let deadline = Instant::now() + WAIT;
        let mut s = lock.lock().unwrap();
        while s.waiting < n {
            assert!(Instant::now() < deadline, "no held request within {WAIT:?}");
            s = cond.wait_timeout(s, Duration::from_millis(100)).unwrap().0;
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// Waits until `n` requests to `path` were recorded and returns them.
    pub fn wait_requests(&self, path: &str, n: usize) -> Vec<Recorded> {
        let (lock, cond) = &*self.state;
        let deadline = Instant::now() + WAIT;
        let mut s = lock.lock().unwrap();
        loop {
            let got: Vec<Recorded> = s.requests.iter().filter(|r| r.path == path).cloned().collect();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{n} requests to {path} not within {WAIT:?}; got {:?}", s.requests);
            s = cond.wait_timeout(s, Duration::from_millis(100)).unwrap().0;
        }
    }

    /// Waits until a request satisfies `pred` and returns it.
    pub fn wait_request(&self, pred: impl Fn(&Recorded) -> bool) -> Recorded {
        let (lock, cond) = &*self.state;
        let deadline = Instant::now() + WAIT;
        let mut s = lock.lock().unwrap();
        loop {
            if let Some(r) = s.requests.iter().find(|r| pred(r)) {
                return r.clone();
            }
            assert!(Instant::now() < deadline, "no such request within {WAIT:?}; got {:?}", s.requests);
            s = cond.wait_timeout(s, Duration::from_millis(100)).unwrap().0;
        }
    }
}

impl Drop for HttpDouble {
    fn drop(&mut self) {
        self.release();
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut req: tiny_http::Request, state: &Arc<(Mutex<State>, Condvar)>, route: &Route) {
    let mut raw = Vec::new();
    let _ = req.as_reader().take(64 << 20).read_to_end(&mut raw);
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> =
        req.headers().iter().map(|h| (h.field.to_string(), h.value.to_string())).collect();
    let deflated = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("Content-Encoding") && v == "deflate");
    let text = if deflated {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&raw[..]).read_to_end(&mut out).map(|_| out).unwrap_or_default()
    } else {
        raw.clone()
    };
    let body = serde_json::from_slice(&text).unwrap_or(Value::Null);
    let rec = Recorded { method: req.method().to_string(), path: path.clone(), headers, body: body.clone(), raw };
    let (lock, cond) = &**state;
    let mut s = lock.lock().unwrap();
    s.requests.push(rec.clone());
    cond.notify_all();
    if s.held {
        s.waiting += 1;
        cond.notify_all();
        while s.held {
            s = cond.wait(s).unwrap();
        }
        s.waiting -= 1;
    }
    let pos = s.next.iter().position(|(id, _)| id.as_ref().is_none_or(|id| body["id"] == id.as_str() || path == *id));
    let answer = pos.and_then(|i| s.next.remove(i)).map(|(_, a)| a);
    drop(s);
    let (status, text) = match answer {
        Some(Answer::Status(code)) if code >= 500 => {
            (code, "<html><body><h1>An Internal Error Has Occurred.</h1></body></html>".to_string())
        }
        Some(Answer::Status(code)) => (code, json!({"name": "Error", "message": "Error", "url": path}).to_string()),
        Some(Answer::Garbage) => (200, "<html>this is not JSON".to_string()),
        None => route(&rec),
    };
    let response = tiny_http::Response::from_string(text)
        .with_status_code(status)
        .with_header("Content-Type: application/json".parse::<tiny_http::Header>().unwrap());
    let _ = req.respond(response);
}
