//! The `plugins.apps.zeek` config section: the original's keys (`host`,
//! `port`, `module_namespace`) plus the TLS mode and limits.

use std::path::PathBuf;

use serde::Deserialize;

/// How peers connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Broker's default: TLS with anonymous ECDH (`AECDH-AES256-SHA`,
    /// P-384), encrypted but not authenticated; an unmodified Zeek connects.
    #[default]
    Anonymous,
    /// TLS with certificates (Broker's `ssl_cafile`, `ssl_certificate`,
    /// `ssl_keyfile`); peers must present a certificate the CA signed.
    Certificates,
    /// No TLS, for Zeeks with `redef Broker::disable_ssl = T;`.
    None,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    47761
}
fn default_namespace() -> String {
    "Tenzir".into()
}
fn default_max_peers() -> usize {
    64
}
fn default_queue_size() -> usize {
    100_000
}
fn default_max_frame() -> usize {
    16 << 20
}

/// The `plugins.apps.zeek` section.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Address to listen on (the original defaulted to `localhost`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Port to listen on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The Zeek module of the events (`<namespace>::intel`, …).
    #[serde(default = "default_namespace")]
    pub module_namespace: String,
    /// `anonymous` (default), `certificates` or `none`.
    #[serde(default)]
    pub tls: TlsMode,
    /// CA file (certificates mode).
    #[serde(default)]
    pub ssl_cafile: Option<PathBuf>,
    /// Certificate file (certificates mode).
    #[serde(default)]
    pub ssl_certificate: Option<PathBuf>,
    /// Private key file (certificates mode).
    #[serde(default)]
    pub ssl_keyfile: Option<PathBuf>,
    /// Peers at once; more are refused.
    #[serde(default = "default_max_peers")]
    pub max_peers: usize,
    /// Indicators waiting per Zeek subscription; more are dropped and counted.
    #[serde(default = "default_queue_size")]
    pub subscriber_queue_size: usize,
    /// Largest Broker frame accepted, in bytes.
    #[serde(default = "default_max_frame")]
    pub max_frame_size: usize,
}

impl Config {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("host: must not be empty".into());
        }
        if self.module_namespace.is_empty() || self.module_namespace.contains(char::is_whitespace) {
            return Err("module_namespace: must be a Zeek module name".into());
        }
        if self.tls == TlsMode::Certificates {
            for (key, v) in [
                ("ssl_cafile", &self.ssl_cafile),
                ("ssl_certificate", &self.ssl_certificate),
                ("ssl_keyfile", &self.ssl_keyfile),
            ] {
                if v.is_none() {
                    return Err(format!("{key}: required with tls: certificates"));
                }
            }
        }
        if self.max_peers == 0 || self.subscriber_queue_size == 0 {
            return Err("max_peers and subscriber_queue_size must be at least 1".into());
        }
        if self.max_frame_size < 1024 {
            return Err("max_frame_size: must be at least 1024".into());
        }
        Ok(())
    }
}
