//! MISP attribute notifications to STIX-2.1 indicators, the filter, and
//! STIX sightings to MISP sightings. Pure functions, no I/O.
//!
//! Kept from the original `threatbus-misp`:
//! * the filter (`orgs` on `Event.orgc_id`, string or number; `types`;
//!   `tags` on the attribute's own tags; any filter entry may match);
//! * indicator ids `indicator--<attribute uuid>`, `created` from the
//!   attribute timestamp, `valid_from` the time of mapping;
//! * the type table, compound types (`a|b`) as `[a] AND [b]`, and the
//!   pattern text the `stix2` library writes;
//! * `to_ids: false` on a new attribute: no indicator; on an edit: a removal.
//!
//! Fixed, on purpose:
//! * timestamps are UTC (the original read them as local time);
//! * `modified` is the attribute timestamp (its last change in MISP), as
//!   `created` is, so that one version of an attribute always maps to the
//!   same indicator (the original wrote the time of mapping);
//! * deletions (`delete`, `soft-delete`, `deleted: true`) become removals
//!   (the original dropped them or re-added the indicator); a hard delete
//!   carries no `Event`, so a removal is not held to the `orgs` filter:
//!   removing an indicator that was never added is harmless;
//! * file hashes (`md5`, `sha1`, `sha256`, `sha512`, `sha3-256`,
//!   `sha3-512`, `ssdeep`, `tlsh`), `filename`, `filename|<hash>`, `regkey`
//!   and `regkey|value` map to `file` and `windows-registry-key` patterns
//!   (the original dropped them);
//! * `ip`, `ip-src` and `ip-dst` with an IPv6 value map to `ipv6-addr`
//!   (the original wrote `ipv4-addr` for every address).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::config::Filter;

/// What MISP did to an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `add`: a new attribute.
    Add,
    /// `edit`: a changed attribute.
    Edit,
    /// `delete`: hard-deleted (the payload has no `Event`).
    Delete,
    /// `soft-delete`: flagged as deleted.
    SoftDelete,
}

impl Action {
    /// Parses MISP's `action` field.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "add" => Action::Add,
            "edit" => Action::Edit,
            "delete" => Action::Delete,
            "soft-delete" => Action::SoftDelete,
            _ => return None,
        })
    }
}

/// The tag names of an attribute (`Attribute.Tag[].name`).
fn tag_names(attr: &Map<String, Value>) -> Vec<&str> {
    match attr.get("Tag") {
        Some(Value::Array(tags)) => tags.iter().filter_map(|t| t.get("name")?.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// A JSON string or number as text (MISP 2.4 sends ids as strings, newer
/// versions sometimes as numbers).
fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether an attribute notification passes the filter. `removal` relaxes
/// the `orgs` check for payloads without an `Event` (hard deletes).
pub fn is_whitelisted(msg: &Map<String, Value>, filters: &[Filter], removal: bool) -> bool {
    let Some(attr) = msg.get("Attribute").and_then(Value::as_object).filter(|a| !a.is_empty()) else {
        return false;
    };
    let Some(kind) = attr.get("type").and_then(Value::as_str).filter(|t| !t.is_empty()) else {
        return false;
    };
    let event = msg.get("Event").and_then(Value::as_object).filter(|e| !e.is_empty());
    let orgc_id = event.and_then(|e| text_of(e.get("orgc_id")));
    if orgc_id.is_none() && !removal {
        return false;
    }
    if filters.is_empty() {
        return true;
    }
    let tags = tag_names(attr);
    filters.iter().any(|f| {
        let org_ok = f.orgs.is_empty()
            || match &orgc_id {
                Some(id) => f.orgs.iter().any(|o| o.0 == *id || same_number(&o.0, id)),
                None => true,
            };
        org_ok
            && (f.types.is_empty() || f.types.iter().any(|t| t == kind))
            && (f.tags.is_empty() || f.tags.iter().any(|t| tags.contains(&t.as_str())))
    })
}

/// `"007"` and `7` name the same organisation (the original compared
/// `int(orgc_id)` with integer config values).
fn same_number(a: &str, b: &str) -> bool {
    match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Why an attribute produced no indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Nothing to do (e.g. `to_ids: false` on a new attribute); debug only.
    Quiet(String),
    /// The attribute is malformed or unmappable; worth a warning.
    Invalid(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Quiet(s) | Skip::Invalid(s) => f.write_str(s),
        }
    }
}

/// Whether a notification is a removal (decided before the filter runs).
pub fn is_removal(msg: &Map<String, Value>) -> bool {
    let action = msg.get("action").and_then(Value::as_str).and_then(Action::parse);
    let attr = msg.get("Attribute").and_then(Value::as_object);
    let deleted = attr.and_then(|a| a.get("deleted")).is_some_and(truthy);
    let to_ids = attr.and_then(|a| a.get("to_ids")).map(truthy);
    matches!(action, Some(Action::Delete | Action::SoftDelete))
        || deleted
        || (action == Some(Action::Edit) && to_ids == Some(false))
}

/// MISP booleans: JSON booleans, and `0`/`1` as numbers or strings.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64() != Some(0),
        Value::String(s) => !matches!(s.as_str(), "" | "0" | "false"),
        _ => false,
    }
}

