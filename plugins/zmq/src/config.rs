//! The `plugins.apps.zmq` config section.

use std::time::Duration;

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_manage() -> u16 {
    13370
}
fn default_pub() -> u16 {
    13371
}
fn default_sub() -> u16 {
    13372
}
fn default_queue_size() -> usize {
    100_000
}
fn default_hwm() -> u32 {
    100_000
}

/// The `plugins.apps.zmq` section. The Python keys `host`, `manage`, `pub`,
/// `sub` keep their meaning but are optional here.
#[derive(serde::Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_manage")]
    pub manage: u16,
    #[serde(default = "default_pub", rename = "pub")]
    pub pub_port: u16,
    #[serde(default = "default_sub")]
    pub sub: u16,
    /// Seconds; 0 disables expiry.
    #[serde(default)]
    pub heartbeat_timeout: f64,
    #[serde(default = "default_queue_size")]
    pub subscriber_queue_size: usize,
    #[serde(default = "default_hwm")]
    pub pub_hwm: u32,
    #[serde(default = "default_hwm")]
    pub sub_hwm: u32,
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("host: must not be empty".into());
        }
        if !self.heartbeat_timeout.is_finite() || self.heartbeat_timeout < 0.0 || self.heartbeat_timeout > 1e9 {
            return Err("heartbeat_timeout: must be a number of seconds >= 0 (0 = off)".into());
        }
        if self.subscriber_queue_size == 0 {
            return Err("subscriber_queue_size: must be at least 1".into());
        }
        for (key, v) in [("pub_hwm", self.pub_hwm), ("sub_hwm", self.sub_hwm)] {
            if v > i32::MAX as u32 {
                return Err(format!("{key}: must be at most {}", i32::MAX));
            }
        }
        Ok(())
    }

    pub(crate) fn heartbeat_timeout(&self) -> Option<Duration> {
        (self.heartbeat_timeout > 0.0).then(|| Duration::from_secs_f64(self.heartbeat_timeout))
    }
}
