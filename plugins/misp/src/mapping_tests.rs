//! The original's mapping tests (`test_message_mapping.py`), ported, and
//! the fixes on top.

use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::*;
use crate::config::{Filter, OrgId};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

/// The notification of the original's tests.
fn valid_msg() -> Map<String, Value> {
    obj(json!({
        "Attribute": {
            "id": "1", "event_id": "1", "object_id": "0", "object_relation": null,
            "category": "Network activity", "type": "ip-src", "value1": "6.6.6.6", "value2": "",
            "to_ids": true, "uuid": "5f7b2284-bdd8-4ef4-b457-032ac0a82f02", "timestamp": "1601906335",
            "distribution": "5", "sharing_group_id": "0", "comment": "", "deleted": false,
            "disable_correlation": false, "first_seen": null, "last_seen": null, "value": "6.6.6.6",
            "Tag": [
                {"id": "3", "name": "baz", "colour": "#05ff00", "exportable": true},
                {"id": "1", "name": "foo", "colour": "#ff0000", "exportable": true}
            ],
            "Sighting": []
        },
        "Event": {
            "id": "1", "date": "2020-10-05", "info": "evil", "uuid": "5f7b2277-1ebc-4101-9152-032ac0a82f02",
            "published": false, "analysis": "0", "threat_level_id": "1", "org_id": "3", "orgc_id": "1",
            "distribution": "1", "sharing_group_id": "0",
            "Orgc": {"id": "1", "uuid": "5f7b21ea-52a4-49f0-87df-032ac0a82f02", "name": "ORGNAME"}
        },
        "action": "edit"
    }))
}