/// Maps one attribute (with the notification's `action`) to the JSON of a
/// STIX-2.1 indicator, for the host to validate. `now` is `valid_from`.
pub fn attribute_to_indicator(attr: &Map<String, Value>, action: &str, now: DateTime<Utc>) -> Result<String, Skip> {
    let act = Action::parse(action).ok_or_else(|| Skip::Invalid(format!("unknown action '{action}'")))?;
    let to_ids = match attr.get("to_ids") {
        None | Some(Value::Null) => return Err(Skip::Invalid("the attribute has no to_ids".into())),
        Some(v) => truthy(v),
    };
    let field = |k: &str| text_of(attr.get(k)).ok_or_else(|| Skip::Invalid(format!("the attribute has no {k}")));
    let timestamp = field("timestamp")?;
    let uuid = field("uuid")?;
    let kind = field("type")?;
    let value = field("value")?;
    let deleted = attr.get("deleted").is_some_and(truthy);
    let remove = matches!(act, Action::Delete | Action::SoftDelete) || deleted || (!to_ids && act == Action::Edit);
    if !to_ids && !remove {
        return Err(Skip::Quiet(format!("attribute {uuid} is not for IDS (to_ids: false)")));
    }
    let secs: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Skip::Invalid(format!("attribute {uuid}: timestamp '{timestamp}' is not a Unix time")))?;
    let created = DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| Skip::Invalid(format!("attribute {uuid}: timestamp {secs} is out of range")))?;
    let pattern = pattern_of(&kind, &value).map_err(|why| match why {
        Skip::Quiet(w) => Skip::Quiet(format!("attribute {uuid}: {w}")),
        Skip::Invalid(w) => Skip::Invalid(format!("attribute {uuid}: {w}")),
    })?;
    let mut ind = Map::new();
    let ts = |t: DateTime<Utc>| Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true));
    ind.insert("type".into(), "indicator".into());
    ind.insert("spec_version".into(), "2.1".into());
    ind.insert("id".into(), format!("indicator--{uuid}").into());
    ind.insert("created".into(), ts(created));
    ind.insert("modified".into(), ts(created));
    ind.insert("pattern".into(), pattern.into());
    ind.insert("pattern_type".into(), "stix".into());
    ind.insert("pattern_version".into(), "2.1".into());
    ind.insert("valid_from".into(), ts(now));
    if remove {
        ind.insert("x_threatbus_update".into(), "REMOVE".into());
    }
    Ok(Value::Object(ind).to_string())
}

/// A STIX string literal as the `stix2` library writes it.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// STIX hash names of MISP's hash attribute types, with the hex length
/// where the hash has a fixed one.
fn hash_name(kind: &str) -> Option<(&'static str, Option<usize>)> {
    Some(match kind {
        "md5" => ("MD5", Some(32)),
        "sha1" => ("'SHA-1'", Some(40)),
        "sha256" => ("'SHA-256'", Some(64)),
        "sha512" => ("'SHA-512'", Some(128)),
        "sha3-256" => ("'SHA3-256'", Some(64)),
        "sha3-512" => ("'SHA3-512'", Some(128)),
        "ssdeep" => ("SSDEEP", None),
        "tlsh" => ("TLSH", None),
        _ => return None,
    })
}

