//! The `plugins.apps.misp` config section: the original's keys (`api`,
//! `filter`, `zmq`, `kafka`) plus limits and the API key from a file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
pub use threatbus_http::{Seconds, Secret, Verify};

/// The `plugins.apps.misp` section.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// MISP's REST API; without it only intake runs.
    #[serde(default)]
    pub api: Option<Api>,
    /// Which attributes to accept; empty accepts all.
    #[serde(default)]
    pub filter: Vec<Filter>,
    /// Intake from MISP's ZeroMQ publisher.
    #[serde(default)]
    pub zmq: Option<Zmq>,
    /// Intake from Kafka.
    #[serde(default)]
    pub kafka: Option<Kafka>,
    /// Largest ZeroMQ frame accepted from MISP, in bytes (attachments make
    /// attributes large; nothing real comes near the default).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// Sightings waiting for MISP; more are dropped and counted.
    #[serde(default = "default_sighting_queue_size")]
    pub sighting_queue_size: usize,
    /// Snapshot requests waiting to be served; more are refused.
    #[serde(default = "default_snapshot_queue_size")]
    pub snapshot_queue_size: usize,
    /// Attributes per restSearch page when serving snapshots.
    #[serde(default = "default_page_size")]
    pub snapshot_page_size: usize,
}

fn default_max_message_size() -> usize {
    16 << 20
}
fn default_sighting_queue_size() -> usize {
    10_000
}
fn default_snapshot_queue_size() -> usize {
    16
}
fn default_page_size() -> usize {
    1_000
}

fn default_timeout() -> Seconds {
    Seconds::new(10.0)
}
fn default_retries() -> u32 {
    5
}
fn default_retry_max_delay() -> Seconds {
    Seconds::new(30.0)
}

/// The `api` subsection.
#[derive(Debug, Clone, Deserialize)]
pub struct Api {
    /// Base URL, e.g. `https://misp.example.org`.
    pub host: String,
    /// TLS verification: `true` (default), `false` or a CA file.
    #[serde(default)]
    pub ssl: Verify,
    /// The API key (or set `key_file`; the environment variable
    /// `THREATBUS_PLUGINS__APPS__MISP__API__KEY` overrides this key).
    #[serde(default)]
    pub key: Option<Secret>,
    /// A file whose first line is the API key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Seconds one request may take in all.
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    /// Attempts after the first for requests that are safe to repeat.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Longest wait between attempts, in seconds.
    #[serde(default = "default_retry_max_delay")]
    pub retry_max_delay: Seconds,
}

impl Api {
    /// The API key, from `key` or `key_file`.
    pub fn read_key(&self) -> Result<String, String> {
        threatbus_http::read_secret(self.key.as_ref(), self.key_file.as_ref(), "api.key")
    }
}

/// One entry of `filter`: every non-empty list must match.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Creator organisation ids (`Event.orgc_id`), as strings or numbers.
    #[serde(default)]
    pub orgs: Vec<OrgId>,
    /// Attribute tag names; one in common is enough.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Attribute types.
    #[serde(default)]
    pub types: Vec<String>,
}

/// An organisation id, written as a string or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgId(pub String);

impl<'de> Deserialize<'de> for OrgId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(OrgId(s)),
            serde_json::Value::Number(n) => Ok(OrgId(n.to_string())),
            other => Err(serde::de::Error::custom(format!("expected an organisation id, found {other}"))),
        }
    }
}

fn default_zmq_host() -> String {
    "127.0.0.1".into()
}
fn default_zmq_port() -> u16 {
    50000
}

/// The `zmq` subsection: where MISP's ZeroMQ publisher listens.
#[derive(Debug, Clone, Deserialize)]
pub struct Zmq {
    /// Host of MISP's publisher.
    #[serde(default = "default_zmq_host")]
    pub host: String,
    /// Port of MISP's publisher.
    #[serde(default = "default_zmq_port")]
    pub port: u16,
}

fn default_poll_interval() -> f64 {
    1.0
}

/// The `kafka` subsection.
#[derive(Debug, Clone, Deserialize)]
pub struct Kafka {
    /// Topics MISP publishes attributes on.
    pub topics: Vec<String>,
    /// Seconds one poll waits for a message.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: f64,
    /// librdkafka consumer properties (`bootstrap.servers`, `group.id`, …).
    #[serde(default)]
    pub config: BTreeMap<String, Scalar>,
}

/// A librdkafka property value: YAML may write numbers and booleans bare.
#[derive(Debug, Clone)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Scalar(s)),
            serde_json::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_json::Value::Bool(b) => Ok(Scalar(b.to_string())),
            other => Err(serde::de::Error::custom(format!("expected a string, number or boolean, found {other}"))),
        }
    }
}

