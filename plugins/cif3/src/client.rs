//! The client of CIF v3's REST API, with the original's requests and
//! headers (those of `cifsdk` 3): `GET /ping` and `POST /indicators` with
//! a zlib-compressed JSON body, `Authorization: Token token=<token>`,
//! `Accept: application/vnd.cif.v3+json`, `Content-Encoding: deflate`.

use std::io::Write;

use serde_json::Value;
use threatbus_http::{classify, read_answer, status_error, Idempotence, RestError, Retry, Stopper};
use threatbus_plugin_api::logging::excerpt;

use crate::config::Api;

/// Largest answer read from CIF, in bytes.
const MAX_RESPONSE: u64 = 1 << 20;

/// A client of one CIF instance.
pub struct Cif {
    agent: threatbus_http::ureq::Agent,
    base: String,
    authorization: String,
    retry: Retry,
}

impl Cif {
    /// Builds the client from the `api` section (reads the token and CA file).
    pub fn new(api: &Api) -> Result<Self, String> {
        let token = api.read_token()?;
        let agent = threatbus_http::agent(
            &api.ssl,
            "api.ssl",
            api.timeout.duration(),
            concat!("threatbus-cif3/", env!("CARGO_PKG_VERSION")),
        )?;
        Ok(Self {
            agent,
            base: api.host.trim().trim_end_matches('/').to_string(),
            authorization: format!("Token token={token}"),
            retry: Retry::new(api.retries, api.retry_max_delay),
        })
    }

    /// CIF's address, for log lines.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn check(status: u16, bytes: &[u8], expect: &[u16]) -> Result<Value, RestError> {
        if !expect.contains(&status) {
            return Err(status_error(status, bytes));
        }
        serde_json::from_slice(bytes).map_err(|e| RestError::Garbage(format!("{e}: {}", excerpt(bytes))))
    }

    /// `GET /ping` once: whether CIF is up and takes the token.
    pub fn ping(&self) -> Result<(), RestError> {
        let response = self
            .agent
            .get(format!("{}/ping", self.base))
            .header("Authorization", &self.authorization)
            .header("Accept", "application/vnd.cif.v3+json")
            .call()
            .map_err(classify)?;
        let (status, bytes) = read_answer(response, MAX_RESPONSE)?;
        let v = Self::check(status, &bytes, &[200])?;
        if v.get("status").is_some_and(|s| !s.is_null()) || v.get("message") == Some(&Value::from("success")) {
            Ok(())
        } else {
            Err(RestError::Refused(excerpt(&bytes)))
        }
    }

    /// `POST /indicators` of one indicator's JSON, retried on 429 and 5xx
    /// and when CIF cannot be reached.
    pub fn create(&self, json: &str, stop: &Stopper) -> Result<Value, RestError> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(json.as_bytes()).and_then(|_| z.flush()).map_err(|e| RestError::Unsent(e.to_string()))?;
        let body = z.finish().map_err(|e| RestError::Unsent(e.to_string()))?;
        let url = format!("{}/indicators", self.base);
        // CIF keeps one indicator per value and provider, so a repeated
        // submission does not add a second one.
        self.retry.run("CIF request POST /indicators", Idempotence::Safe, stop, || {
            let response = self
                .agent
                .post(&url)
                .header("Authorization", &self.authorization)
                .header("Accept", "application/vnd.cif.v3+json")
                .header("Content-Encoding", "deflate")
                .content_type("application/json")
                .send(&body[..])
                .map_err(classify)?;
            let (status, bytes) = read_answer(response, MAX_RESPONSE)?;
            Self::check(status, &bytes, &[200, 201])
        })
    }
}
