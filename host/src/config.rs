//! Loading and validating the YAML configuration (layout and defaults of the
//! Python original), with `THREATBUS_SECTION__KEY` environment overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "THREATBUS_";

/// Default plugin directory.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/threatbus/plugins";

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub logging: Logging,
    pub plugins: Plugins,
    /// Directory to load plugins from (`--plugin-dir` and
    /// `THREATBUS_PLUGIN_DIR` take precedence).
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// Bus core settings beyond the original.
    #[serde(default)]
    pub core: Core,
    /// The Prometheus endpoint (beyond the original); none when absent.
    #[serde(default)]
    pub metrics: Option<Metrics>,
}

/// Where `/metrics` is served.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Bind address.
    #[serde(default = "localhost")]
    pub host: String,
    /// TCP port.
    pub port: u16,
}

fn localhost() -> String {
    "127.0.0.1".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default = "yes")]
    pub console: bool,
    #[serde(default)]
    pub console_verbosity: Verbosity,
    #[serde(default)]
    pub file: bool,
    #[serde(default)]
    pub file_verbosity: Verbosity,
    #[serde(default = "default_log_file")]
    pub filename: PathBuf,
    /// Seconds between two stats lines in the log; 0: none.
    #[serde(default)]
    pub stats_interval: u64,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            console: true,
            console_verbosity: Verbosity::Info,
            file: false,
            file_verbosity: Verbosity::Info,
            filename: default_log_file(),
            stats_interval: 0,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_log_file() -> PathBuf {
    PathBuf::from("threatbus.log")
}

/// Log levels as spelled in the original's config.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verbosity {
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl Verbosity {
    pub fn level_filter(self) -> log::LevelFilter {
        match self {
            Verbosity::Debug => log::LevelFilter::Debug,
            Verbosity::Info => log::LevelFilter::Info,
            Verbosity::Warning => log::LevelFilter::Warn,
            Verbosity::Error | Verbosity::Critical => log::LevelFilter::Error,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugins {
    /// App plugin sections, keyed by plugin name.
    pub apps: BTreeMap<String, Value>,
    /// Backbone plugin sections, keyed by plugin name.
    pub backbones: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Core {
    /// Seconds a plugin gets to stop on shutdown.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: f64,
    /// Capacity of the shared inbound queue.
    #[serde(default = "default_inq_size")]
    pub inq_size: usize,
    /// Seconds after which an unanswered snapshot id is forgotten.
    #[serde(default = "default_snapshot_ttl")]
    pub snapshot_ttl: u64,
    /// Most snapshot ids remembered at once (oldest forgotten first).
    #[serde(default = "default_snapshot_max")]
    pub snapshot_max: usize,
}

impl Default for Core {
    fn default() -> Self {
        Self {
            stop_timeout: default_stop_timeout(),
            inq_size: default_inq_size(),
            snapshot_ttl: default_snapshot_ttl(),
            snapshot_max: default_snapshot_max(),
        }
    }
}

fn default_stop_timeout() -> f64 {
    5.0
}
fn default_inq_size() -> usize {
    100_000
}
fn default_snapshot_ttl() -> u64 {
    24 * 3600
}
fn default_snapshot_max() -> usize {
    10_000
}

/// Finds the config file: the `-c` argument, else `config.yaml` or
/// `config.yml` in the working directory.
pub fn locate(arg: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = arg {
        // As the original, only YAML files; the shipped `*.yaml.example` counts.
        let s = p.to_string_lossy();
        let s = s.strip_suffix(".example").unwrap_or(&s);
        if !(s.ends_with("yaml") || s.ends_with("yml")) {
            return Err("Please provide a `yaml` or `yml` configuration file.".into());
        }
        return Ok(p.to_path_buf());
    }
    for c in ["config.yaml", "config.yml"] {
        if Path::new(c).exists() {
            return Ok(PathBuf::from(c));
        }
    }
    Err("no configuration file: pass -c/--config FILE or put config.yaml in the working directory".into())
}

/// Reads, overrides and validates the config file.
pub fn load(path: &Path) -> Result<(Config, Value), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let mut env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    env.extend(dotenv_vars(Path::new(".env"), &env));
    parse(&text, &env).map_err(|e| format!("Invalid config {}: {e}", path.display()))
}

/// Parses YAML text, applies `THREATBUS_…` overrides from `env`, validates.
pub fn parse(text: &str, env: &[(String, String)]) -> Result<(Config, Value), String> {
    let yaml: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut value: Value = serde_json::to_value(yaml).map_err(|e| e.to_string())?;
    if value.is_null() {
        value = Value::Object(Default::default());
    }
    if !value.is_object() {
        return Err("the top level must be a mapping".into());
    }
    for (k, v) in env {
        apply_override(&mut value, k, v)?;
    }
    let de = value.clone();
    let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })?;
    Ok((cfg, value))
}

/// `THREATBUS_PLUGINS__APPS__ZMQ__MANAGE=13370` sets `plugins.apps.zmq.manage`.
fn apply_override(root: &mut Value, var: &str, raw: &str) -> Result<(), String> {
    let Some(path) = var.strip_prefix(ENV_PREFIX) else { return Ok(()) };
    if path.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!("environment variable {var}: empty key segment"));
    }
    let parsed: Value = serde_norway::from_str::<serde_norway::Value>(raw)
        .ok()
        .and_then(|v| serde_json::to_value(v).ok())
        .filter(|v| !v.is_object() && !v.is_array() || raw.trim_start().starts_with(['{', '[']))
        .unwrap_or_else(|| Value::String(raw.to_string()));
    let mut cur = root;
    for (i, k) in keys.iter().enumerate() {
        let obj = match cur {
            Value::Object(m) => m,
            Value::Null => {
                *cur = Value::Object(Default::default());
                cur.as_object_mut().expect("just set")
            }
            _ => return Err(format!("environment variable {var}: '{}' is not a section", keys[..i].join("."))),
        };
        if i + 1 == keys.len() {
            obj.insert(k.clone(), parsed);
            return Ok(());
        }
        cur = obj.entry(k.clone()).or_insert(Value::Null);
    }
    Ok(())
}

