//! What the plugin asks Tenzir, as TQL pipelines: lookup-table updates
//! and removals (values fed as NDJSON on stdin, typed in the pipeline), the
//! live lookup, and one historical search per indicator. Values embedded in
//! a pipeline are either parsed IP addresses or JSON-quoted strings, so no
//! indicator can change a pipeline's meaning.

use std::net::IpAddr;

use serde_json::Value;
use threatbus_stix::ioc::{is_point_equality_ioc, split_object_path_and_value};

use crate::config::Fields;

/// How a value is typed in Tenzir (a key stored as the string "10.0.0.1"
/// does not match an IP-typed field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An IP address (`ipv4-addr`, `ipv6-addr`).
    Ip,
    /// A subnet (`ipv4-addr`/`ipv6-addr` with a prefix length).
    Subnet,
    /// A domain name.
    Domain,
    /// A URL.
    Url,
    /// A file hash.
    Hash,
}

impl Kind {
    fn wire(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Subnet => "subnet",
            _ => "string",
        }
    }
}

/// A point indicator the plugin can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ioc {
    /// The STIX id (`indicator--…`).
    pub id: String,
    /// The value, as in the pattern.
    pub value: String,
    /// Its type.
    pub kind: Kind,
}

/// The IoC of an indicator, if it is a point indicator of a supported
/// object path; `Err` says why not.
pub fn ioc_of(id: &str, pattern: &str) -> Result<Ioc, String> {
    if !is_point_equality_ioc(pattern) {
        return Err("not a point indicator".into());
    }
    let (path, value) = split_object_path_and_value(pattern).ok_or("not a point indicator")?;
    let kind = match path.as_str() {
        "ipv4-addr:value" | "ipv6-addr:value" => {
            if value.parse::<IpAddr>().is_ok() {
                Kind::Ip
            } else if is_subnet(&value) {
                Kind::Subnet
            } else {
                return Err(format!("'{value}' is not an IP address"));
            }
        }
        "domain-name:value" => Kind::Domain,
        "url:value" => Kind::Url,
        p if p.starts_with("file:hashes.") => Kind::Hash,
        p => return Err(format!("object path {p} is not supported")),
    };
    if value.is_empty() {
        return Err("empty value".into());
    }
    Ok(Ioc { id: id.to_string(), value, kind })
}

fn is_subnet(s: &str) -> bool {
    let Some((addr, bits)) = s.split_once('/') else { return false };
    let Ok(addr) = addr.parse::<IpAddr>() else { return false };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    bits.parse::<u32>().is_ok_and(|b| b <= max) && bits.bytes().all(|c| c.is_ascii_digit())
}

/// One NDJSON line of an update or removal batch.
pub fn update_line(ioc: &Ioc) -> String {
    serde_json::json!({"value": ioc.value, "kind": ioc.kind.wire(), "id": ioc.id}).to_string()
}

/// A TQL string literal (JSON quoting is valid TQL).
fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

const TYPE_KEY: &str = r#"key = ip(value) if kind == "ip" else (subnet(value) if kind == "subnet" else value)"#;

/// Adds (or replaces) the batch read from stdin in the lookup table; the
/// context of each key is `{id: <indicator id>}`.
pub fn update_pipeline(table: &str) -> String {
    format!("load_stdin\nread_ndjson\n{TYPE_KEY}\ncontext_update {}, key=key, value={{id: id}}", quote(table))
}

/// Removes the batch read from stdin from the lookup table.
pub fn erase_pipeline(table: &str) -> String {
    format!("load_stdin\nread_ndjson\n{TYPE_KEY}\ncontext_erase {}, key=key", quote(table))
}

/// Creates the lookup table (fails harmlessly if it exists).
pub fn create_pipeline(table: &str) -> String {
    format!("context_create_lookup_table {}", quote(table))
}

/// The field the live lookup writes its matches into.
pub const MATCH_FIELD: &str = "threatbus_match";

/// Every event the node imports from now on, looked up in the table by
/// every configured field; events with a hit, as NDJSON.
pub fn live_pipeline(table: &str, fields: &Fields) -> String {
    format!(
        "context_lookup {}, key=[{}], live=true, retro=false, into={MATCH_FIELD}\nwrite_ndjson",
        quote(table),
        fields.all().join(", ")
    )
}