impl Config {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.zmq.is_none() && self.kafka.is_none() {
            return Err("zmq or kafka: at least one intake must be configured".into());
        }
        if let Some(z) = &self.zmq {
            if z.host.trim().is_empty() {
                return Err("zmq.host: must not be empty".into());
            }
        }
        if let Some(k) = &self.kafka {
            if k.topics.is_empty() || k.topics.iter().any(|t| t.is_empty()) {
                return Err("kafka.topics: at least one non-empty topic".into());
            }
            if !(k.poll_interval.is_finite() && k.poll_interval > 0.0 && k.poll_interval <= 60.0) {
                return Err("kafka.poll_interval: seconds, above 0 and at most 60".into());
            }
            for key in ["bootstrap.servers", "group.id"] {
                if !k.config.contains_key(key) {
                    return Err(format!("kafka.config.{key}: required"));
                }
            }
        }
        if let Some(api) = &self.api {
            let url = api.host.trim();
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 8 {
                return Err(format!("api.host: expected an http:// or https:// URL, found '{}'", api.host));
            }
            if api.timeout.is_zero() {
                return Err("api.timeout: must be above 0".into());
            }
            api.ssl.check("api.ssl")?;
            api.read_key()?;
        }
        if self.max_message_size < 1024 {
            return Err("max_message_size: must be at least 1024".into());
        }
        for (key, v) in [
            ("sighting_queue_size", self.sighting_queue_size),
            ("snapshot_queue_size", self.snapshot_queue_size),
            ("snapshot_page_size", self.snapshot_page_size),
        ] {
            if v == 0 {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        let c: Config = threatbus_plugin_api::config::parse_plugin_config("misp", json).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn original_keys_parse_with_defaults() {
        let c = parse(
            r#"{"api":{"host":"https://misp","ssl":false,"key":"k"},"filter":[{"orgs":["1",25],"tags":["TLP:AMBER"],"types":["ip-src"]}],"zmq":{"host":"localhost","port":50000}}"#,
        )
        .unwrap();
        let api = c.api.unwrap();
        assert_eq!(api.ssl, Verify::Off);
        assert_eq!(api.read_key().unwrap(), "k");
        assert_eq!(c.filter[0].orgs, vec![OrgId("1".into()), OrgId("25".into())]);
        assert_eq!(c.max_message_size, 16 << 20);
    }

    #[test]
    fn errors_name_the_key() {
        for (json, key) in [
            (r#"{}"#, "zmq or kafka"),
            (r#"{"zmq":{},"api":{"host":"https://m"}}"#, "api.key"),
            (r#"{"zmq":{},"api":{"host":"misp","key":"k"}}"#, "api.host"),
            (r#"{"zmq":{},"api":{"host":"https://m","key":"k","key_file":"/x"}}"#, "key_file"),
            (r#"{"zmq":{},"api":{"host":"https://m","key_file":"/nonexistent/key"}}"#, "api.key_file"),
            (r#"{"zmq":{},"api":{"host":"https://m","key":"k","ssl":"/nonexistent.pem"}}"#, "api.ssl"),
            (r#"{"kafka":{"topics":["t"],"config":{"group.id":"g"}}}"#, "kafka.config.bootstrap.servers"),
            (r#"{"kafka":{"topics":[],"config":{}}}"#, "kafka.topics"),
            (r#"{"zmq":{},"filter":[{"org":["1"]}]}"#, "org"),
            (r#"{"zmq":{},"snapshot_page_size":0}"#, "snapshot_page_size"),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.contains(key), "{json}: {e}");
        }
    }

    #[test]
    fn key_comes_from_a_file_and_is_never_printed() {
        let dir = std::env::temp_dir().join(format!("misp-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "s3cret\n").unwrap();
        let c =
            parse(&format!(r#"{{"zmq":{{}},"api":{{"host":"https://m","key_file":"{}"}}}}"#, path.display())).unwrap();
        let api = c.api.unwrap();
        assert_eq!(api.read_key().unwrap(), "s3cret");
        let c = parse(r#"{"zmq":{},"api":{"host":"https://m","key":"s3cret"}}"#).unwrap();
        assert!(!format!("{:?}", c.api).contains("s3cret"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn kafka_properties_may_be_bare_scalars() {
        let c = parse(
            r#"{"kafka":{"topics":["misp_attribute"],"config":{"bootstrap.servers":"h:9092","group.id":"g","session.timeout.ms":6000,"enable.auto.commit":true}}}"#,
        )
        .unwrap();
        let k = c.kafka.unwrap();
        assert_eq!(k.config["session.timeout.ms"].0, "6000");
        assert_eq!(k.config["enable.auto.commit"].0, "true");
        assert_eq!(k.poll_interval, 1.0);
    }
}