/// `THREATBUS_*` assignments from a `.env` file that the environment does
/// not already set (as Dynaconf's `load_dotenv`).
fn dotenv_vars(path: &Path, existing: &[(String, String)]) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let k = k.trim();
            let v = v.trim().trim_matches('"').trim_matches('\'');
            (k.starts_with(ENV_PREFIX) && !existing.iter().any(|(e, _)| e == k)).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "logging:\n  console: true\n  console_verbosity: INFO\n  file: false\n  file_verbosity: INFO\n  filename: threatbus.log\nplugins:\n  backbones:\n    inmem:\n  apps:\n    zmq:\n      host: \"127.0.0.1\"\n      manage: 13370\n";

    #[test]
    fn parses_original_layout_with_defaults() {
        let (cfg, _) = parse("plugins:\n  backbones:\n    inmem: {}\n  apps: {}\n", &[]).unwrap();
        assert!(cfg.logging.console);
        assert_eq!(cfg.logging.console_verbosity, Verbosity::Info);
        assert!(!cfg.logging.file);
        assert_eq!(cfg.logging.filename, PathBuf::from("threatbus.log"));
        assert!(cfg.plugins.backbones.contains_key("inmem"));
    }

    #[test]
    fn empty_plugin_section_is_null() {
        let (cfg, _) = parse(EXAMPLE, &[]).unwrap();
        assert_eq!(cfg.plugins.backbones["inmem"], Value::Null);
        assert_eq!(cfg.plugins.apps["zmq"]["manage"], 13370);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("logging:\n  consol: true\nplugins:\n  apps: {}\n  backbones: {}\n", &[]).unwrap_err();
        assert!(e.contains("logging") && e.contains("consol"), "{e}");
        let e = parse("plugins:\n  apps: {}\n  backbones: {}\nextra: 1\n", &[]).unwrap_err();
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn invalid_verbosity_is_named() {
        let e = parse("logging:\n  console_verbosity: LOUD\nplugins:\n  apps: {}\n  backbones: {}\n", &[]).unwrap_err();
        assert!(e.contains("logging.console_verbosity"), "{e}");
    }

    #[test]
    fn missing_plugins_section_is_an_error() {
        let e = parse("logging:\n  console: true\n", &[]).unwrap_err();
        assert!(e.contains("plugins"), "{e}");
        let e = parse("plugins:\n  apps: {}\n", &[]).unwrap_err();
        assert!(e.contains("backbones"), "{e}");
    }

    #[test]
    fn env_overrides_nested_keys_with_typed_values() {
        let env = vec![
            ("THREATBUS_LOGGING__CONSOLE".to_string(), "false".to_string()),
            ("THREATBUS_PLUGINS__APPS__ZMQ__MANAGE".to_string(), "23370".to_string()),
            ("THREATBUS_PLUGINS__APPS__ZMQ__HOST".to_string(), "0.0.0.0".to_string()),
            ("THREATBUS_PLUGIN_DIR".to_string(), "/opt/plugins".to_string()),
        ];
        let (cfg, _) = parse(EXAMPLE, &env).unwrap();
        assert!(!cfg.logging.console);
        assert_eq!(cfg.plugins.apps["zmq"]["manage"], 23370);
        assert_eq!(cfg.plugins.apps["zmq"]["host"], "0.0.0.0");
        assert_eq!(cfg.plugin_dir, Some(PathBuf::from("/opt/plugins")));
    }

    #[test]
    fn env_override_of_unknown_key_is_named() {
        let env = vec![("THREATBUS_LOGGIN__CONSOLE".to_string(), "false".to_string())];
        let e = parse(EXAMPLE, &env).unwrap_err();
        assert!(e.contains("loggin"), "{e}");
    }

    #[test]
    fn metrics_section_defaults_and_errors() {
        let (cfg, _) = parse(EXAMPLE, &[]).unwrap();
        assert!(cfg.metrics.is_none() && cfg.logging.stats_interval == 0, "off unless configured");
        let env = vec![("THREATBUS_METRICS__PORT".to_string(), "9555".to_string())];
        let (cfg, _) = parse(EXAMPLE, &env).unwrap();
        let m = cfg.metrics.expect("enabled from the environment");
        assert_eq!((m.host.as_str(), m.port), ("127.0.0.1", 9555));
        let e = parse(&format!("{EXAMPLE}metrics:\n  host: 127.0.0.1\n"), &[]).unwrap_err();
        assert!(e.contains("metrics") && e.contains("port"), "{e}");
        let e = parse(&format!("{EXAMPLE}metrics:\n  port: 70000\n"), &[]).unwrap_err();
        assert!(e.contains("metrics.port"), "{e}");
    }

    #[test]
    fn config_path_must_be_yaml() {
        assert!(locate(Some(Path::new("config.json"))).is_err());
        assert!(locate(Some(Path::new("x.yml"))).is_ok());
        assert!(locate(Some(Path::new("config.yaml.example"))).is_ok());
        assert!(locate(Some(Path::new("config.json.example"))).is_err());
    }
}
