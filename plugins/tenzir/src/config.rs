//! The `plugins.apps.tenzir` config section: vast-threatbus's keys where
//! they still make sense, renamed where Tenzir changed the concept.
//!
//! | vast-threatbus | here | why |
//! |---|---|---|
//! | `vast` | `endpoint` | the node's endpoint (Tenzir's default port is 5158) |
//! | `vast_binary` | `tenzir_binary` | the `tenzir` client runs the pipelines |
//! | `matcher_name` | `lookup_table` | live matching uses a lookup-table context |
//! | `threatbus` | – | the plugin runs inside the bus |
//! | `metrics.*` | – | counts are logged at stop |
//! | – | `fields` | Tenzir schemas differ from VAST's: which event fields hold IPs, domains, URLs, hashes |

use std::time::Duration;

use serde::Deserialize;

fn default_endpoint() -> String {
    "127.0.0.1:5158".into()
}
fn default_binary() -> String {
    "tenzir".into()
}
fn default_snapshot() -> u64 {
    30
}
fn default_table() -> String {
    "threatbus".into()
}
fn yes() -> bool {
    true
}
fn default_retro_timeout() -> f64 {
    3600.0
}
fn default_tasks() -> usize {
    500
}
fn default_queue_size() -> usize {
    100_000
}
fn default_batch() -> usize {
    1_000
}

/// Event fields the indicators are matched against, per kind of value.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Fields {
    /// Fields holding IP addresses (matched against `ipv4-addr`/`ipv6-addr`).
    pub ip: Vec<String>,
    /// Fields holding domain names.
    pub domain: Vec<String>,
    /// Fields holding URLs.
    pub url: Vec<String>,
    /// Fields holding file hashes.
    pub hash: Vec<String>,
}

impl Default for Fields {
    /// Zeek's and Suricata's field names (as Tenzir imports them).
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Fields {
            ip: v(&["src_ip", "dest_ip", "id.orig_h", "id.resp_h"]),
            domain: v(&["dns.rrname", "query", "http.hostname", "host", "tls.sni", "server_name"]),
            url: v(&["url", "http.url", "uri"]),
            hash: v(&["md5", "sha1", "sha256", "fileinfo.md5", "fileinfo.sha1", "fileinfo.sha256"]),
        }
    }
}

impl Fields {
    /// Every field, for the live lookup.
    pub fn all(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in self.ip.iter().chain(&self.domain).chain(&self.url).chain(&self.hash) {
            if !out.contains(&f.as_str()) {
                out.push(f);
            }
        }
        out
    }
}

/// The `plugins.apps.tenzir` section.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// The node's endpoint, `host:port`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The `tenzir` client executable (a path, or a name on `PATH`).
    #[serde(default = "default_binary")]
    pub tenzir_binary: String,
    /// Days of indicators requested as a snapshot at start (0: none).
    #[serde(default = "default_snapshot")]
    pub snapshot: u64,
    /// Report events that contain a known indicator as they arrive.
    #[serde(default)]
    pub live_match: bool,
    /// The lookup-table context holding the indicators.
    #[serde(default = "default_table")]
    pub lookup_table: String,
    /// Search historical events for each new indicator.
    #[serde(default = "yes")]
    pub retro_match: bool,
    /// Sightings per indicator from one historical search (0: unlimited).
    #[serde(default)]
    pub retro_match_max_events: u64,
    /// Seconds one historical search may run (0: unlimited).
    #[serde(default = "default_retro_timeout")]
    pub retro_match_timeout: f64,
    /// Historical searches at once; more wait (and are dropped when
    /// `queue_size` of them wait).
    #[serde(default = "default_tasks")]
    pub max_background_tasks: usize,
    /// Command run for every sighting: `%ioc` and `%matchtype` are replaced,
    /// the context JSON is its input, its JSON output replaces the context.
    #[serde(default)]
    pub transform_context: Option<String>,
    /// Instead of reporting sightings to the bus: `STDOUT`, or a command
    /// (`%matchtype` replaced) that gets the context JSON as input.
    #[serde(default)]
    pub sink: Option<String>,
    /// The event fields values are matched in.
    #[serde(default)]
    pub fields: Fields,
    /// Indicators waiting for Tenzir; more are dropped and counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Indicators per lookup-table update (one `tenzir` process each).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

impl Config {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoint.trim().is_empty() || !self.endpoint.contains(':') {
            return Err(format!("endpoint: expected host:port, found '{}'", self.endpoint));
        }
        if self.tenzir_binary.trim().is_empty() {
            return Err("tenzir_binary: must not be empty".into());
        }
        let ident =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ident(&self.lookup_table) {
            return Err(format!("lookup_table: letters, digits, '_', '-' and '.' only, found '{}'", self.lookup_table));
        }
        let field = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                && !s.starts_with(|c: char| c.is_ascii_digit())
        };
        if let Some(bad) = self.fields.all().into_iter().find(|f| !field(f)) {
            return Err(format!(
                "fields: '{bad}' is not a field path (names of letters, digits and '_', joined by '.')"
            ));
        }
        if self.fields.all().is_empty() {
            return Err("fields: at least one field".into());
        }
        if !(self.retro_match_timeout.is_finite() && self.retro_match_timeout >= 0.0) {
            return Err("retro_match_timeout: seconds, 0 or more".into());
        }
        for (key, v) in [
            ("max_background_tasks", self.max_background_tasks),
            ("queue_size", self.queue_size),
            ("batch_size", self.batch_size),
        ] {
            if v == 0 {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        for (key, v) in [("transform_context", &self.transform_context), ("sink", &self.sink)] {
            if v.as_deref().is_some_and(|c| crate::report::split_command(c).is_empty()) {
                return Err(format!("{key}: must not be empty"));
            }
        }
        Ok(())
    }

    /// The snapshot span.
    pub fn snapshot(&self) -> Duration {
        Duration::from_secs(self.snapshot.saturating_mul(86_400))
    }

    /// The retro search timeout (`None`: unlimited).
    pub fn retro_timeout(&self) -> Option<Duration> {
        (self.retro_match_timeout > 0.0).then(|| Duration::from_secs_f64(self.retro_match_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        let c: Config = threatbus_plugin_api::config::parse_plugin_config("tenzir", json).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_are_vast_threatbus_ones() {
        let c = parse("{}").unwrap();
        assert_eq!((c.snapshot, c.live_match, c.retro_match), (30, false, true));
        assert_eq!((c.retro_match_max_events, c.retro_match_timeout, c.max_background_tasks), (0, 3600.0, 500));
        assert_eq!(c.lookup_table, "threatbus");
        assert!(c.fields.all().contains(&"id.orig_h"));
    }

    #[test]
    fn errors_name_the_key() {
        for (json, key) in [
            (r#"{"matcher_name":"x"}"#, "matcher_name"),
            (r#"{"lookup_table":"a b"}"#, "lookup_table"),
            (r#"{"fields":{"ip":["src ip"]}}"#, "fields"),
            (r#"{"fields":{"ip":[],"domain":[],"url":[],"hash":[]}}"#, "fields"),
            (r#"{"endpoint":"localhost"}"#, "endpoint"),
            (r#"{"max_background_tasks":0}"#, "max_background_tasks"),
            (r#"{"sink":"  "}"#, "sink"),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.contains(key), "{json}: {e}");
        }
    }
}