fn domain_ip_attribute() -> Map<String, Value> {
    obj(json!({
        "id": "1", "event_id": "1", "object_id": "0", "object_relation": null,
        "category": "Network activity", "type": "domain|ip", "value1": "example.com", "value2": "example.com",
        "to_ids": true, "uuid": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "timestamp": "1579104545",
        "distribution": "5", "sharing_group_id": "0", "comment": "", "deleted": false,
        "disable_correlation": false, "value": "example.com|example.com", "Sighting": [], "Tag": []
    }))
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn map(attr: &Map<String, Value>, action: &str) -> Result<Map<String, Value>, Skip> {
    attribute_to_indicator(attr, action, now()).map(|s| obj(serde_json::from_str(&s).unwrap()))
}

fn filter(orgs: &[&str], tags: &[&str], types: &[&str]) -> Filter {
    Filter {
        orgs: orgs.iter().map(|o| OrgId(o.to_string())).collect(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        types: types.iter().map(|t| t.to_string()).collect(),
    }
}

#[test]
fn invalid_attributes_and_actions_are_rejected() {
    let attr = domain_ip_attribute();
    for action in ["", "foo", "ADD", "publish"] {
        assert!(matches!(map(&attr, action), Err(Skip::Invalid(_))), "{action}");
    }
    assert!(matches!(map(&Map::new(), "add"), Err(Skip::Invalid(_))));
    for key in ["to_ids", "timestamp", "uuid", "type", "value"] {
        let mut a = attr.clone();
        a.remove(key);
        let e = map(&a, "add").unwrap_err();
        assert!(e.to_string().contains(key), "{key}: {e}");
    }
}

#[test]
fn compound_and_point_attributes_map_as_the_original() {
    let ind = map(&domain_ip_attribute(), "add").unwrap();
    assert_eq!(ind["type"], "indicator");
    assert_eq!(ind["id"], "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06");
    // 1579104545 is 2020-01-15T16:09:05Z, whatever the local time zone.
    assert_eq!(ind["created"], "2020-01-15T16:09:05.000Z");
    assert_eq!(ind["modified"], ind["created"]);
    assert_eq!(ind["valid_from"], "2026-01-02T03:04:05.000Z");
    assert_eq!(ind["pattern"], "[domain-name:value = 'example.com'] AND [ipv4-addr:value = 'example.com']");
    assert_eq!(ind["pattern_type"], "stix");
    let mut point = domain_ip_attribute();
    point.insert("type".into(), "domain".into());
    point.insert("value".into(), "example.com".into());
    let ind = map(&point, "add").unwrap();
    assert_eq!(ind["pattern"], "[domain-name:value = 'example.com']");
    assert!(ind.keys().all(|k| !k.starts_with("x_threatbus_")), "{ind:?}");
}

#[test]
fn edit_clearing_to_ids_is_a_removal_and_add_without_it_is_skipped() {
    let mut attr = domain_ip_attribute();
    attr.insert("to_ids".into(), false.into());
    assert_eq!(map(&attr, "edit").unwrap()["x_threatbus_update"], "REMOVE");
    assert!(matches!(map(&attr, "add"), Err(Skip::Quiet(_))));
}

#[test]
fn deletions_are_removals() {
    let attr = domain_ip_attribute();
    for action in ["delete", "soft-delete"] {
        assert_eq!(map(&attr, action).unwrap()["x_threatbus_update"], "REMOVE", "{action}");
    }
    let mut deleted = attr.clone();
    deleted.insert("deleted".into(), true.into());
    assert_eq!(map(&deleted, "edit").unwrap()["x_threatbus_update"], "REMOVE");
    let mut msg = Map::new();
    msg.insert("Attribute".into(), Value::Object(attr));
    msg.insert("action".into(), "delete".into());
    assert!(is_removal(&msg));
    // A hard delete has no Event: it still passes a filter on orgs.
    assert!(is_whitelisted(&msg, &[filter(&["7"], &[], &[])], true));
    assert!(!is_whitelisted(&msg, &[filter(&[], &[], &["url"])], true));
    assert!(!is_whitelisted(&msg, &[], false));
}

#[test]
fn tags_are_the_attributes_own() {
    let msg = valid_msg();
    let attr = msg["Attribute"].as_object().unwrap();
    let mut tags = tag_names(attr);
    tags.sort();
    assert_eq!(tags, ["baz", "foo"]);
    for bad in [json!({}), json!({"Tag": []}), json!({"Tag": [{}, null, {"name": 5}]})] {
        assert!(tag_names(bad.as_object().unwrap()).is_empty(), "{bad}");
    }
}

#[test]
fn invalid_messages_are_not_whitelisted() {
    let valid = valid_msg();
    for key in ["Event", "Attribute"] {
        let mut m = valid.clone();
        m.remove(key);
        assert!(!is_whitelisted(&m, &[], false), "without {key}");
    }
    let mut m = valid.clone();
    m["Event"].as_object_mut().unwrap().remove("orgc_id");
    assert!(!is_whitelisted(&m, &[], false));
    let mut m = valid;
    m["Attribute"].as_object_mut().unwrap().insert("type".into(), "".into());
    assert!(!is_whitelisted(&m, &[], false));
}

#[test]
fn whitelist_truth_table_of_the_original() {
    let msg = valid_msg();
    let yes: Vec<Vec<Filter>> = vec![
        vec![],
        vec![filter(&["1", "100"], &[], &[])],
        vec![filter(&[], &["foo", "ASDF"], &[])],
        vec![filter(&[], &[], &["domain", "ip-src"])],
        vec![filter(&["1"], &["foo"], &[])],
        vec![filter(&["1"], &[], &["ip-src"])],
        vec![filter(&[], &["foo"], &["ip-src"])],
        vec![filter(&["1"], &["foo"], &["ip-src"])],
        vec![filter(&["1"], &[], &[]), filter(&["5"], &[], &[])],
        vec![filter(&["1"], &[], &[]), filter(&[], &[], &["ASDF"])],
        vec![filter(&[], &["foo"], &[]), filter(&[], &[], &["ASDF"])],
        vec![filter(&[], &["foo"], &[]), filter(&[], &[], &["ip-src"])],
        // The original's `{"org": ["1"]}` (a typo, so no condition); our
        // config refuses the unknown key instead.
        vec![filter(&[], &["baz"], &[]), filter(&[], &[], &[])],
    ];
    let no: Vec<Vec<Filter>> = vec![
        vec![filter(&["100"], &[], &[])],
        vec![filter(&[], &["ASDF"], &[])],
        vec![filter(&[], &[], &["domain"])],
        vec![filter(&["1"], &["ASDF"], &[])],
        vec![filter(&[], &["ASDF"], &["ip-src"])],
        vec![filter(&["1"], &[], &["domain"])],
        vec![filter(&[], &["foo"], &["domain"])],
        vec![filter(&["100"], &[], &["src-ip"])],
        vec![filter(&["100"], &["foo"], &[])],
        vec![filter(&["100"], &[], &[]), filter(&["5"], &[], &[])],
        vec![filter(&["100"], &[], &[]), filter(&[], &[], &["ASDF"])],
        vec![filter(&[], &["ASDF"], &[]), filter(&[], &[], &["ASDF"])],
    ];
    for f in &yes {
        assert!(is_whitelisted(&msg, f, false), "{f:?}");
    }
    for f in &no {
        assert!(!is_whitelisted(&msg, f, false), "{f:?}");
    }
}

#[test]
fn organisation_ids_match_as_strings_or_numbers() {
    let mut msg = valid_msg();
    assert!(is_whitelisted(&msg, &[filter(&["001"], &[], &[])], false));
    msg["Event"].as_object_mut().unwrap().insert("orgc_id".into(), json!(1));
    assert!(is_whitelisted(&msg, &[filter(&["1"], &[], &[])], false));
    assert!(!is_whitelisted(&msg, &[filter(&["2"], &[], &[])], false));
}

#[test]
fn type_table_of_the_original() {
    let table: &[(&str, &str, Option<&str>)] = &[
        ("ip", "6.6.6.6", Some("[ipv4-addr:value = '6.6.6.6']")),
        ("ip-src", "6.6.6.6", Some("[ipv4-addr:value = '6.6.6.6']")),
        ("ip-dst", "6.6.6.6", Some("[ipv4-addr:value = '6.6.6.6']")),
        ("port", "80", None),
        ("hostname", "evil.com", Some("[domain-name:value = 'evil.com']")),
        ("domain", "evil.com", Some("[domain-name:value = 'evil.com']")),
        ("mac-address", "00:e0:f0:a0:a1:a2", Some("[mac-addr:value = '00:e0:f0:a0:a1:a2']")),
        ("mac-eui-64", "00:e0:f0:a0:a1:a2", Some("[mac-addr:value = '00:e0:f0:a0:a1:a2']")),
        ("email", "foo@bar.com", Some("[email-addr:value = 'foo@bar.com']")),
        ("email-dst", "foo@bar.com", Some("[email-addr:value = 'foo@bar.com']")),
        ("email-src", "foo@bar.com", Some("[email-addr:value = 'foo@bar.com']")),
        ("eppn", "foo@bar.com", Some("[email-addr:value = 'foo@bar.com']")),
        ("url", "https://example.com/foo/bar", Some("[url:value = 'https://example.com/foo/bar']")),
        ("uri", "https://example.com/foo/bar", Some("[url:value = 'https://example.com/foo/bar']")),
        ("user-agent", "x", None),
        ("http-method", "GET", None),
        ("AS", "123456", Some("[autonomous-system:number = 123456]")),
        ("AS", "AS123", None),
        ("snort", "x", None),
        ("pattern-in-file", "x", None),
        ("filename-pattern", "x", None),
        ("stix2-pattern", "ipv4-addr:value = '6.6.6.6'", Some("[ipv4-addr:value = '6.6.6.6']")),
        ("stix2-pattern", "[ipv4-addr:value = '6.6.6.6']", Some("[ipv4-addr:value = '6.6.6.6']")),
        ("pattern-in-traffic", "x", None),
        ("attachment", "x", None),
        ("comment", "x", None),
        ("text", "x", None),
        (
            "x509-fingerprint-md5",
            "3d8c1104c6c2482eb4afc4458109a84e",
            Some("[x509-certificate:hashes.MD5 = '3d8c1104c6c2482eb4afc4458109a84e']"),
        ),
        ("x509-fingerprint-md5", "fooo", None),
        (
            "x509-fingerprint-sha1",
            "6e6187d58483457f86eae49315a0a72d7543459a",
            Some("[x509-certificate:hashes.'SHA-1' = '6e6187d58483457f86eae49315a0a72d7543459a']"),
        ),
        ("x509-fingerprint-sha1", "fooo", None),
        (
            "x509-fingerprint-sha256",
            "6aab1f6a6f58fb33fbf15050d7aae38a870e477f42a1707ab3aa243b512cdb6b",
            Some("[x509-certificate:hashes.'SHA-256' = '6aab1f6a6f58fb33fbf15050d7aae38a870e477f42a1707ab3aa243b512cdb6b']"),
        ),
        ("x509-fingerprint-sha256", "fooo", None),
        ("ja3-fingerprint-md5", "x", None),
        ("jarm-fingerprint", "x", None),
        ("hassh-md5", "x", None),
        ("hasshserver-md5", "x", None),
        ("other", "x", None),
        ("hex", "x", None),
        ("cookie", "x", None),
        ("bro", "x", None),
        ("zeek", "x", None),
        ("community-id", "x", None),
        ("email-subject", "x", None),
        ("favicon-mmh3", "x", None),
        ("ip-dst|port", "1.2.3.4|80", None),
        ("domain|ip", "evil.com", None),
    ];
    for (kind, value, want) in table {
        assert_eq!(pattern_of(kind, value).ok().as_deref(), *want, "{kind} {value}");
    }
}

#[test]
fn fixed_types_map_to_valid_patterns() {
    let md5 = "3d8c1104c6c2482eb4afc4458109a84e";
    let sha256 = "6aab1f6a6f58fb33fbf15050d7aae38a870e477f42a1707ab3aa243b512cdb6b";
    let table: &[(&str, String, Option<String>)] = &[
        ("md5", md5.into(), Some(format!("[file:hashes.MD5 = '{md5}']"))),
        ("md5", "xyz".into(), None),
        (
            "sha1",
            "6e6187d58483457f86eae49315a0a72d7543459a".into(),
            Some("[file:hashes.'SHA-1' = '6e6187d58483457f86eae49315a0a72d7543459a']".into()),
        ),
        ("sha256", sha256.into(), Some(format!("[file:hashes.'SHA-256' = '{sha256}']"))),
        ("sha512", "ab".repeat(64), Some(format!("[file:hashes.'SHA-512' = '{}']", "ab".repeat(64)))),
        ("ssdeep", "3:a:b".into(), Some("[file:hashes.SSDEEP = '3:a:b']".into())),
        ("filename", "evil.exe".into(), Some("[file:name = 'evil.exe']".into())),
        (
            "filename|md5",
            format!("evil.exe|{md5}"),
            Some(format!("[file:name = 'evil.exe' AND file:hashes.MD5 = '{md5}']")),
        ),
        ("filename|sha256", "evil.exe|nothex".into(), None),
        (
            "regkey",
            "HKLM\\Software\\Evil".into(),
            Some("[windows-registry-key:key = 'HKLM\\\\Software\\\\Evil']".into()),
        ),
        (
            "regkey|value",
            "HKLM\\Run|c:\\evil.exe".into(),
            Some(
                "[windows-registry-key:key = 'HKLM\\\\Run' AND windows-registry-key:values[*].data = 'c:\\\\evil.exe']"
                    .into(),
            ),
        ),
        ("ip-dst", "2001:db8::1".into(), Some("[ipv6-addr:value = '2001:db8::1']".into())),
        ("domain", "it's.example".into(), Some("[domain-name:value = 'it\\'s.example']".into())),
    ];
    for (kind, value, want) in table {
        assert_eq!(pattern_of(kind, value).ok(), *want, "{kind} {value}");
    }
}

#[test]
fn timestamps_are_utc_and_numbers_are_accepted() {
    let mut attr = domain_ip_attribute();
    attr.insert("timestamp".into(), json!(1614599635));
    let ind = map(&attr, "add").unwrap();
    assert_eq!(ind["created"], "2021-03-01T11:53:55.000Z");
    attr.insert("timestamp".into(), "yesterday".into());
    assert!(matches!(map(&attr, "add"), Err(Skip::Invalid(_))));
}

#[test]
fn sightings_become_the_originals_body() {
    let s = obj(json!({
        "type": "sighting", "id": "sighting--4cb59bc5-1b33-4a50-a4a6-ea0bf9a3ae14",
        "created": "2021-05-03T10:00:01.123Z", "sighting_of_ref": "indicator--5e1f2787-fcfc-4718-a58a-00b4c0a82f06",
        "x_threatbus_source": "zeek"
    }));
    assert_eq!(
        sighting_body(&s).unwrap(),
        json!({"id": "5e1f2787-fcfc-4718-a58a-00b4c0a82f06", "source": "zeek", "type": "0", "timestamp": "1620036001"})
    );
    let mut no_source = s.clone();
    no_source.remove("x_threatbus_source");
    assert!(sighting_body(&no_source).unwrap().get("source").is_none());
    let mut other = s;
    other.insert("sighting_of_ref".into(), "malware--5e1f2787-fcfc-4718-a58a-00b4c0a82f06".into());
    assert!(sighting_body(&other).is_none());
}
