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
    200_000
}
fn default_hwm() -> u32 {
    100_000
}
fn default_pub_hwm() -> u32 {
    1_000
}
fn default_queue_bytes() -> usize {
    128 << 20
}
fn default_max_frame_size() -> usize {
    1 << 20
}
fn default_max_subscriptions() -> usize {
    1_024
}
fn default_max_topics() -> usize {
    16
}
fn default_max_topic_length() -> usize {
    256
}
fn default_connect_grace() -> f64 {
    10.0
}
fn default_idle_timeout() -> f64 {
    300.0
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
    /// Most bytes (JSON) buffered per subscription before new messages
    /// are dropped.
    #[serde(default = "default_queue_bytes")]
    pub subscriber_queue_bytes: usize,
    /// Frames ZeroMQ holds per connected subscriber beyond the queue.
    #[serde(default = "default_pub_hwm")]
    pub pub_hwm: u32,
    #[serde(default = "default_hwm")]
    pub sub_hwm: u32,
    /// Largest frame accepted on the sub port.
    #[serde(default = "default_max_frame_size")]
    pub max_frame_size: usize,
    /// Most live subscriptions; more subscribe requests get `error`.
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions: usize,
    /// Most topics in one subscribe request.
    #[serde(default = "default_max_topics")]
    pub max_topics_per_request: usize,
    /// Longest topic in a subscribe request, in bytes.
    #[serde(default = "default_max_topic_length")]
    pub max_topic_length: usize,
    /// Seconds a new subscription buffers messages while its app has not
    /// yet subscribed to the p2p topic on the pub port.
    #[serde(default = "default_connect_grace")]
    pub connect_grace: f64,
    /// Seconds after which a subscription whose p2p topic nobody is
    /// subscribed to on the pub port is removed; 0 = never.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: f64,
    /// ZeroMQ CURVE on all three sockets (off when absent).
    #[serde(default)]
    pub curve: Option<crate::curve::CurveConfig>,
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("host: must not be empty".into());
        }
        if !self.heartbeat_timeout.is_finite() || self.heartbeat_timeout < 0.0 || self.heartbeat_timeout > 1e9 {
            return Err("heartbeat_timeout: must be a number of seconds >= 0 (0 = off)".into());
        }
        for (key, v) in [
            ("subscriber_queue_size", self.subscriber_queue_size),
            ("subscriber_queue_bytes", self.subscriber_queue_bytes),
            ("max_subscriptions", self.max_subscriptions),
            ("max_topics_per_request", self.max_topics_per_request),
            ("max_topic_length", self.max_topic_length),
        ] {
            if v == 0 {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        // Handshake commands (CURVE's INITIATE) count against the bound too.
        if !(1024..=(1 << 30)).contains(&self.max_frame_size) {
            return Err("max_frame_size: must be between 1024 bytes and 1 GiB".into());
        }
        for (key, v) in [("connect_grace", self.connect_grace), ("idle_timeout", self.idle_timeout)] {
            if !v.is_finite() || !(0.0..=1e9).contains(&v) {
                return Err(format!("{key}: must be a number of seconds >= 0"));
            }
        }
        for (key, v) in [("pub_hwm", self.pub_hwm), ("sub_hwm", self.sub_hwm)] {
            if v > i32::MAX as u32 {
                return Err(format!("{key}: must be at most {}", i32::MAX));
            }
        }
        Ok(())
    }

    pub(crate) fn connect_grace(&self) -> Duration {
        Duration::from_secs_f64(self.connect_grace)
    }

    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout > 0.0).then(|| Duration::from_secs_f64(self.idle_timeout))
    }

    pub(crate) fn heartbeat_timeout(&self) -> Option<Duration> {
        (self.heartbeat_timeout > 0.0).then(|| Duration::from_secs_f64(self.heartbeat_timeout))
    }
}
