//! REST client plumbing shared by the app plugins that talk to a web API
//! (misp, cif3): the `ssl` setting (verify against the system's trust
//! store, a CA file, or not at all), API secrets from the config, a file or
//! the environment, a blocking HTTP agent with one overall timeout, retries
//! with exponential, jittered backoff where repeating is safe, and a stop
//! signal that ends waits at once.
//!
//! What is safe to repeat is the caller's to say ([`Idempotence`]): a
//! request that never reached the server, or that the server declined
//! (429, 503), may always be repeated; one that may have been processed
//! (other 5xx, a timeout after sending) only if it changes nothing.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;
use threatbus_plugin_api::logging::excerpt;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

pub use threatbus_plugin_api::config::{read_secret, Secret};
pub use ureq;

/// TLS verification: on (the system's trust store), off, or a PEM file of
/// trusted CA certificates. In config: `true`, `false` or a path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verify {
    /// Verify against the system's trust store.
    #[default]
    System,
    /// Do not verify.
    Off,
    /// Verify against the CA certificates in this PEM file.
    CaFile(PathBuf),
}

impl<'de> Deserialize<'de> for Verify {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Path(PathBuf),
        }
        Ok(
            match Raw::deserialize(d).map_err(|_| serde::de::Error::custom("expected true, false or a CA file path"))? {
                Raw::Bool(true) => Verify::System,
                Raw::Bool(false) => Verify::Off,
                Raw::Path(p) => Verify::CaFile(p),
            },
        )
    }
}

impl Verify {
    /// Checks that a CA file exists; `key` names the setting in errors.
    pub fn check(&self, key: &str) -> Result<(), String> {
        match self {
            Verify::CaFile(p) if !p.is_file() => Err(format!("{key}: CA file {} does not exist", p.display())),
            _ => Ok(()),
        }
    }

    fn tls_config(&self, key: &str) -> Result<TlsConfig, String> {
        Ok(match self {
            Verify::System => TlsConfig::builder().root_certs(RootCerts::PlatformVerifier).build(),
            Verify::Off => TlsConfig::builder().disable_verification(true).build(),
            Verify::CaFile(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
                let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{key}: {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("{key}: {} holds no certificate", path.display()));
                }
                TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(certs))).build()
            }
        })
    }
}

/// A span of seconds from the config: a finite number from 0 to a day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(f64);

impl Seconds {
    /// `secs` seconds (for defaults; clamped to the allowed range).
    pub const fn new(secs: f64) -> Self {
        Seconds(secs)
    }

    /// The span.
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }

    /// Whether the span is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() && (0.0..=86_400.0).contains(&v) {
            Ok(Seconds(v))
        } else {
            Err(serde::de::Error::custom(format!("expected seconds from 0 to 86400, found {v}")))
        }
    }
}

/// A blocking HTTP agent: one overall timeout per request, no redirects,
/// status codes returned rather than turned into errors. `key` names the
/// TLS setting in errors.
pub fn agent(verify: &Verify, key: &str, timeout: Duration, user_agent: &str) -> Result<ureq::Agent, String> {
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(user_agent)
        .tls_config(verify.tls_config(key)?)
        .build()
        .into())
}

/// A plugin's stop signal: a flag for loops, and a wait that ends early
/// when the plugin stops (for retry backoffs).
#[derive(Default)]
pub struct Stopper {
    flag: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Stopper {
    /// Signals every thread to stop.
    pub fn stop(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.flag.store(true, Ordering::SeqCst);
        self.cond.notify_all();
    }

    /// Whether the plugin is stopping.
    pub fn is_stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag, for queue sends that give up at stop.
    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    /// Waits `timeout` or until the plugin stops; true if it stopped.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let (_guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |_| !self.flag.load(Ordering::SeqCst))
            .unwrap_or_else(|e| e.into_inner());
        self.is_stopped()
    }
}

/// A plugin thread whose end can be awaited for a bounded time: a thread
/// blocked in a request to a server that does not answer ends only when
/// the request times out, and a plugin's stop must not wait that long.
pub struct Worker {
    handle: std::thread::JoinHandle<()>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Worker {
    /// Starts `f` on a thread of the plugin (see
    /// [`threatbus_plugin_api::spawn_thread`]).
    pub fn spawn(
        host: threatbus_plugin_api::Host,
        name: &str,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Worker> {
        let (tx, done) = std::sync::mpsc::channel::<()>();
        let handle = threatbus_plugin_api::spawn_thread(host, name, move || {
            let _tx = tx;
            f();
        })?;
        Ok(Worker { handle, done })
    }

    /// Waits up to `limit` for the thread to end; true if it ended (and was
    /// joined). A thread that did not end is left to finish on its own.
    pub fn join_within(self, limit: Duration) -> bool {
        match self.done.recv_timeout(limit) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
            _ => {
                let _ = self.handle.join();
                true
            }
        }
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum RestError {
    /// The request never reached the server.
    Unsent(String),
    /// The request may have reached the server, but no complete answer came.
    Broken(String),
    /// The server answered with an unexpected status.
    Status(u16, String),
    /// The server answered with something that is not what was expected.
    Garbage(String),
    /// The server answered, but refused (its message says why).
    Refused(String),
    /// The plugin is stopping.
    Stopped,
}

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestError::Unsent(e) => write!(f, "is not reachable: {e}"),
            RestError::Broken(e) => write!(f, "gave no complete answer: {e}"),
            RestError::Status(code, body) => write!(f, "answered HTTP {code}: {body}"),
            RestError::Garbage(e) => write!(f, "answered with garbage: {e}"),
            RestError::Refused(e) => write!(f, "refused: {e}"),
            RestError::Stopped => write!(f, "the plugin is stopping"),
        }
    }
}

