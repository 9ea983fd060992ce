//! The Zeek event layer over Broker data, and the mapping between Zeek's
//! Threat Bus events and STIX objects (as the original `threatbus-zeek`).
//!
//! A Zeek message is `[count 1 (format), count 1 (event), [name, args]]`;
//! Zeek 6+ appends metadata (`[name, args, metadata]`), which is accepted
//! and ignored.

use chrono::{DateTime, Utc};
use serde_json::{Map, Number, Value as Json};
use threatbus_stix::ioc::split_object_path_and_value;
use threatbus_stix::{Indicator, Operation, Sighting, X_THREATBUS_SIGHTING_CONTEXT};

use crate::value::Value;

/// A Zeek event: its name and arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The fully qualified name, e.g. `Tenzir::subscribe`.
    pub name: String,
    /// The arguments.
    pub args: Vec<Value>,
}

impl Event {
    /// The Broker value of this event (without metadata).
    pub fn to_value(&self) -> Value {
        Value::Vector(vec![
            Value::Count(1),
            Value::Count(1),
            Value::Vector(vec![Value::string(&self.name), Value::Vector(self.args.clone())]),
        ])
    }

    /// Reads an event; `None` for anything else (other message types,
    /// other shapes).
    pub fn from_value(v: &Value) -> Option<Event> {
        let [format, kind, content] = v.as_vector()? else { return None };
        if format.as_count()? != 1 || kind.as_count()? != 1 {
            return None;
        }
        let content = content.as_vector()?;
        if !(2..=3).contains(&content.len()) {
            return None;
        }
        let name = content[0].as_str()?.to_string();
        let args = content[1].as_vector()?.to_vec();
        Some(Event { name, args })
    }
}

/// The Zeek intel type of a STIX object path, as the original maps it.
fn intel_type(object_path: &str) -> Option<&'static str> {
    Some(match object_path {
        "domain-name:value" => "DOMAIN",
        "email-addr:value" => "EMAIL",
        "file:name" => "FILE_NAME",
        "file:hashes.MD5"
        | "file:hashes.'SHA-1'"
        | "file:hashes.'SHA-256'"
        | "file:hashes.'SHA-512'"
        | "file:hashes.'SHA3-256'"
        | "file:hashes.'SHA3-512'"
        | "file:hashes.SSDEEP"
        | "file:hashes.TLSH" => "FILE_HASH",
        "ipv4-addr:value" | "ipv6-addr:value" => "ADDR",
        "software:name" => "SOFTWARE",
        "url:value" => "URL",
        "user:user_id" | "user:account_login" => "USER_NAME",
        "x509-certificate:hashes.'SHA-1'" => "CERT_HASH",
        _ => return None,
    })
}

/// A URL without its scheme (`https://evil.com/x` → `evil.com/x`), as Zeek's
/// intel framework wants URLs.
fn strip_scheme(url: &str) -> &str {
    if let Some((scheme, rest)) = url.split_once("://") {
        let mut chars = scheme.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if valid {
            return rest;
        }
    }
    url
}

/// Nanoseconds since the epoch of a STIX timestamp.
fn stix_time_ns(ts: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc).timestamp_nanos_opt()
}

/// Why an indicator is not sent to Zeek.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not a single `[path = 'value']` comparison.
    NotPointIoc,
    /// An object path Zeek's intel framework has no type for.
    UnsupportedPath(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotPointIoc => f.write_str("not a point indicator"),
            Skip::UnsupportedPath(p) => write!(f, "Zeek has no intel type for {p}"),
        }
    }
}

/// The `<namespace>::intel` event for an indicator: one record argument
/// `[ts, id, intel type, value, ADD|REMOVE]`.
pub fn intel_event(namespace: &str, indicator: &Indicator) -> Result<Event, Skip> {
    let (path, value) = split_object_path_and_value(indicator.pattern()).ok_or(Skip::NotPointIoc)?;
    let mut kind = intel_type(&path).ok_or_else(|| Skip::UnsupportedPath(path.clone()))?;
    let value = match kind {
        "URL" => strip_scheme(&value).to_string(),
        "ADDR" if value.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty()) => {
            kind = "SUBNET";
            value
        }
        _ => value,
    };
    let created = indicator.get("created").and_then(Json::as_str).and_then(stix_time_ns).unwrap_or(0);
    let operation = if indicator.update() == Some(Operation::Remove) { "REMOVE" } else { "ADD" };
    let record = Value::Vector(vec![
        Value::Timestamp(created),
        Value::string(indicator.id()),
        Value::string(kind),
        Value::string(&value),
        Value::string(operation),
    ]);
    Ok(Event { name: format!("{namespace}::intel"), args: vec![record] })
}

