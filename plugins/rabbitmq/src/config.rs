//! The `plugins.backbones.rabbitmq` config section: the keys and defaults of
//! the Python `threatbus-rabbitmq`, plus optional keys for the fixes.

use std::path::PathBuf;
use std::time::Duration;

use threatbus_plugin_api::config::{read_secret, Secret};

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use serde::Deserialize;

/// The whole section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Broker host (required, as in Python).
    pub host: String,
    /// Broker port (required, as in Python).
    pub port: u16,
    /// User name (required).
    pub username: String,
    /// Password (required, here or in `password_file`; the environment
    /// variable `THREATBUS_PLUGINS__BACKBONES__RABBITMQ__PASSWORD` overrides
    /// it like any key). Used verbatim.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A file whose first line is the password, instead of `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// AMQP over TLS (`amqps`), verifying the broker's certificate and
    /// host name.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Virtual host, default `/`.
    #[serde(default = "default_vhost")]
    pub vhost: String,
    /// The fanout exchange shared by all hosts, default `threatbus`.
    #[serde(default = "default_exchange")]
    pub exchange_name: String,
    /// This host's queue.
    #[serde(default)]
    pub queue: QueueConfig,

    // --- New keys (not in the Python backbone). ---
    /// Declare the exchange durable (default `false`, like pika's default).
    /// All hosts on one exchange must agree: RabbitMQ refuses to redeclare an
    /// exchange with a different durability.
    #[serde(default)]
    pub exchange_durable: bool,
    /// Publish with delivery mode 2 (persistent). Default: `true` when
    /// `queue.durable` is true, else `false`. Persistent messages in a
    /// durable queue survive a broker restart.
    #[serde(default)]
    pub persistent: Option<bool>,
    /// AMQP heartbeat in seconds; default: what the broker proposes
    /// (RabbitMQ: 60). `0` disables heartbeats.
    #[serde(default)]
    pub heartbeat: Option<u16>,
    /// First reconnect delay in seconds (doubled per failed attempt).
    #[serde(default = "default_reconnect_delay")]
    pub reconnect_delay: f64,
    /// Upper bound of the reconnect delay in seconds.
    #[serde(default = "default_reconnect_max_delay")]
    pub reconnect_max_delay: f64,
    /// Connection (TCP + AMQP handshake) timeout in seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: f64,
    /// Published messages waiting for a broker confirm at most.
    #[serde(default = "default_max_unconfirmed")]
    pub max_unconfirmed: u16,
    /// Unacknowledged deliveries the broker may push to this host (basic.qos).
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// How long shutdown waits for the broker to confirm what was taken from
    /// the inbound queue, in seconds. Keep it below the host's
    /// `core.stop_timeout` (default 5).
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: f64,
}

/// The `tls` subsection: TLS is on when it is present (and `enabled` is
/// not false).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Default `true`: the section turns TLS on.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// PEM file of the CA(s) that signed the broker's certificate, trusted
    /// in addition to the system's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) of this host, for brokers that require
    /// client certificates; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM (PKCS#8) private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The `queue` subsection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Queue name suffix, default: the host name.
    #[serde(default = "hostname")]
    pub name_suffix: String,
    /// Joins `threatbus` and the suffix, default `.`.
    #[serde(default = "default_join")]
    pub name_join_symbol: String,
    /// Default `true`.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Default `false`.
    #[serde(default)]
    pub auto_delete: bool,
    /// `x-queue-mode: lazy` (default `true`) or `default`.
    #[serde(default = "yes")]
    pub lazy: bool,
    /// Default `false`.
    #[serde(default)]
    pub exclusive: bool,
    /// `x-max-length` when not 0 (default 0 = unlimited).
    #[serde(default)]
    pub max_items: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            name_suffix: hostname(),
            name_join_symbol: default_join(),
            durable: true,
            auto_delete: false,
            lazy: true,
            exclusive: false,
            max_items: 0,
        }
    }
}

fn default_vhost() -> String {
    "/".into()
}
fn default_exchange() -> String {
    "threatbus".into()
}
fn default_join() -> String {
    ".".into()
}
fn yes() -> bool {
    true
}
fn default_reconnect_delay() -> f64 {
    0.5
}
fn default_reconnect_max_delay() -> f64 {
    30.0
}
fn default_connect_timeout() -> f64 {
    10.0
}
fn default_max_unconfirmed() -> u16 {
    1000
}
fn default_prefetch() -> u16 {
    1000
}
fn default_shutdown_timeout() -> f64 {
    3.0
}

/// The host name, as Python's `socket.gethostname()`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

fn secs(what: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("{what} must be a non-negative number of seconds, got {v}"))
}

