//! STIX-2.1 indicators to CIF v3 indicators, as the original's
//! `map_to_cif` with `csirtg_indicator` did: only indicators without
//! `x_threatbus_update` (CIF takes additions only), only point patterns
//! (the original's `is_point_equality_ioc` test, quirks included), only the
//! object paths below; the value typed and normalised as
//! `csirtg_indicator` does (see [`crate::csirtg`]), `lasttime` the STIX
//! `created` time with microseconds.
//!
//! A `file:hashes.SSDEEP` indicator passes the path check, but like the
//! original it is not submitted: the library cannot type an ssdeep hash.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use threatbus_stix::ioc::{is_point_equality_ioc, split_object_path_and_value};

use crate::csirtg::type_value;

/// Object paths whose values are submitted.
pub const SUPPORTED_PATHS: &[&str] = &[
    "ipv4-addr:value",
    "ipv6-addr:value",
    "domain-name:value",
    "email-addr:value",
    "url:value",
    "file:hashes.MD5",
    "file:hashes.'SHA-1'",
    "file:hashes.'SHA-256'",
    "file:hashes.SSDEEP",
];

/// The fields every submitted indicator carries (from the config).
#[derive(Debug, Clone)]
pub struct Fields {
    /// Tags, as configured.
    pub tags: Vec<String>,
    /// TLP level (lower-cased on output, as the library does).
    pub tlp: String,
    /// Group (lower-cased on output).
    pub group: String,
    /// Confidence; 0 means 5, as in the original.
    pub confidence: f64,
}

/// Why an indicator is not submitted; all are debug lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

/// The CIF indicator JSON of a (host-validated) STIX indicator, in the
/// library's field order; `uuid` is a fresh random id, as the library
/// makes one per indicator.
pub fn to_cif(indicator: &Map<String, Value>, fields: &Fields) -> Result<String, Skip> {
    let id = indicator.get("id").and_then(Value::as_str).unwrap_or("?");
    if indicator.contains_key("x_threatbus_update") {
        return Err(Skip(format!("{id}: CIF v3 takes additions only, not updates or removals")));
    }
    let pattern = indicator.get("pattern").and_then(Value::as_str).unwrap_or_default();
    if !is_point_equality_ioc(pattern) {
        return Err(Skip(format!("{id}: not a point indicator")));
    }
    let Some((path, value)) = split_object_path_and_value(pattern) else {
        return Err(Skip(format!("{id}: not a point indicator")));
    };
    if !SUPPORTED_PATHS.contains(&path.as_str()) {
        return Err(Skip(format!("{id}: object path {path} is not supported by CIF")));
    }
    let typed = type_value(&value).map_err(|e| Skip(format!("{id}: invalid CIF indicator: {}", e.0)))?;
    let created = indicator
        .get("created")
        .and_then(Value::as_str)
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .ok_or_else(|| Skip(format!("{id}: no created time")))?
        .with_timezone(&Utc);
    let confidence = if fields.confidence == 0.0 { 5.0 } else { fields.confidence };
    let s = |v: &str| Value::String(v.to_string()).to_string();
    let mut out = format!("{{\"indicator\": {}, \"itype\": {}", s(&typed.indicator), s(typed.itype));
    let tlp = fields.tlp.to_lowercase();
    if !tlp.is_empty() {
        out.push_str(&format!(", \"tlp\": {}", s(&tlp)));
    }
    let group = fields.group.to_lowercase();
    if !group.is_empty() {
        out.push_str(&format!(", \"group\": {}", s(&group)));
    }
    out.push_str(", \"count\": 1");
    if !fields.tags.is_empty() {
        out.push_str(&format!(", \"tags\": {}", Value::from(fields.tags.clone())));
    }
    out.push_str(&format!(", \"confidence\": {}", Value::from(confidence)));
    out.push_str(&format!(", \"uuid\": {}", s(&uuid::Uuid::new_v4().to_string())));
    out.push_str(&format!(", \"lasttime\": {}}}", s(&created.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields() -> Fields {
        Fields {
            tags: vec!["test".into(), "Malicious".into()],
            tlp: "AMBER".into(),
            group: "everyone".into(),
            confidence: 7.5,
        }
    }

    fn indicator(pattern: &str) -> Map<String, Value> {
        match json!({"type": "indicator", "id": "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06",
            "created": "2021-03-22T10:00:00.123Z", "pattern": pattern, "pattern_type": "stix"})
        {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn cif(pattern: &str) -> Option<Value> {
        to_cif(&indicator(pattern), &fields()).ok().map(|s| serde_json::from_str(&s).unwrap())
    }

    #[test]
    fn point_indicators_become_the_librarys_json() {
        let v = cif("[domain-name:value = 'EVIL.com']").unwrap();
        let uuid = v["uuid"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 4);
        assert_eq!(
            v,
            json!({"indicator": "evil.com", "itype": "fqdn", "tlp": "amber", "group": "everyone", "count": 1,
                "tags": ["test", "Malicious"], "confidence": 7.5, "uuid": uuid, "lasttime": "2021-03-22T10:00:00.123000Z"})
        );
        let s = to_cif(&indicator("[ipv4-addr:value = '6.6.6.6']"), &fields()).unwrap();
        assert!(s.starts_with(r#"{"indicator": "6.6.6.6", "itype": "ipv4", "tlp": "amber", "group": "everyone", "count": 1, "tags": ["test","Malicious"], "confidence": 7.5, "uuid": ""#), "{s}");
    }

    #[test]
    fn what_the_original_skips_is_skipped() {
        for p in [
            "[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '1.2.3.5']",
            "[ipv4-addr:value = '1.2.3.4'] AND [ipv4-addr:value = '1.2.3.5']",
            "[x509-certificate:hashes.MD5 = 'ab000000000000000000000000000000']",
            "[mac-addr:value = '00:11:22:33:44:55']",
            "[file:hashes.SSDEEP = '3:a:b']",
            "[url:value = 'evil.com/x']",
            "[domain-name:value = 'localhost']",
        ] {
            assert!(cif(p).is_none(), "{p}");
        }
        let mut removal = indicator("[domain-name:value = 'evil.com']");
        removal.insert("x_threatbus_update".into(), "REMOVE".into());
        assert!(to_cif(&removal, &fields()).is_err());
    }

    #[test]
    fn empty_fields_are_left_out_and_zero_confidence_is_five() {
        let f = Fields { tags: vec![], tlp: String::new(), group: String::new(), confidence: 0.0 };
        let v: Value =
            serde_json::from_str(&to_cif(&indicator("[url:value = 'http://a.example/x/']"), &f).unwrap()).unwrap();
        assert_eq!(v["indicator"], "http://a.example/x");
        assert_eq!(v["confidence"], 5.0);
        for k in ["tags", "tlp", "group"] {
            assert!(v.get(k).is_none(), "{k}: {v}");
        }
    }
}
