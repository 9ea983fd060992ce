//! The `/metrics` endpoint: a small HTTP/1.1 server on one thread
//! (`metrics-http`) that answers `GET /metrics` with the exposition and
//! closes every connection after one answer.
//!
//! Hostile clients cost little: requests are read without blocking under
//! `poll`, a request head is at most 8 KiB, every connection has
//! 10 seconds to send its request and take the answer, and when 64
//! connections are open the oldest is closed for a new one, so a flood of
//! slow connections cannot keep a scraper out for long.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::{Exposition, CONTENT_TYPE};

const MAX_HEAD: usize = 8 * 1024;
const MAX_CONNECTIONS: usize = 64;
const DEADLINE: Duration = Duration::from_secs(10);

/// One client connection.
struct Conn {
    stream: TcpStream,
    head: Vec<u8>,
    /// The answer, once the request is read; `sent` bytes of it are out.
    answer: Option<Vec<u8>>,
    sent: usize,
    deadline: Instant,
}

/// Binds `host:port` (the error names the config keys) and serves on a
/// thread of its own until the process ends.
pub fn start(host: &str, port: u16, exposition: Arc<Exposition>) -> Result<std::net::SocketAddr, String> {
    let listener = TcpListener::bind((host, port))
        .map_err(|e| format!("metrics: cannot listen on {host}:{port} (metrics.host, metrics.port): {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("metrics: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("metrics: {e}"))?;
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || serve(listener, &exposition))
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(addr)
}

fn serve(listener: TcpListener, exposition: &Exposition) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut limiter = threatbus_plugin_api::logging::LogLimiter::new("metrics connections", Duration::from_secs(60), 1);
    loop {
        let now = Instant::now();
        conns.retain(|c| c.deadline > now);
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(conns.len() + 1);
        fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for c in &conns {
            let events = if c.answer.is_some() { libc::POLLOUT } else { libc::POLLIN };
            fds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
        }
        let wait = conns.iter().map(|c| c.deadline.saturating_duration_since(now)).min().unwrap_or(DEADLINE);
        let timeout_ms = wait.as_millis().clamp(1, 10_000) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs that
        // lives across the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                log::warn!("metrics: poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        // Serve the ready connections first (indices match `conns`).
        let mut done = vec![false; conns.len()];
        for (i, c) in conns.iter_mut().enumerate() {
            if fds[i + 1].revents != 0 {
                done[i] = !progress(c, exposition);
            }
        }
        let mut i = 0;
        conns.retain(|_| {
            i += 1;
            !done[i - 1]
        });
        if fds[0].revents != 0 {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(true).is_err() {
                            continue;
                        }
                        if conns.len() >= MAX_CONNECTIONS {
                            conns.remove(0);
                            if limiter.allow(Instant::now()) {
                                log::warn!("metrics: {MAX_CONNECTIONS} connections open; closing the oldest");
                            }
                        }
                        conns.push(Conn {
                            stream,
                            head: Vec::new(),
                            answer: None,
                            sent: 0,
                            deadline: Instant::now() + DEADLINE,
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        if limiter.allow(Instant::now()) {
                            log::warn!("metrics: accept failed: {e}");
                        }
                        // E.g. out of descriptors: let poll's timeout pace the retries.
                        break;
                    }
                }
            }
        }
    }
}

/// Reads or writes what the connection is ready for; `false` when it is
/// finished (answered, closed by the client, or broken).
fn progress(c: &mut Conn, exposition: &Exposition) -> bool {
    if c.answer.is_none() {
        let mut buf = [0u8; 2048];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    c.head.extend_from_slice(&buf[..n]);
                    if let Some(answer) = answer_for(&c.head, || exposition.render()) {
                        c.answer = Some(answer);
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
    let answer = c.answer.as_ref().expect("set above");
    while c.sent < answer.len() {
        match c.stream.write(&answer[c.sent..]) {
            Ok(0) => return false,
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    let _ = c.stream.shutdown(std::net::Shutdown::Write);
    false
}

/// The answer to a request head, once it is complete (or too long);
/// `render` makes the exposition.
fn answer_for(head: &[u8], render: impl FnOnce() -> String) -> Option<Vec<u8>> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| head.windows(2).position(|w| w == b"\n\n"));
    if end.is_none() {
        return (head.len() > MAX_HEAD)
            .then(|| response("431 Request Header Fields Too Large", "text/plain", b"", true));
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) || parts.next().is_some() {
        return Some(response("400 Bad Request", "text/plain", b"bad request\n", true));
    }
    let head_only = match method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Some(response("405 Method Not Allowed", "text/plain", b"only GET and HEAD\n", true)),
    };
    let path = target.unwrap_or_default().split('?').next().unwrap_or_default();
    Some(match path {
        "/metrics" => response("200 OK", CONTENT_TYPE, render().as_bytes(), !head_only),
        "/" => response("200 OK", "text/plain", b"threatbus: metrics at /metrics\n", !head_only),
        _ => response("404 Not Found", "text/plain", b"not found; metrics are at /metrics\n", !head_only),
    })
}

fn response(status: &str, content_type: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &[u8]) -> Option<String> {
        answer_for(head, || "m 1\n".into())
            .map(|a| String::from_utf8_lossy(&a).lines().next().unwrap_or("").to_string())
    }

    #[test]
    fn answers_only_complete_heads() {
        assert_eq!(status(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None, "incomplete: wait for more");
        assert_eq!(status(b"GET /metrics HTTP/1.1\r\n\r\n").as_deref(), Some("HTTP/1.1 200 OK"));
        assert_eq!(status(b"GET /metrics?x=1 HTTP/1.0\n\n").as_deref(), Some("HTTP/1.1 200 OK"));
        let a = answer_for(b"GET /metrics HTTP/1.1\r\n\r\n", || "m 1\n".into()).unwrap();
        assert!(String::from_utf8(a).unwrap().ends_with("Content-Length: 4\r\nConnection: close\r\n\r\nm 1\n"));
        let head = answer_for(b"HEAD /metrics HTTP/1.1\r\n\r\n", || "m 1\n".into()).unwrap();
        assert!(head.ends_with(b"\r\n\r\n"), "HEAD: no body");
    }

    #[test]
    fn refuses_everything_else() {
        for (head, want) in [
            (&b"POST /metrics HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 405 Method Not Allowed"),
            (b"GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
            (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics HTTP/1.1 extra\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"\x00\xff\xfe garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"),
            (b"GET /metrics SPDY/3\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        ] {
            assert_eq!(status(head).as_deref(), Some(want), "{}", String::from_utf8_lossy(head));
        }
        let long = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(status(&long).as_deref(), Some("HTTP/1.1 431 Request Header Fields Too Large"));
        assert_eq!(status(&long[..MAX_HEAD]), None, "up to the limit: wait for the end");
    }
}
