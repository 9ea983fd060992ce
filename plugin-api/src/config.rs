//! Typed plugin configuration.

use serde::de::DeserializeOwned;

use crate::PluginError;

/// Deserializes a plugin's config JSON into `T`. The error names the plugin
/// and the offending key path, e.g.
/// `invalid config for plugin 'zmq': manage: invalid type: string "x", expected u16`.
/// An absent or empty section (`null`) is treated as `{}`.
///
/// Keys that `T` does not know are errors, whether or not `T` says
/// `#[serde(deny_unknown_fields)]`: a misspelt key must not be ignored.
pub fn parse_plugin_config<T: DeserializeOwned>(plugin: &str, json: &str) -> Result<T, PluginError> {
    let trimmed = json.trim();
    let json = if trimmed.is_empty() || trimmed == "null" { "{}" } else { json };
    let de = &mut serde_json::Deserializer::from_str(json);
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let ignoring = serde_ignored::Deserializer::new(de, &mut record);
    let value = serde_path_to_error::deserialize(ignoring).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            invalid_config(plugin, inner)
        } else {
            invalid_config(plugin, format_args!("{path}: {inner}"))
        }
    })?;
    match unknown.first() {
        None => Ok(value),
        Some(path) => Err(invalid_config(plugin, format_args!("unknown key `{path}`"))),
    }
}

/// The error for a config that deserialized but failed a plugin's own
/// checks, e.g. `invalid config for plugin 'zmq': host: must not be empty`.
pub fn invalid_config(plugin: &str, detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(format!("invalid config for plugin '{plugin}': {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        host: String,
        #[serde(default)]
        queue: Q,
    }

    #[derive(serde::Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields)]
    struct Q {
        #[serde(default)]
        durable: bool,
    }

    #[test]
    fn names_plugin_and_nested_key() {
        let e = parse_plugin_config::<Cfg>("rabbitmq", r#"{"host":"h","queue":{"durable":"yes"}}"#).unwrap_err();
        assert!(e.message.contains("plugin 'rabbitmq'"), "{e}");
        assert!(e.message.contains("queue.durable"), "{e}");
    }

    #[test]
    fn names_unknown_key() {
        let e = parse_plugin_config::<Cfg>("zmq", r#"{"host":"h","hots":1}"#).unwrap_err();
        assert!(e.message.contains("unknown field `hots`"), "{e}");
    }

    #[test]
    fn names_missing_key() {
        let e = parse_plugin_config::<Cfg>("zmq", "{}").unwrap_err();
        assert!(e.message.contains("missing field `host`"), "{e}");
    }

    #[test]
    fn valid_config_deserializes() {
        let c = parse_plugin_config::<Cfg>("rabbitmq", r#"{"host":"h","queue":{"durable":true}}"#).unwrap();
        assert_eq!(c.host, "h");
        assert!(c.queue.durable);
    }

    #[test]
    fn unknown_keys_are_errors_without_deny_unknown_fields() {
        #[derive(serde::Deserialize, Debug)]
        struct Lenient {
            #[allow(dead_code)]
            host: String,
            #[serde(default)]
            #[allow(dead_code)]
            nested: Option<std::collections::BTreeMap<String, u32>>,
        }
        let e = parse_plugin_config::<Lenient>("third", r#"{"host":"h","hots":1}"#).unwrap_err();
        assert_eq!(e.message, "invalid config for plugin 'third': unknown key `hots`");
        assert!(parse_plugin_config::<Lenient>("third", r#"{"host":"h","nested":{"any":1}}"#).is_ok());
    }

    #[test]
    fn null_is_empty_section() {
        #[derive(serde::Deserialize)]
        struct Empty {}
        assert!(parse_plugin_config::<Empty>("inmem", "null").is_ok());
    }
}

/// A secret from the config (a password, an API key, a token): never
/// printed, not even by `Debug`.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl Secret {
    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A secret given in the config (`<name>`, which the host's environment
/// overrides like any key) or in a file (`<name>_file`, its first line), so
/// that it need not sit in the config file. `key` names the setting in
/// errors, e.g. `api.key`.
pub fn read_secret(value: Option<&Secret>, file: Option<&std::path::PathBuf>, key: &str) -> Result<String, String> {
    match (value.map(|s| s.0.as_str()), file) {
        (Some(_), Some(_)) => Err(format!("{key}: set one of {key} and {key}_file, not both")),
        (None, None) => Err(format!("{key}: required (or {key}_file)")),
        (Some(v), None) if v.trim().is_empty() => Err(format!("{key}: must not be empty")),
        (Some(v), None) => Ok(v.trim().to_string()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{key}_file: cannot read {}: {e}", path.display()))?;
            let secret = text.lines().next().unwrap_or("").trim().to_string();
            if secret.is_empty() {
                return Err(format!("{key}_file: {} holds no secret", path.display()));
            }
            Ok(secret)
        }
    }
}