fn check_hash(kind: &str, value: &str, len: Option<usize>) -> Result<(), Skip> {
    match len {
        Some(n) if value.len() != n || !value.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(Skip::Invalid(format!("'{value}' is not a valid {kind} hash")))
        }
        _ => Ok(()),
    }
}

/// The comparison of one point attribute, without brackets. Types
/// without a mapping are [`Skip::Quiet`]: MISP holds many that no IDS
/// can use (comments, links, ports), and nothing is wrong with them.
fn comparison(kind: &str, value: &str) -> Result<String, Skip> {
    let path = match kind {
        "ip" | "ip-src" | "ip-dst" if value.contains(':') => "ipv6-addr:value",
        "ip" | "ip-src" | "ip-dst" => "ipv4-addr:value",
        "hostname" | "domain" => "domain-name:value",
        "mac-address" | "mac-eui-64" => "mac-addr:value",
        "email" | "email-dst" | "email-src" | "eppn" => "email-addr:value",
        "url" | "uri" => "url:value",
        "filename" => "file:name",
        "regkey" => "windows-registry-key:key",
        "AS" => {
            let n: i64 = value.trim().parse().map_err(|_| Skip::Invalid(format!("'{value}' is not an AS number")))?;
            return Ok(format!("autonomous-system:number = {n}"));
        }
        "stix2-pattern" => {
            let inner = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
            return Ok(inner.to_string());
        }
        "x509-fingerprint-md5" | "x509-fingerprint-sha1" | "x509-fingerprint-sha256" => {
            let algo = &kind["x509-fingerprint-".len()..];
            let (name, len) = hash_name(algo).expect("md5, sha1 and sha256 are hash types");
            check_hash(algo, value, len)?;
            return Ok(format!("x509-certificate:hashes.{name} = {}", literal(value)));
        }
        _ => match hash_name(kind) {
            Some((name, len)) => {
                check_hash(kind, value, len)?;
                return Ok(format!("file:hashes.{name} = {}", literal(value)));
            }
            None => return Err(Skip::Quiet(format!("no STIX mapping for MISP attribute type '{kind}'"))),
        },
    };
    Ok(format!("{path} = {}", literal(value)))
}

/// The STIX pattern of an attribute type and value.
pub fn pattern_of(kind: &str, value: &str) -> Result<String, Skip> {
    let Some((first, second)) = kind.split_once('|') else {
        return Ok(format!("[{}]", comparison(kind, value)?));
    };
    // Parts of one object: one observation with both comparisons.
    let same_object = (first == "filename" && hash_name(second).is_some()) || kind == "regkey|value";
    let values: Vec<&str> = value.split('|').collect();
    if same_object {
        let [v1, v2] = values[..] else {
            return Err(Skip::Invalid(format!("'{kind}' needs two values separated by '|'")));
        };
        let right = if kind == "regkey|value" {
            format!("windows-registry-key:values[*].data = {}", literal(v2))
        } else {
            comparison(second, v2)?
        };
        return Ok(format!("[{} AND {right}]", comparison(first, v1)?));
    }
    // Anything else as the original: one observation per part.
    let kinds: Vec<&str> = kind.split('|').collect();
    if values.len() < kinds.len() {
        return Err(Skip::Invalid(format!("'{kind}' needs {} values separated by '|'", kinds.len())));
    }
    let parts = kinds
        .iter()
        .zip(&values)
        .map(|(k, v)| comparison(k, v).map(|c| format!("[{c}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join(" AND "))
}

/// The `/sightings/add` body of a STIX sighting (the original's fields:
/// the attribute uuid from `sighting_of_ref`, `type` 0 = seen, the
/// sighting's creation time as Unix seconds, `x_threatbus_source` as the
/// source). `None` when the sighting is not of an indicator.
pub fn sighting_body(sighting: &Map<String, Value>) -> Option<Value> {
    let uuid = sighting.get("sighting_of_ref")?.as_str()?.strip_prefix("indicator--")?;
    let created = sighting.get("created")?.as_str()?;
    let created = DateTime::parse_from_rfc3339(created).ok()?.timestamp();
    let mut body = Map::new();
    body.insert("id".into(), uuid.into());
    if let Some(src) = sighting.get("x_threatbus_source") {
        let src = match src {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        body.insert("source".into(), src.into());
    }
    body.insert("type".into(), "0".into());
    body.insert("timestamp".into(), created.to_string().into());
    Some(Value::Object(body))
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