/// Historical events with the indicator's value in a field of its kind, at
/// most `max` (0: all), as NDJSON. `None` when no field is configured for
/// the kind.
pub fn retro_pipeline(ioc: &Ioc, fields: &Fields, max: u64) -> Option<String> {
    let names = match ioc.kind {
        Kind::Ip | Kind::Subnet => &fields.ip,
        Kind::Domain => &fields.domain,
        Kind::Url => &fields.url,
        Kind::Hash => &fields.hash,
    };
    if names.is_empty() {
        return None;
    }
    let (op, literal) = match ioc.kind {
        // Parsed above, so the literal is an address or subnet and nothing else.
        Kind::Ip => ("==", ioc.value.parse::<IpAddr>().ok()?.to_string()),
        Kind::Subnet => ("in", ioc.value.clone()),
        _ => ("==", quote(&ioc.value)),
    };
    let predicate: Vec<String> = names.iter().map(|f| format!("{f}? {op} {literal}")).collect();
    let head = if max > 0 { format!("\nhead {max}") } else { String::new() };
    Some(format!("export\nwhere {}{head}\nwrite_ndjson", predicate.join(" or ")))
}

/// The matches of a live lookup result: (value, indicator id) pairs found
/// anywhere under the match field.
pub fn live_matches(event: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        let Some(m) = v.as_object() else { return };
        if let (Some(value), Some(id)) =
            (m.get("value"), m.get("context").and_then(|c| c.get("id")).and_then(Value::as_str))
        {
            let value = value.as_str().map_or_else(|| value.to_string(), str::to_string);
            out.push((value, id.to_string()));
            return;
        }
        for child in m.values() {
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    if let Some(m) = event.get(MATCH_FIELD) {
        walk(m, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn point_indicators_of_supported_paths_are_iocs() {
        let ioc = |p: &str| ioc_of("indicator--1", p).map(|i| (i.value, i.kind));
        assert_eq!(ioc("[ipv4-addr:value = '6.6.6.6']"), Ok(("6.6.6.6".into(), Kind::Ip)));
        assert_eq!(ioc("[ipv6-addr:value = '::1']"), Ok(("::1".into(), Kind::Ip)));
        assert_eq!(ioc("[ipv4-addr:value = '10.0.0.0/8']"), Ok(("10.0.0.0/8".into(), Kind::Subnet)));
        assert_eq!(ioc("[domain-name:value = 'evil.com']"), Ok(("evil.com".into(), Kind::Domain)));
        assert_eq!(ioc("[url:value = 'http://evil.com/x']"), Ok(("http://evil.com/x".into(), Kind::Url)));
        assert_eq!(ioc("[file:hashes.MD5 = 'ab']"), Ok(("ab".into(), Kind::Hash)));
        assert!(ioc("[ipv4-addr:value = 'evil']").is_err());
        assert!(ioc("[mac-addr:value = '00:11:22:33:44:55']").is_err());
        assert!(ioc("[ipv4-addr:value = '1.1.1.1'] AND [ipv4-addr:value = '2.2.2.2']").is_err());
    }

    #[test]
    fn values_cannot_escape_their_literal() {
        let fields = Fields::default();
        let evil = Ioc { id: "indicator--1".into(), value: "x\" or true or \"".into(), kind: Kind::Domain };
        let p = retro_pipeline(&evil, &fields, 5).unwrap();
        assert!(p.contains(r#"dns.rrname? == "x\" or true or \"""#), "{p}");
        assert!(p.ends_with("head 5\nwrite_ndjson"));
        let ip = Ioc { id: "indicator--1".into(), value: "6.6.6.6".into(), kind: Kind::Ip };
        assert_eq!(
            retro_pipeline(&ip, &fields, 0).unwrap(),
            "export\nwhere src_ip? == 6.6.6.6 or dest_ip? == 6.6.6.6 or id.orig_h? == 6.6.6.6 or id.resp_h? == 6.6.6.6\nwrite_ndjson"
        );
        assert_eq!(update_line(&ip), r#"{"id":"indicator--1","kind":"ip","value":"6.6.6.6"}"#);
    }

    #[test]
    fn live_results_name_their_indicators() {
        let event = json!({"ts": "2021-02-01T00:00:00Z", "id": {"orig_h": "6.6.6.6"},
            "threatbus_match": {"id": {"orig_h": {"value": "6.6.6.6", "mode": "lookup.live", "context": {"id": "indicator--1"}}},
                "dns": {"rrname": {"value": "evil.com", "mode": "lookup.live", "context": {"id": "indicator--2"}}}}});
        let mut m = live_matches(&event);
        m.sort();
        assert_eq!(m, vec![("6.6.6.6".into(), "indicator--1".into()), ("evil.com".into(), "indicator--2".into())]);
        assert!(live_matches(&json!({"a": 1})).is_empty());
    }
}
