//! The client of MISP's REST API: the requests the original made through
//! PyMISP (`POST /sightings/add`, `POST /attributes/restSearch`) with its
//! headers (`Authorization: <key>`, JSON in and out), plus retries.
//!
//! Retries (exponential, jittered backoff up to `api.retry_max_delay`, at
//! most `api.retries`) only where repeating cannot do harm: a search is
//! repeated after any transient failure; a sighting only when it never
//! reached MISP or MISP declined it (429, 503), so that a sighting is never
//! recorded twice. Every other failure is returned, and the caller logs it.

use serde_json::Value;
use threatbus_http::{classify, read_answer, status_error, Idempotence, RestError, Retry, Stopper};
use threatbus_plugin_api::logging::excerpt;

use crate::config::Api;

/// Largest answer read from MISP (one restSearch page), in bytes.
const MAX_RESPONSE: u64 = 256 << 20;

/// A client of one MISP instance.
pub struct Misp {
    agent: threatbus_http::ureq::Agent,
    base: String,
    key: String,
    retry: Retry,
}

impl Misp {
    /// Builds the client from the `api` section (reads the key and CA file).
    pub fn new(api: &Api) -> Result<Self, String> {
        let key = api.read_key()?;
        let agent = threatbus_http::agent(
            &api.ssl,
            "api.ssl",
            api.timeout.duration(),
            concat!("threatbus-misp/", env!("CARGO_PKG_VERSION")),
        )?;
        let base = api.host.trim().trim_end_matches('/').to_string();
        Ok(Self { agent, base, key, retry: Retry::new(api.retries, api.retry_max_delay) })
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
        let (status, bytes) = read_answer(result.map_err(classify)?, MAX_RESPONSE)?;
        if !(200..300).contains(&status) {
            return Err(status_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| RestError::Garbage(format!("{e}: {}", excerpt(&bytes))))
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
        let v = self.retry.run("MISP request sightings/add", Idempotence::Unsafe, stop, || {
            self.request("sightings/add", Some(body))
        })?;
        match v.get("message") {
            Some(m) => {
                Err(RestError::Refused(excerpt(m.as_str().map_or_else(|| m.to_string(), str::to_string).as_bytes())))
            }
            None => Ok(v),
        }
    }

    /// `POST /attributes/restSearch`: the attributes of one page.
    pub fn search_attributes(&self, body: &Value, stop: &Stopper) -> Result<Vec<Value>, RestError> {
        let v = self.retry.run("MISP request attributes/restSearch", Idempotence::Safe, stop, || {
            self.request("attributes/restSearch", Some(body))
        })?;
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
