//! The plugin's config section (`plugins.apps.echo`).

use serde::Deserialize;

/// Keys of `plugins.apps.echo`; any other key is an error (the SDK's config
/// helper rejects unknown keys).
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Topic prefixes to receive, e.g. `[stix2/indicator]`.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// Snapshot to request with each subscription, in days (0: none).
    #[serde(default)]
    pub snapshot_days: u64,
    /// A STIX indicator (JSON) to publish once at start, if any.
    #[serde(default)]
    pub announce: Option<String>,
}

fn default_topics() -> Vec<String> {
    vec!["stix2/".to_string()]
}