/// A Broker value as JSON for a sighting's context.
fn to_json(v: &Value) -> Json {
    match v {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Count(c) => Json::Number((*c).into()),
        Value::Integer(i) => Json::Number((*i).into()),
        Value::Real(f) => Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
        Value::String(s) | Value::Enum(s) => Json::String(String::from_utf8_lossy(s).into_owned()),
        Value::Address(a) => Json::String(a.to_ipv4_mapped().map_or_else(|| a.to_string(), |v4| v4.to_string())),
        Value::Subnet(a, len) => Json::String(match a.to_ipv4_mapped() {
            Some(v4) => format!("{v4}/{}", len.saturating_sub(96)),
            None => format!("{a}/{len}"),
        }),
        Value::Port(n, proto) => {
            let p = ["unknown", "tcp", "udp", "icmp"].get(*proto as usize).copied().unwrap_or("unknown");
            Json::String(format!("{n}/{p}"))
        }
        Value::Timestamp(ns) => {
            Json::String(DateTime::from_timestamp_nanos(*ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        Value::Timespan(ns) => Number::from_f64(*ns as f64 / 1e9).map(Json::Number).unwrap_or(Json::Null),
        Value::Set(items) | Value::Vector(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Table(entries) => {
            if entries.iter().all(|(k, _)| matches!(k, Value::String(_))) {
                let map: Map<String, Json> = entries
                    .iter()
                    .map(|(k, v)| {
                        (String::from_utf8_lossy(k.as_str().unwrap_or("").as_bytes()).into_owned(), to_json(v))
                    })
                    .collect();
                Json::Object(map)
            } else {
                Json::Array(entries.iter().map(|(k, v)| Json::Array(vec![to_json(k), to_json(v)])).collect())
            }
        }
    }
}

/// The STIX sighting of Zeek's `sighting(ts, intel id, context)`.
pub fn sighting(ts: &Value, id: &Value, context: &Value) -> Result<Sighting, String> {
    let Value::Timestamp(ns) = ts else { return Err(format!("sighting: ts must be a time, got {ts:?}")) };
    let id = id.as_str().ok_or_else(|| format!("sighting: the intel id must be a string, got {id:?}"))?;
    let mut s = Sighting::new(id).map_err(|e| format!("sighting of '{id}': {e}"))?;
    s.set_last_seen(DateTime::from_timestamp_nanos(*ns));
    s.set_custom(X_THREATBUS_SIGHTING_CONTEXT, to_json(context));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{decode, encode};

    use crate::testutil::hex;

    fn indicator(pattern: &str, update: Option<&str>) -> Indicator {
        let mut v = serde_json::json!({
            "type": "indicator", "spec_version": "2.1",
            "id": "indicator--de0c3d3f-02ee-4086-88f1-51200ac831f7",
            "created": "2024-01-02T03:04:05.123Z", "modified": "2024-01-02T03:04:05.123Z",
            "pattern": pattern, "pattern_type": "stix", "valid_from": "2024-01-02T03:04:05.123Z",
        });
        if let Some(u) = update {
            v["x_threatbus_update"] = u.into();
        }
        Indicator::from_value(v).unwrap()
    }

    /// The subscribe event of a Zeek (without metadata) and of a Zeek 6+
    /// (with its network-timestamp metadata).
    #[test]
    fn subscribe_event_vectors() {
        let payload = hex("0e03 020000000000000001 020000000000000001 0e02 0511 54656e7a69723a3a737562736372696265
             0e02 050f 73746978322f696e64696361746f72 0a fff6ca96f8be0000");
        let e = Event::from_value(&decode(&payload).unwrap()).unwrap();
        assert_eq!(e.name, "Tenzir::subscribe");
        assert_eq!(e.args, vec![Value::string("stix2/indicator"), Value::Timespan(-2_592_000_000_000_000)]);
        assert_eq!(encode(&e.to_value()), payload);
        let with_meta = hex("0e03 020000000000000001 020000000000000001 0e03 0511 54656e7a69723a3a737562736372696265
             0e02 050f 73746978322f696e64696361746f72 0a fff6ca96f8be0000
             0e01 0e02 020000000000000001 0917a668b7375cff15");
        assert_eq!(Event::from_value(&decode(&with_meta).unwrap()), Some(e));
        assert_eq!(Event::from_value(&Value::Vector(vec![Value::Count(1), Value::Count(2), Value::None])), None);
    }

    /// The acknowledgement, unsubscribe and sighting payloads, byte for byte.
    #[test]
    fn management_and_sighting_vectors() {
        let event = |name: &str, args: Vec<Value>| encode(&Event { name: name.into(), args }.to_value());
        let p2p = Value::string("stix2/indicatorqwertzuiop");
        let head = "0e03 020000000000000001 020000000000000001 0e02";
        assert_eq!(
            event("Tenzir::subscription_acknowledged", vec![p2p.clone()]),
            hex(&format!(
                "{head} 0521 54656e7a69723a3a737562736372697074696f6e5f61636b6e6f776c6564676564 0e01 0519 73746978322f696e64696361746f7271776572747a75696f70"
            ))
        );
        assert_eq!(
            event("Tenzir::unsubscribe", vec![p2p]),
            hex(&format!(
                "{head} 0513 54656e7a69723a3a756e737562736372696265 0e01 0519 73746978322f696e64696361746f7271776572747a75696f70"
            ))
        );
        let sighting = hex(&format!(
            "{head} 0510 54656e7a69723a3a7369676874696e67 0e03 09 17a668b7375cff15
             052f 696e64696361746f722d2d64653063336433662d303265652d343038362d383866312d353132303061633833316637
             0d01 0505 6e6f697379 0100"
        ));
        let e = Event::from_value(&decode(&sighting).unwrap()).unwrap();
        assert_eq!(e.name, "Tenzir::sighting");
        let s = super::sighting(&e.args[0], &e.args[1], &e.args[2]).unwrap();
        assert_eq!(s.sighting_of_ref(), "indicator--de0c3d3f-02ee-4086-88f1-51200ac831f7");
    }

    #[test]
    fn intel_event_vector() {
        let e = intel_event("Tenzir", &indicator("[domain-name:value = 'evil.com']", None)).unwrap();
        let want = hex("0e03 020000000000000001 020000000000000001 0e02 050d 54656e7a69723a3a696e74656c 0e01
             0e05 09 17a668b7375606c0
             052f 696e64696361746f722d2d64653063336433662d303265652d343038362d383866312d353132303061633833316637
             0506 444f4d41494e 0508 6576696c2e636f6d 0503 414444");
        assert_eq!(encode(&e.to_value()), want);
    }

    /// The mapping cases of the original plugin's unit tests.
    #[test]
    fn mapping_like_the_original() {
        let map = |p: &str| {
            intel_event("Tenzir", &indicator(p, None)).map(|e| match &e.args[0] {
                Value::Vector(f) => (f[2].as_str().unwrap().to_string(), f[3].as_str().unwrap().to_string()),
                _ => unreachable!(),
            })
        };
        let ok = |p: &str, kind: &str, value: &str| assert_eq!(map(p), Ok((kind.into(), value.into())), "{p}");
        ok("[ipv4-addr:value = '6.6.6.6']", "ADDR", "6.6.6.6");
        ok("[ipv4-addr:value = '6.6.6.0/24']", "SUBNET", "6.6.6.0/24");
        ok("[ipv6-addr:value = '::1']", "ADDR", "::1");
        ok("[ipv6-addr:value = '2001:db8::/32']", "SUBNET", "2001:db8::/32");
        ok("[domain-name:value = 'example.com']", "DOMAIN", "example.com");
        ok("[url:value = 'https://example.com/foo?bar']", "URL", "example.com/foo?bar");
        ok("[url:value = 'example.com/foo']", "URL", "example.com/foo");
        ok("[email-addr:value = 'a@b.c']", "EMAIL", "a@b.c");
        ok("[file:name = 'evil.exe']", "FILE_NAME", "evil.exe");
        ok("[file:hashes.MD5 = '0123456789abcdef0123456789abcdef']", "FILE_HASH", "0123456789abcdef0123456789abcdef");
        ok("[software:name = 'x']", "SOFTWARE", "x");
        ok("[user:user_id = 'root']", "USER_NAME", "root");
        ok(
            "[x509-certificate:hashes.'SHA-1' = '0123456789abcdef0123456789abcdef01234567']",
            "CERT_HASH",
            "0123456789abcdef0123456789abcdef01234567",
        );
        assert_eq!(map("[ipv4-addr:value = '6.6.6.6'] AND [ipv4-addr:value = '7.7.7.7']"), Err(Skip::NotPointIoc));
        assert_eq!(map("[process:pid = 5]"), Err(Skip::UnsupportedPath("process:pid".into())));
        let remove = intel_event("Tenzir", &indicator("[domain-name:value = 'evil.com']", Some("REMOVE"))).unwrap();
        assert!(matches!(&remove.args[0], Value::Vector(f) if f[4] == Value::string("REMOVE")));
    }

    #[test]
    fn sighting_from_zeek() {
        let ctx = Value::Table(vec![(Value::string("noisy"), Value::Bool(false))]);
        let s = sighting(
            &Value::Timestamp(1_704_164_645_123_456_789),
            &Value::string("indicator--de0c3d3f-02ee-4086-88f1-51200ac831f7"),
            &ctx,
        )
        .unwrap();
        let json = s.to_json();
        assert!(json.contains(r#""last_seen": "2024-01-02T03:04:05.123456Z""#), "{json}");
        assert!(json.contains(r#""sighting_of_ref": "indicator--de0c3d3f-02ee-4086-88f1-51200ac831f7""#), "{json}");
        assert!(json.ends_with(r#""x_threatbus_sighting_context": {"noisy": false}}"#), "{json}");
        assert!(sighting(&Value::Count(1), &Value::string("x"), &ctx).is_err());
        assert!(sighting(&Value::Timestamp(0), &Value::string("not an id"), &ctx).is_err());
    }
}