impl Config {
    /// Checks values serde cannot check.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.is_empty() {
            return Err("host must not be empty".into());
        }
        let min = secs("reconnect_delay", self.reconnect_delay)?;
        let max = secs("reconnect_max_delay", self.reconnect_max_delay)?;
        if min.is_zero() || max < min {
            return Err("need 0 < reconnect_delay <= reconnect_max_delay".into());
        }
        if secs("connect_timeout", self.connect_timeout)?.is_zero() {
            return Err("connect_timeout must be positive".into());
        }
        secs("shutdown_timeout", self.shutdown_timeout)?;
        if self.max_unconfirmed == 0 {
            return Err("max_unconfirmed must be at least 1".into());
        }
        if self.prefetch == 0 {
            return Err("prefetch must be at least 1".into());
        }
        if let Some(t) = &self.tls {
            if t.cert_file.is_some() != t.key_file.is_some() {
                return Err("tls.cert_file and tls.key_file go together".into());
            }
        }
        Ok(())
    }

    /// Reads `password_file` (if given) into `password`; checks that there
    /// is exactly one of them.
    pub fn resolve_password(&mut self) -> Result<(), String> {
        match (&self.password, &self.password_file) {
            (Some(_), None) => Ok(()),
            (password, file) => {
                let p = read_secret(password.as_ref(), file.as_ref(), "password")?;
                self.password = Some(Secret::from(p.as_str()));
                self.password_file = None;
                Ok(())
            }
        }
    }

    /// Whether the connection uses TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.enabled)
    }

    /// The extra TLS settings (read from their files now, so that renewed
    /// certificates apply at the next connection).
    pub fn tls_config(&self) -> Result<lapin::tcp::OwnedTLSConfig, String> {
        let mut out = lapin::tcp::OwnedTLSConfig::default();
        let Some(t) = self.tls.as_ref().filter(|t| t.enabled) else { return Ok(out) };
        let read = |key: &str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| format!("tls.{key}: cannot read {}: {e}", p.display()))
        };
        if let Some(ca) = &t.ca_file {
            out.cert_chain =
                Some(String::from_utf8(read("ca_file", ca)?).map_err(|_| "tls.ca_file: not a PEM file".to_string())?);
        }
        if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
            out.identity =
                Some(lapin::tcp::OwnedIdentity::PKCS8 { pem: read("cert_file", cert)?, key: read("key_file", key)? });
        }
        Ok(out)
    }

    /// `"threatbus" + name_join_symbol + name_suffix`.
    pub fn queue_name(&self) -> String {
        format!("threatbus{}{}", self.queue.name_join_symbol, self.queue.name_suffix)
    }

    /// Whether messages are published with delivery mode 2.
    pub fn persistent(&self) -> bool {
        self.persistent.unwrap_or(self.queue.durable)
    }

    /// The queue arguments exactly as the Python backbone declares them:
    /// `x-queue-mode` always, `x-max-length` only when `max_items` != 0.
    pub fn queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        let mode = if self.queue.lazy { "lazy" } else { "default" };
        args.insert("x-queue-mode".into(), AMQPValue::LongString(LongString::from(mode)));
        if self.queue.max_items != 0 {
            // pika encodes Python ints that fit in 32 bits as a signed 32-bit
            // value ('I'); larger ones as 64-bit ('l').
            let v = match i32::try_from(self.queue.max_items) {
                Ok(v) => AMQPValue::LongInt(v),
                Err(_) => AMQPValue::LongLongInt(i64::from(self.queue.max_items)),
            };
            args.insert("x-max-length".into(), v);
        }
        args
    }

    /// The broker address (credentials, vhost and heartbeat are set
    /// structurally, so no URL escaping is involved).
    pub fn uri(&self) -> AMQPUri {
        let password = self.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
        AMQPUri {
            scheme: if self.tls_enabled() { AMQPScheme::AMQPS } else { AMQPScheme::AMQP },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username: self.username.clone(), password },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                heartbeat: self.heartbeat,
                connection_timeout: Some((self.connect_timeout * 1000.0) as u64),
                ..AMQPQueryString::default()
            },
        }
    }

    /// `amqp[s]://host:port/vhost` for log lines (no credentials).
    pub fn endpoint(&self) -> String {
        format!(
            "{}://{}:{}/{}",
            if self.tls_enabled() { "amqps" } else { "amqp" },
            self.host,
            self.port,
            self.vhost.strip_prefix('/').unwrap_or(&self.vhost)
        )
    }

    pub fn reconnect_delay(&self) -> Duration {
        Duration::from_secs_f64(self.reconnect_delay)
    }
    pub fn reconnect_max_delay(&self) -> Duration {
        Duration::from_secs_f64(self.reconnect_max_delay)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, String> {
        threatbus_plugin_api::config::parse_plugin_config::<Config>("rabbitmq", json).map_err(|e| e.message.to_string())
    }

    #[test]
    fn python_defaults() {
        let c = parse(r#"{"host":"localhost","port":5672,"username":"guest","password":"guest"}"#).unwrap();
        assert_eq!(c.vhost, "/");
        assert_eq!(c.exchange_name, "threatbus");
        assert_eq!(c.queue_name(), format!("threatbus.{}", hostname()));
        assert!(c.queue.durable && c.queue.lazy && !c.queue.auto_delete && !c.queue.exclusive);
        assert_eq!(c.queue.max_items, 0);
        assert!(!c.exchange_durable, "pika declares the exchange non-durable");
        assert!(c.persistent(), "durable queue => persistent messages by default");
        let args = c.queue_arguments();
        let inner = args.inner();
        assert_eq!(inner.len(), 1, "{args:?}");
        assert_eq!(inner.get("x-queue-mode"), Some(&AMQPValue::LongString("lazy".into())));
        c.validate().unwrap();
    }

    #[test]
    fn queue_keys_map_to_arguments() {
        let c = parse(
            r#"{"host":"h","port":1,"username":"u","password":"p","queue":{"name_suffix":"x","name_join_symbol":"-","durable":false,"lazy":false,"max_items":10}}"#,
        )
        .unwrap();
        assert_eq!(c.queue_name(), "threatbus-x");
        assert!(!c.persistent());
        let args = c.queue_arguments();
        assert_eq!(args.inner().get("x-queue-mode"), Some(&AMQPValue::LongString("default".into())));
        assert_eq!(args.inner().get("x-max-length"), Some(&AMQPValue::LongInt(10)));
    }

    #[test]
    fn required_and_unknown_keys_are_errors() {
        let mut c = parse(r#"{"host":"h","port":1,"username":"u"}"#).unwrap();
        let e = c.resolve_password().unwrap_err();
        assert!(e.contains("password"), "{e}");
        let e = parse(r#"{"host":"h","port":1,"username":"u","password":"p","queue":{"durabel":true}}"#).unwrap_err();
        assert!(e.contains("queue") && e.contains("durabel"), "{e}");
        let e = parse(r#"{"host":"h","port":"x","username":"u","password":"p"}"#).unwrap_err();
        assert!(e.contains("port"), "{e}");
    }

    #[test]
    fn validation() {
        let mut c = parse(r#"{"host":"h","port":1,"username":"u","password":"p"}"#).unwrap();
        c.reconnect_delay = 0.0;
        assert!(c.validate().is_err());
        c.reconnect_delay = 5.0;
        c.reconnect_max_delay = 1.0;
        assert!(c.validate().is_err());
        c.reconnect_max_delay = 5.0;
        c.validate().unwrap();
        c.shutdown_timeout = f64::NAN;
        assert!(c.validate().is_err());
    }

    #[test]
    fn uri_carries_credentials_vhost_and_heartbeat() {
        let c =
            parse(r#"{"host":"h","port":5,"username":"u@x","password":"p/ss:w","vhost":"v/1","heartbeat":7}"#).unwrap();
        let u = c.uri();
        assert_eq!(u.authority.userinfo.password, "p/ss:w");
        assert_eq!(u.scheme, AMQPScheme::AMQP);
        assert_eq!(u.vhost, "v/1");
        assert_eq!(u.query.heartbeat, Some(7));
        assert_eq!(c.endpoint(), "amqp://h:5/v/1");
        let c = parse(r#"{"host":"h","port":5,"username":"u","password":"p"}"#).unwrap();
        assert_eq!(c.endpoint(), "amqp://h:5/");
    }

    #[test]
    fn password_from_a_file_and_tls_settings() {
        let dir = std::env::temp_dir().join(format!("tb-rmq-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, " s3cret \nsecond line\n").unwrap();
        let json = format!(
            r#"{{"host":"h","port":5671,"username":"u","password_file":{:?},"tls":{{"ca_file":"/nonexistent/ca.pem"}}}}"#,
            file
        );
        let mut c = parse(&json).unwrap();
        c.resolve_password().unwrap();
        assert_eq!(c.uri().authority.userinfo.password, "s3cret");
        assert_eq!(c.uri().scheme, AMQPScheme::AMQPS);
        assert_eq!(c.endpoint(), "amqps://h:5671/");
        let e = c.tls_config().unwrap_err();
        assert!(e.contains("tls.ca_file") && e.contains("/nonexistent/ca.pem"), "{e}");
        let both = r#"{"host":"h","port":1,"username":"u","password":"p","password_file":"/x"}"#;
        assert!(parse(both).unwrap().resolve_password().unwrap_err().contains("not both"));
        let half = r#"{"host":"h","port":1,"username":"u","password":"p","tls":{"cert_file":"/c"}}"#;
        assert!(parse(half).unwrap().validate().unwrap_err().contains("key_file"));
        assert!(format!("{:?}", parse(both).unwrap()).contains("redacted"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