/// Whether a request may be repeated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Idempotence {
    /// Repeating may record something twice.
    Unsafe,
    /// Repeating changes nothing (or the server drops duplicates).
    Safe,
}

impl RestError {
    /// Whether this failure may be retried for a request of `idem`.
    pub fn retryable(&self, idem: Idempotence) -> bool {
        match self {
            RestError::Unsent(_) => true,
            RestError::Status(429 | 503, _) => true,
            RestError::Status(500..=599, _) | RestError::Broken(_) => idem == Idempotence::Safe,
            _ => false,
        }
    }
}

/// Turns a transport error into a [`RestError`].
pub fn classify(e: ureq::Error) -> RestError {
    use ureq::Error as E;
    match e {
        E::HostNotFound | E::ConnectionFailed | E::BadUri(_) | E::Tls(_) | E::Rustls(_) | E::Pem(_) => {
            RestError::Unsent(e.to_string())
        }
        E::Timeout(t) if matches!(t, ureq::Timeout::Resolve | ureq::Timeout::Connect) => {
            RestError::Unsent(format!("timeout ({t:?})"))
        }
        E::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => RestError::Unsent(io.to_string()),
        E::BodyExceedsLimit(n) => RestError::Garbage(format!("answer larger than {n} bytes")),
        other => RestError::Broken(other.to_string()),
    }
}

/// Reads an answer: the status and at most `limit` bytes of body.
pub fn read_answer(mut response: ureq::http::Response<ureq::Body>, limit: u64) -> Result<(u16, Vec<u8>), RestError> {
    let status = response.status().as_u16();
    let bytes = response.body_mut().with_config().limit(limit).read_to_vec().map_err(classify)?;
    Ok((status, bytes))
}

/// An error for an unexpected status, quoting a bounded excerpt of the body.
pub fn status_error(status: u16, body: &[u8]) -> RestError {
    RestError::Status(status, excerpt(body))
}

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    /// Longest wait between attempts.
    pub max_delay: Duration,
}

impl Retry {
    /// From the config's `retries` and `retry_max_delay`.
    pub fn new(retries: u32, max_delay: Seconds) -> Self {
        Retry { retries, max_delay: max_delay.duration() }
    }
}

impl Retry {
    /// Runs `attempt` until it succeeds, fails in a way that must not be
    /// repeated for `idem`, the retries are used up, or `stop` fires. Each
    /// retry is logged with `what` and the reason.
    pub fn run<T>(
        &self,
        what: &str,
        idem: Idempotence,
        stop: &Stopper,
        mut attempt: impl FnMut() -> Result<T, RestError>,
    ) -> Result<T, RestError> {
        let mut n = 0;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(e) if n < self.retries && e.retryable(idem) => {
                    let delay = backoff(n, self.max_delay);
                    log::warn!("{what} failed ({e}); retrying in {:.1} s", delay.as_secs_f64());
                    if stop.wait(delay) {
                        return Err(RestError::Stopped);
                    }
                    n += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The wait before retry `attempt` (0-based): 0.5 s doubled per attempt,
/// at most `max`, with up to 25 % random jitter so that several clients do
/// not retry in step.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1u32 << attempt.min(16)).min(max);
    let jitter = rand::rng().random_range(0.75..=1.0);
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(30);
        assert!(backoff(0, max) <= Duration::from_millis(500));
        assert!(backoff(0, max) >= Duration::from_millis(375));
        assert!(backoff(3, max) >= Duration::from_secs(3));
        assert!(backoff(40, max) <= max);
        assert_eq!(backoff(5, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn only_safe_failures_are_retried() {
        use Idempotence::*;
        assert!(RestError::Unsent("x".into()).retryable(Unsafe));
        assert!(RestError::Status(429, String::new()).retryable(Unsafe));
        assert!(RestError::Status(503, String::new()).retryable(Unsafe));
        assert!(!RestError::Status(500, String::new()).retryable(Unsafe));
        assert!(RestError::Status(500, String::new()).retryable(Safe));
        assert!(!RestError::Broken("timeout".into()).retryable(Unsafe));
        assert!(RestError::Broken("timeout".into()).retryable(Safe));
        assert!(!RestError::Status(403, String::new()).retryable(Safe));
        assert!(!RestError::Garbage(String::new()).retryable(Safe));
    }

    #[test]
    fn retries_stop_when_told() {
        let stop = Stopper::default();
        let retry = Retry { retries: 3, max_delay: Duration::ZERO };
        let mut calls = 0;
        let r: Result<(), _> = retry.run("x", Idempotence::Safe, &stop, || {
            calls += 1;
            Err(RestError::Status(500, String::new()))
        });
        assert!(matches!(r, Err(RestError::Status(500, _))));
        assert_eq!(calls, 4);
        stop.stop();
        let retry = Retry { retries: 3, max_delay: Duration::from_secs(3600) };
        let r: Result<(), _> = retry.run("x", Idempotence::Safe, &stop, || Err(RestError::Unsent(String::new())));
        assert!(matches!(r, Err(RestError::Stopped)));
    }

    #[test]
    fn secrets_come_from_the_config_or_a_file() {
        assert_eq!(read_secret(Some(&" k ".into()), None, "api.key").unwrap(), "k");
        assert!(read_secret(None, None, "api.key").unwrap_err().contains("api.key"));
        assert!(read_secret(Some(&"".into()), None, "api.key").is_err());
        let p = PathBuf::from("/nonexistent/secret");
        assert!(read_secret(Some(&"k".into()), Some(&p), "api.key").unwrap_err().contains("not both"));
        assert_eq!(format!("{:?}", Secret::from("s3cret")), "<redacted>");
        assert!(read_secret(None, Some(&p), "api.key").unwrap_err().contains("api.key_file"));
    }
}
