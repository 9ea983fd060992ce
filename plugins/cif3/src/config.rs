//! The `plugins.apps.cif3` config section: the original's keys (`api`,
//! `tags`, `group`, `tlp`, `confidence`) plus the token from a file,
//! retries and the queue bound.

use std::path::PathBuf;

use serde::Deserialize;
pub use threatbus_http::{Seconds, Secret, Verify};

fn default_group() -> String {
    "everyone".into()
}
fn default_tlp() -> String {
    "amber".into()
}
fn default_confidence() -> f64 {
    7.5
}
fn default_queue_size() -> usize {
    10_000
}
fn default_timeout() -> Seconds {
    Seconds::new(30.0)
}
fn default_retries() -> u32 {
    5
}
fn default_retry_max_delay() -> Seconds {
    Seconds::new(60.0)
}

/// The `plugins.apps.cif3` section.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The CIF v3 REST API.
    pub api: Api,
    /// Tags of every submitted indicator.
    pub tags: Vec<String>,
    /// The CIF group.
    #[serde(default = "default_group")]
    pub group: String,
    /// The traffic light protocol level.
    #[serde(default = "default_tlp")]
    pub tlp: String,
    /// The confidence (0 means 5, as in the original).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Indicators waiting for CIF; more are dropped and counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
}

/// The `api` subsection.
#[derive(Debug, Clone, Deserialize)]
pub struct Api {
    /// Base URL, e.g. `https://cif.example.org:5000`.
    pub host: String,
    /// The API token (or `token_file`; the environment variable
    /// `THREATBUS_PLUGINS__APPS__CIF3__API__TOKEN` overrides this key).
    #[serde(default)]
    pub token: Option<Secret>,
    /// A file whose first line is the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// TLS verification: `true` (default), `false` or a CA file.
    #[serde(default)]
    pub ssl: Verify,
    /// Seconds one request may take in all.
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    /// Attempts after the first when CIF answers 429 or 5xx or cannot be
    /// reached (the original retried forever).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Longest wait between attempts, in seconds.
    #[serde(default = "default_retry_max_delay")]
    pub retry_max_delay: Seconds,
}

impl Api {
    /// The token, from `token` or `token_file`.
    pub fn read_token(&self) -> Result<String, String> {
        threatbus_http::read_secret(self.token.as_ref(), self.token_file.as_ref(), "api.token")
    }
}

impl Config {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let url = self.api.host.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 8 {
            return Err(format!("api.host: expected an http:// or https:// URL, found '{}'", self.api.host));
        }
        if self.api.timeout.is_zero() {
            return Err("api.timeout: must be above 0".into());
        }
        self.api.ssl.check("api.ssl")?;
        self.api.read_token()?;
        if !(self.confidence.is_finite() && (0.0..=10.0).contains(&self.confidence)) {
            return Err("confidence: a number from 0 to 10".into());
        }
        if self.queue_size == 0 {
            return Err("queue_size: must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        let c: Config = threatbus_plugin_api::config::parse_plugin_config("cif3", json).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn original_keys_and_defaults() {
        let c =
            parse(r#"{"api":{"host":"http://cif:5000","token":"t","ssl":false},"tags":["test","malicious"]}"#).unwrap();
        assert_eq!((c.group.as_str(), c.tlp.as_str(), c.confidence), ("everyone", "amber", 7.5));
        assert_eq!(c.api.ssl, Verify::Off);
        assert_eq!(c.api.read_token().unwrap(), "t");
        assert!(!format!("{c:?}").contains("\"t\""));
    }

    #[test]
    fn errors_name_the_key() {
        for (json, key) in [
            (r#"{"api":{"host":"http://cif","token":"t"}}"#, "tags"),
            (r#"{"api":{"host":"http://cif"},"tags":[]}"#, "api.token"),
            (r#"{"api":{"host":"cif","token":"t"},"tags":[]}"#, "api.host"),
            (r#"{"api":{"host":"http://cif","token":"t","sll":true},"tags":[]}"#, "sll"),
            (r#"{"api":{"host":"http://cif","token":"t"},"tags":[],"confidence":11}"#, "confidence"),
            (r#"{"api":{"host":"http://cif","token":"t","ssl":"/nonexistent.pem"},"tags":[]}"#, "api.ssl"),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.contains(key), "{json}: {e}");
        }
    }
}
