//! The client of MISP's REST API: the requests the original made through
//! PyMISP (`POST /sightings/add`, `POST /attributes/restSearch`) with its
//! headers (`Authorization: <key>`, JSON in and out), plus retries.
//!
//! Retries (with exponential, jittered backoff up to `api.retry_max_delay`,
//! at most `api.retries` of them) only where repeating cannot do harm:
//! * any request that never reached MISP (name resolution, connection,
//!   TLS handshake) and any answer saying MISP did not process it
//!   (429 Too Many Requests, 503 Service Unavailable);
//! * for searches, which change nothing, also other 5xx answers,
//!   timeouts and broken connections.
//!
//! A sighting whose request may have reached MISP is not repeated, so a
//! sighting is never recorded twice; that failure is logged.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use threatbus_plugin_api::logging::excerpt;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::config::{Api, Verify};
use crate::Stopper;

/// Largest answer read from MISP (one restSearch page), in bytes.
const MAX_RESPONSE: u64 = 256 << 20;

/// Why a request failed.
#[derive(Debug)]
pub enum RestError {
    /// The request never reached MISP.
    Unsent(String),
    /// The request may have reached MISP, but no complete answer came.
    Broken(String),
    /// MISP answered with an error status.
    Status(u16, String),
    /// MISP answered 2xx with something that is not the expected JSON.
    Garbage(String),
    /// MISP answered, but refused (its `message` says why).
    Refused(String),
    /// The plugin is stopping.
    Stopped,
}

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestError::Unsent(e) => write!(f, "MISP not reachable: {e}"),
            RestError::Broken(e) => write!(f, "no complete answer from MISP: {e}"),
            RestError::Status(code, body) => write!(f, "MISP answered HTTP {code}: {body}"),
            RestError::Garbage(e) => write!(f, "MISP answered with garbage: {e}"),
            RestError::Refused(e) => write!(f, "MISP refused: {e}"),
            RestError::Stopped => write!(f, "the plugin is stopping"),
        }
    }
}

/// What may be repeated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idempotence {
    /// Repeating may record something twice.
    Unsafe,
    /// Repeating changes nothing.
    Safe,
}

impl RestError {
    fn retryable(&self, idem: Idempotence) -> bool {
        match self {
            RestError::Unsent(_) => true,
            RestError::Status(429 | 503, _) => true,
            RestError::Status(500..=599, _) | RestError::Broken(_) => idem == Idempotence::Safe,
            _ => false,
        }
    }
}

/// A client of one MISP instance.
pub struct Misp {
    agent: ureq::Agent,
    base: String,
    key: String,
    retries: u32,
    max_delay: Duration,
}

impl Misp {
    /// Builds the client from the `api` section (reads the key and CA file).
    pub fn new(api: &Api) -> Result<Self, String> {
        let key = api.read_key()?;
        let tls = match &api.ssl {
            Verify::System => TlsConfig::builder().root_certs(RootCerts::PlatformVerifier).build(),
            Verify::Off => TlsConfig::builder().disable_verification(true).build(),
            Verify::CaFile(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("api.ssl: cannot read {}: {e}", path.display()))?;
                let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("api.ssl: {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("api.ssl: {} holds no certificate", path.display()));
                }
                TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(certs))).build()
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(api.timeout()))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("threatbus-misp/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        let base = api.host.trim().trim_end_matches('/').to_string();
        Ok(Self { agent, base, key, retries: api.retries, max_delay: api.retry_max_delay() })
    }

    /// The MISP instance's address, for log lines.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// One request: JSON body in (or none for GET), JSON answer out.
    fn request(&self, path: &str, body: Option<&Value>) -> Result<Value, RestError> {
        let url = format!("{}/{path}", self.base);
        let result = match body {
            Some(body) => self
                .agent
                .post(&url)
                .header("Authorization", &self.key)
                .header("Accept", "application/json")
                .content_type("application/json")
                .send(body.to_string()),
            None => self.agent.get(&url).header("Authorization", &self.key).header("Accept", "application/json").call(),
        };
        let mut response = result.map_err(classify)?;
        let status = response.status().as_u16();
        let bytes = response.body_mut().with_config().limit(MAX_RESPONSE).read_to_vec().map_err(classify)?;
        if !(200..300).contains(&status) {
            return Err(RestError::Status(status, excerpt(&bytes)));
        }
        serde_json::from_slice(&bytes).map_err(|e| RestError::Garbage(format!("{e}: {}", excerpt(&bytes))))
    }

    /// A request with the retries its idempotence allows.
    fn with_retries(
        &self,
        path: &str,
        body: Option<&Value>,
        idem: Idempotence,
        stop: &Stopper,
    ) -> Result<Value, RestError> {
        let mut attempt = 0;
        loop {
            match self.request(path, body) {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.retries && e.retryable(idem) => {
                    let delay = backoff(attempt, self.max_delay);
                    log::warn!("MISP request {path} failed ({e}); retrying in {:.1} s", delay.as_secs_f64());
                    if stop.wait(delay) {
                        return Err(RestError::Stopped);
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `GET /servers/getVersion`: MISP's version, to say at start whether
    /// MISP is reachable with this key.
    pub fn version(&self) -> Result<String, RestError> {
        let v = self.request("servers/getVersion", None)?;
        Ok(v.get("version").and_then(Value::as_str).unwrap_or("unknown").to_string())
    }

    /// `POST /sightings/add`. MISP reports a refused sighting as a 2xx
    /// answer with a `message` (as the original checked).
    pub fn add_sighting(&self, body: &Value, stop: &Stopper) -> Result<Value, RestError> {
        let v = self.with_retries("sightings/add", Some(body), Idempotence::Unsafe, stop)?;
        match v.get("message") {
            Some(m) => {
                Err(RestError::Refused(excerpt(m.as_str().map_or_else(|| m.to_string(), str::to_string).as_bytes())))
            }
            None => Ok(v),
        }
    }

    /// `POST /attributes/restSearch`: the attributes of one page.
    pub fn search_attributes(&self, body: &Value, stop: &Stopper) -> Result<Vec<Value>, RestError> {
        let v = self.with_retries("attributes/restSearch", Some(body), Idempotence::Safe, stop)?;
        match v.get("response").and_then(|r| r.get("Attribute")) {
            Some(Value::Array(attrs)) => Ok(attrs.clone()),
            // MISP answers `{"response": []}` when nothing matches.
            None if v.get("response").is_some_and(|r| r.as_array().is_some_and(Vec::is_empty)) => Ok(Vec::new()),
            _ => Err(RestError::Garbage(format!(
                "expected {{\"response\": {{\"Attribute\": [...]}}}}, found {}",
                excerpt(v.to_string().as_bytes())
            ))),
        }
    }
}

fn classify(e: ureq::Error) -> RestError {
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

/// The wait before retry `attempt` (0-based): 0.5 s doubled per attempt,
/// at most `max`, with up to 25 % random jitter so that several buses do
/// not retry in step.
fn backoff(attempt: u32, max: Duration) -> Duration {
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
}
