//! Tests of the data model: ports of Python `threatbus/test_data.py`, the
//! wire examples of the Python bus's documentation, and validation behaviour checked against
//! python `stix2` 3.0.1 / `stix2-patterns` 1.3.0.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;

const INDICATOR_ID: &str = "indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc";
const SIGHTING_ID: &str = "sighting--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc";
const PATTERN: &str = "[ipv4-addr:value = '6.6.6.6']";
/// `format_datetime(created)` of the Python test's `created`.
const CREATED: &str = "2021-05-03T08:00:01.123456Z";
const SNAPSHOT_ID: &str = "SNAPSHOT_UUID";

fn sighting_context() -> Value {
    json!({
        "ts": "2017-03-03T23:56:09.652643840",
        "uid": "CMeLkt11aTqwgN4FI9",
        "id.orig_h": "172.31.130.19",
        "id.orig_p": 43872,
        "id.resp_h": "172.31.129.17",
        "id.resp_p": 20004,
        "proto": "tcp",
        "service": null,
        "duration": 0.025249,
        "orig_bytes": 311,
        "resp_bytes": 999,
        "conn_state": "SF",
        "local_orig": null,
        "local_resp": null,
        "missed_bytes": 0,
        "history": "ShADadFf",
        "orig_pkts": 9,
        "orig_ip_bytes": 787,
        "resp_pkts": 7,
        "resp_ip_bytes": 1371,
        "tunnel_parents": [],
        "alert": {
            "signature": "VAST-RETRO Generic IoC match for: 172.31.129.17",
            "category": "Potentially Bad Traffic",
            "action": "allowed",
        },
        "event_type": "alert",
        "_extra": {"vast-ioc": "172.31.129.17"},
    })
}

/// The Python test's `Indicator(id=..., pattern=..., pattern_type="stix2",
/// created=..., valid_from=..., modified=...)`.
fn indicator() -> Indicator {
    Indicator::from_value(json!({
        "type": "indicator",
        "id": INDICATOR_ID,
        "pattern": PATTERN,
        "pattern_type": "stix2",
        "created": CREATED,
        "valid_from": CREATED,
        "modified": CREATED,
    }))
    .unwrap()
}

/// The Python test's sighting with context, embedded indicator and source.
fn sighting() -> Sighting {
    let mut s = Sighting::from_value(json!({
        "type": "sighting",
        "id": SIGHTING_ID,
        "created": CREATED,
        "modified": CREATED,
        "sighting_of_ref": INDICATOR_ID,
    }))
    .unwrap();
    s.set_custom(X_THREATBUS_SIGHTING_CONTEXT, sighting_context());
    s.set_custom(X_THREATBUS_INDICATOR, indicator().to_value());
    s.set_custom(X_THREATBUS_SOURCE, json!("VAST"));
    s
}

fn snapshot_request() -> SnapshotRequest {
    SnapshotRequest {
        snapshot_type: MessageType::Sighting,
        snapshot_id: SNAPSHOT_ID.to_string(),
        snapshot: Duration::from_secs(((42 * 24 + 23) * 60 + 13) * 60 + 37),
    }
}

fn envelope_indicator() -> SnapshotEnvelope {
    SnapshotEnvelope {
        snapshot_type: MessageType::Indicator,
        snapshot_id: SNAPSHOT_ID.to_string(),
        body: indicator().into(),
    }
}

fn envelope_sighting() -> SnapshotEnvelope {
    SnapshotEnvelope {
        snapshot_type: MessageType::Sighting,
        snapshot_id: SNAPSHOT_ID.to_string(),
        body: sighting().into(),
    }
}

// ---------------------------------------------------------------------------
// threatbus/test_data.py
// ---------------------------------------------------------------------------

#[test]
fn valid_snapshot_request_encoding() {
    let encoded = snapshot_request().to_json();
    let py_dict: Value = serde_json::from_str(&encoded).unwrap();
    assert_eq!(py_dict["snapshot_type"], 2);
    assert_eq!(py_dict["snapshot_id"], SNAPSHOT_ID);
    assert_eq!(py_dict["snapshot"], 3712417);
    assert_eq!(py_dict["type"], "snapshotrequest");
    // byte-exact Python json.dumps output
    assert_eq!(
        encoded,
        r#"{"type": "snapshotrequest", "snapshot_type": 2, "snapshot_id": "SNAPSHOT_UUID", "snapshot": 3712417}"#
    );
}

#[test]
fn valid_snapshot_request_decoding() {
    // `snapshot` is `timedelta.total_seconds()`, a float, in the Python test.
    let encoded = r#"{
            "type": "snapshotrequest",
            "snapshot_type": 2,
            "snapshot_id": "SNAPSHOT_UUID",
            "snapshot": 3712417.0
        }"#;
    assert_eq!(SnapshotRequest::from_json(encoded).unwrap(), snapshot_request());
    let int_encoded =
        r#"{"type": "snapshotrequest", "snapshot_type": 2, "snapshot_id": "SNAPSHOT_UUID", "snapshot": 3712417}"#;
    assert_eq!(SnapshotRequest::from_json(int_encoded).unwrap(), snapshot_request());
}

#[test]
fn snapshot_request_encoding_roundtrip() {
    let r = snapshot_request();
    assert_eq!(SnapshotRequest::from_json(&r.to_json()).unwrap(), r);
    let r = SnapshotRequest {
        snapshot_type: MessageType::Indicator,
        snapshot_id: "ünïcode \"id\"".to_string(),
        snapshot: Duration::ZERO,
    };
    let json = r.to_json();
    assert_eq!(
        json,
        r#"{"type": "snapshotrequest", "snapshot_type": 1, "snapshot_id": "\u00fcn\u00efcode \"id\"", "snapshot": 0}"#
    );
    assert_eq!(SnapshotRequest::from_json(&json).unwrap(), r);
}

#[test]
fn snapshot_request_truncates_and_accepts_fractions() {
    let r = SnapshotRequest { snapshot: Duration::from_millis(1999), ..snapshot_request() };
    assert!(r.to_json().ends_with(r#""snapshot": 1}"#));
    let d = SnapshotRequest::from_json(
        r#"{"type": "snapshotrequest", "snapshot_type": 1, "snapshot_id": "x", "snapshot": 1.5}"#,
    )
    .unwrap();
    assert_eq!(d.snapshot, Duration::from_millis(1500));
}

#[test]
fn invalid_snapshot_requests() {
    for (json, needle) in [
        (r#"{"snapshot_type": 2, "snapshot_id": "x", "snapshot": 1}"#, "missing required property 'type'"),
        (r#"{"type": "snapshotenvelope", "snapshot_type": 2, "snapshot_id": "x", "snapshot": 1}"#, "expected 'type'"),
        (
            r#"{"type": "snapshotrequest", "snapshot_id": "x", "snapshot": 1}"#,
            "missing required property 'snapshot_type'",
        ),
        (
            r#"{"type": "snapshotrequest", "snapshot_type": 2, "snapshot": 1}"#,
            "missing required property 'snapshot_id'",
        ),
        (
            r#"{"type": "snapshotrequest", "snapshot_type": 2, "snapshot_id": "x"}"#,
            "missing required property 'snapshot'",
        ),
        (r#"{"type": "snapshotrequest", "snapshot_type": 3, "snapshot_id": "x", "snapshot": 1}"#, "'snapshot_type'"),
        (r#"{"type": "snapshotrequest", "snapshot_type": "2", "snapshot_id": "x", "snapshot": 1}"#, "'snapshot_type'"),
        (r#"{"type": "snapshotrequest", "snapshot_type": 2, "snapshot_id": 5, "snapshot": 1}"#, "'snapshot_id'"),
        (r#"{"type": "snapshotrequest", "snapshot_type": 2, "snapshot_id": "x", "snapshot": -1}"#, "'snapshot'"),
        (r#"{"type": "snapshotrequest", "snapshot_type": 2, "snapshot_id": "x", "snapshot": "FOO"}"#, "'snapshot'"),
        (r#"[1, 2]"#, "expected a JSON object"),
        (r#"{"type": "#, "invalid JSON"),
    ] {
        let e = SnapshotRequest::from_json(json).expect_err(json);
        assert!(e.to_string().contains(needle), "{json}: {e}");
    }
}

#[test]
fn valid_snapshot_envelope_encoding() {
    let encoded = envelope_indicator().to_json();
    let py_dict: Value = serde_json::from_str(&encoded).unwrap();
    assert_eq!(py_dict["snapshot_type"], 1);
    assert_eq!(py_dict["snapshot_id"], SNAPSHOT_ID);
    assert_eq!(py_dict["body"]["created"], CREATED);
    assert_eq!(py_dict["body"]["id"], INDICATOR_ID);
    assert_eq!(py_dict["body"]["pattern"], PATTERN);
    assert_eq!(py_dict["body"]["pattern_type"], "stix2");
    assert_eq!(py_dict["type"], "snapshotenvelope");

    let encoded = envelope_sighting().to_json();
    let py_dict: Value = serde_json::from_str(&encoded).unwrap();
    assert_eq!(py_dict["snapshot_type"], 2);
    assert_eq!(py_dict["snapshot_id"], SNAPSHOT_ID);
    assert_eq!(py_dict["body"]["created"], CREATED);
    assert_eq!(py_dict["body"]["sighting_of_ref"], INDICATOR_ID);
    assert_eq!(py_dict["body"][X_THREATBUS_SIGHTING_CONTEXT], sighting_context());
    assert_eq!(py_dict["type"], "snapshotenvelope");
}

/// Byte-exact output of python `stix2` 3.0.1 + `json.dumps` for the same
/// objects (with the context keys pre-sorted, see `Stix2Object::to_json`).
#[test]
fn snapshot_envelope_encoding_is_byte_exact() {
    assert_eq!(
        envelope_indicator().to_json(),
        r#"{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "SNAPSHOT_UUID", "body": {"type": "indicator", "spec_version": "2.1", "id": "indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc", "created": "2021-05-03T08:00:01.123456Z", "modified": "2021-05-03T08:00:01.123456Z", "pattern": "[ipv4-addr:value = '6.6.6.6']", "pattern_type": "stix2", "valid_from": "2021-05-03T08:00:01.123456Z"}}"#
    );
    assert_eq!(
        envelope_sighting().to_json(),
        r#"{"type": "snapshotenvelope", "snapshot_type": 2, "snapshot_id": "SNAPSHOT_UUID", "body": {"type": "sighting", "spec_version": "2.1", "id": "sighting--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc", "created": "2021-05-03T08:00:01.123456Z", "modified": "2021-05-03T08:00:01.123456Z", "sighting_of_ref": "indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc", "x_threatbus_indicator": {"type": "indicator", "spec_version": "2.1", "id": "indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc", "created": "2021-05-03T08:00:01.123456Z", "modified": "2021-05-03T08:00:01.123456Z", "pattern": "[ipv4-addr:value = '6.6.6.6']", "pattern_type": "stix2", "valid_from": "2021-05-03T08:00:01.123456Z"}, "x_threatbus_sighting_context": {"_extra": {"vast-ioc": "172.31.129.17"}, "alert": {"action": "allowed", "category": "Potentially Bad Traffic", "signature": "VAST-RETRO Generic IoC match for: 172.31.129.17"}, "conn_state": "SF", "duration": 0.025249, "event_type": "alert", "history": "ShADadFf", "id.orig_h": "172.31.130.19", "id.orig_p": 43872, "id.resp_h": "172.31.129.17", "id.resp_p": 20004, "local_orig": null, "local_resp": null, "missed_bytes": 0, "orig_bytes": 311, "orig_ip_bytes": 787, "orig_pkts": 9, "proto": "tcp", "resp_bytes": 999, "resp_ip_bytes": 1371, "resp_pkts": 7, "service": null, "ts": "2017-03-03T23:56:09.652643840", "tunnel_parents": [], "uid": "CMeLkt11aTqwgN4FI9"}, "x_threatbus_source": "VAST"}}"#
    );
}

#[test]
fn valid_snapshot_envelope_decoding() {
    let encoded_envelope_indicator = format!(
        r#"{{
            "type": "snapshotenvelope",
            "snapshot_type": 1,
            "snapshot_id": "{SNAPSHOT_ID}",
            "body": {{
                "id": "{INDICATOR_ID}",
                "pattern": "{PATTERN}",
                "pattern_type": "stix2",
                "created": "{CREATED}",
                "type": "indicator",
                "spec_version": "2.1",
                "modified": "{CREATED}",
                "valid_from": "{CREATED}"
            }}
        }}"#
    );
    let read_back = SnapshotEnvelope::from_json(&encoded_envelope_indicator).unwrap();
    assert_eq!(read_back, envelope_indicator());

    let encoded_envelope_sighting = format!(
        r#"{{
            "type": "snapshotenvelope",
            "snapshot_type": 2,
            "snapshot_id": "{SNAPSHOT_ID}",
            "body": {{
                "created": "{CREATED}",
                "modified": "{CREATED}",
                "sighting_of_ref": "{INDICATOR_ID}",
                "type": "sighting",
                "spec_version": "2.1",
                "id": "{SIGHTING_ID}",
                "{X_THREATBUS_SIGHTING_CONTEXT}": {},
                "{X_THREATBUS_INDICATOR}": {},
                "{X_THREATBUS_SOURCE}": "VAST"
            }}
        }}"#,
        pyjson::to_string(&sighting_context()),
        indicator().to_json(),
    );
    let read_back = SnapshotEnvelope::from_json(&encoded_envelope_sighting).unwrap();
    assert_eq!(read_back, envelope_sighting());
    let Stix2Object::Sighting(s) = &read_back.body else { panic!("expected a sighting body") };
    assert_eq!(s.get(X_THREATBUS_SOURCE), Some(&json!("VAST")));
    assert_eq!(s.get(X_THREATBUS_INDICATOR), Some(&indicator().to_value()));
    assert_eq!(s.get(X_THREATBUS_SIGHTING_CONTEXT), Some(&sighting_context()));
}

#[test]
fn snapshot_envelope_encoding_roundtrip() {
    for env in [envelope_indicator(), envelope_sighting()] {
        let encoded = env.to_json();
        let read_back = SnapshotEnvelope::from_json(&encoded).unwrap();
        assert_eq!(read_back, env);
        assert_eq!(read_back.to_json(), encoded);
    }
}

#[test]
fn invalid_snapshot_envelopes() {
    let body = indicator().to_json();
    for (json, needle) in [
        (format!(r#"{{"snapshot_type": 1, "snapshot_id": "x", "body": {body}}}"#), "missing required property 'type'"),
        (format!(r#"{{"type": "snapshotenvelope", "snapshot_id": "x", "body": {body}}}"#), "'snapshot_type'"),
        (format!(r#"{{"type": "snapshotenvelope", "snapshot_type": 1, "body": {body}}}"#), "'snapshot_id'"),
        (r#"{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "x"}"#.to_string(), "'body'"),
        // The body is a nested object, not a string.
        (
            format!(
                r#"{{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "x", "body": {}}}"#,
                pyjson::to_string(&body)
            ),
            "'body'",
        ),
        (
            r#"{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "x", "body": {"type": "indicator"}}"#
                .to_string(),
            "indicator: missing required property",
        ),
        (
            r#"{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "x", "body": {"type": "malware"}}"#
                .to_string(),
            "'malware'",
        ),
    ] {
        let e = SnapshotEnvelope::from_json(&json).expect_err(&json);
        assert!(e.to_string().contains(needle), "{json}: {e}");
    }
}

// ---------------------------------------------------------------------------
// Wire examples: objects as the Python bus sends them
// ---------------------------------------------------------------------------

const WIRE_INDICATOR: &str = r#"{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[domain-name:value = 'example.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}"#;
const WIRE_REMOVE: &str = r#"{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[domain-name:value = 'example.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z", "x_threatbus_update": "REMOVE"}"#;
const WIRE_ZEEK_SIGHTING: &str = r#"{"type": "sighting", "spec_version": "2.1", "id": "sighting--6f0c2c3e-3b9a-4f3c-9f7e-2c1b8a2f0d11", "created": "2021-05-03T10:00:01.123Z", "modified": "2021-05-03T10:00:01.123Z", "last_seen": "2021-05-03T10:00:00.5Z", "sighting_of_ref": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "x_threatbus_sighting_context": {"noisy": false}}"#;

#[test]
fn wire_examples_roundtrip_byte_exact() {
    for json in [WIRE_INDICATOR, WIRE_REMOVE, WIRE_ZEEK_SIGHTING] {
        let obj = parse_stix2(json).unwrap();
        assert_eq!(obj.to_json(), json);
        assert_eq!(pyjson::to_string(&obj), json, "Serialize impl is canonical too");
    }
    let ind = Indicator::parse(WIRE_INDICATOR).unwrap();
    assert_eq!(ind.id(), "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb");
    assert_eq!(ind.pattern(), "[domain-name:value = 'example.com']");
    assert_eq!(ind.pattern_type(), "stix");
    assert_eq!(ind.update(), None);
    assert_eq!(Indicator::parse(WIRE_REMOVE).unwrap().update(), Some(Operation::Remove));
    let s = Sighting::parse(WIRE_ZEEK_SIGHTING).unwrap();
    assert_eq!(s.sighting_of_ref(), "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb");
    assert_eq!(s.get(X_THREATBUS_SIGHTING_CONTEXT), Some(&json!({"noisy": false})));
    let obj = parse_stix2(WIRE_ZEEK_SIGHTING).unwrap();
    assert_eq!(obj.message_type(), MessageType::Sighting);
    assert_eq!(obj.topic(), TOPIC_SIGHTING);
    assert_eq!(obj.id(), "sighting--6f0c2c3e-3b9a-4f3c-9f7e-2c1b8a2f0d11");
}

#[test]
fn wire_examples_are_normalised_from_any_key_order() {
    // Same indicator, shuffled keys, unnormalised timestamps, defaults missing.
    let shuffled = r#"{"valid_from": "2021-04-20T07:38:22.530000Z", "pattern_type": "stix", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "x_threatbus_update": "REMOVE", "modified": "2021-04-20T07:38:22.53Z", "pattern": "[domain-name:value = 'example.com']", "created": "2021-04-20T07:38:22.53Z", "type": "indicator", "revoked": false, "labels": [], "name": null}"#;
    assert_eq!(parse_stix2(shuffled).unwrap().to_json(), WIRE_REMOVE);
}

#[test]
fn vast_retro_sighting_embeds_canonical_indicator() {
    let json = r#"{"x_threatbus_match_type": "RETRO", "x_threatbus_indicator": {"valid_from": "2021-04-20T07:38:22.530Z", "pattern": "[domain-name:value = 'evil.com']", "id": "indicator--46b3f973-5c03-41fc-9efe-49598a267a35", "type": "indicator", "pattern_type": "stix", "created": "2021-04-20T07:38:22.5Z", "modified": "2021-04-20T07:38:22.5Z"}, "type": "sighting", "id": "sighting--6f0c2c3e-3b9a-4f3c-9f7e-2c1b8a2f0d11", "created": "2021-05-03T10:00:01Z", "modified": "2021-05-03T10:00:01Z", "last_seen": "2017-03-03T23:56:09.652640Z", "sighting_of_ref": "indicator--46b3f973-5c03-41fc-9efe-49598a267a35", "x_threatbus_sighting_context": {"ts": "2017-03-03T23:56:09.652643840", "uid": "CMeLkt11aTqwgN4FI9", "id.orig_h": "172.31.130.19"}}"#;
    assert_eq!(
        parse_stix2(json).unwrap().to_json(),
        r#"{"type": "sighting", "spec_version": "2.1", "id": "sighting--6f0c2c3e-3b9a-4f3c-9f7e-2c1b8a2f0d11", "created": "2021-05-03T10:00:01.000Z", "modified": "2021-05-03T10:00:01.000Z", "last_seen": "2017-03-03T23:56:09.65264Z", "sighting_of_ref": "indicator--46b3f973-5c03-41fc-9efe-49598a267a35", "x_threatbus_indicator": {"type": "indicator", "spec_version": "2.1", "id": "indicator--46b3f973-5c03-41fc-9efe-49598a267a35", "created": "2021-04-20T07:38:22.500Z", "modified": "2021-04-20T07:38:22.500Z", "pattern": "[domain-name:value = 'evil.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}, "x_threatbus_match_type": "RETRO", "x_threatbus_sighting_context": {"id.orig_h": "172.31.130.19", "ts": "2017-03-03T23:56:09.652643840", "uid": "CMeLkt11aTqwgN4FI9"}}"#
    );
}

#[test]
fn envelope_example_of_reference() {
    let json = r#"{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "SNAPSHOT_UUID", "body": {"type": "indicator", "spec_version": "2.1", "id": "indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc", "created": "2021-05-03T08:00:01.123Z", "modified": "2021-05-03T08:00:01.123Z", "pattern": "[ipv4-addr:value = '6.6.6.6']", "pattern_type": "stix2", "valid_from": "2021-05-03T08:00:01.123Z"}}"#;
    let env = SnapshotEnvelope::from_json(json).unwrap();
    assert_eq!(env.snapshot_type, MessageType::Indicator);
    assert_eq!(env.snapshot_id, "SNAPSHOT_UUID");
    assert_eq!(env.body.id(), INDICATOR_ID);
    assert_eq!(env.to_json(), json);
}

// ---------------------------------------------------------------------------
// Canonical form details (checked against python stix2 3.0.1)
// ---------------------------------------------------------------------------

#[test]
fn canonical_order_defaults_and_escaping() {
    let json = r#"{"type": "indicator", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22Z", "modified": "2021-04-20T07:38:22.1Z", "pattern": "[domain-name:value = 'ex\u00e9mple.com']", "pattern_type": "stix", "valid_from": "2021-04-20T07:38:22.000Z", "x_b": 1, "x_a": [1e16, 1e-05, 0.1, 1.0], "labels": "foo", "name": "\u00e9\ud83d\ude00\u007f", "revoked": true, "confidence": 50, "x_nested": {"z": 1, "a": {"y": null, "b": []}}}"#;
    assert_eq!(
        parse_stix2(json).unwrap().to_json(),
        r#"{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22.000Z", "modified": "2021-04-20T07:38:22.100Z", "name": "\u00e9\ud83d\ude00\u007f", "pattern": "[domain-name:value = 'ex\u00e9mple.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22Z", "revoked": true, "labels": ["foo"], "confidence": 50, "x_a": [1e+16, 1e-05, 0.1, 1.0], "x_b": 1, "x_nested": {"a": {"b": [], "y": null}, "z": 1}}"#
    );
}

#[test]
fn sighting_defaults_dropped() {
    let json = r#"{"type": "sighting", "id": "sighting--6f0c2c3e-3b9a-4f3c-9f7e-2c1b8a2f0d11", "created": "2021-05-03T10:00:01.123Z", "modified": "2021-05-03T10:00:01.123Z", "sighting_of_ref": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "summary": false, "revoked": false, "count": 0, "where_sighted_refs": ["identity--42d31a5b-2da0-4bdd-9823-1723a98fc2fb"], "first_seen": "2021-05-03T10:00:00.5Z", "last_seen": "2021-05-03T10:00:00.500Z"}"#;
    assert_eq!(
        parse_stix2(json).unwrap().to_json(),
        r#"{"type": "sighting", "spec_version": "2.1", "id": "sighting--6f0c2c3e-3b9a-4f3c-9f7e-2c1b8a2f0d11", "created": "2021-05-03T10:00:01.123Z", "modified": "2021-05-03T10:00:01.123Z", "first_seen": "2021-05-03T10:00:00.5Z", "last_seen": "2021-05-03T10:00:00.5Z", "count": 0, "sighting_of_ref": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "where_sighted_refs": ["identity--42d31a5b-2da0-4bdd-9823-1723a98fc2fb"]}"#
    );
    let with_summary = json.replace(r#""summary": false"#, r#""summary": true"#);
    assert!(parse_stix2(&with_summary)
        .unwrap()
        .to_json()
        .contains(r#""where_sighted_refs": ["identity--42d31a5b-2da0-4bdd-9823-1723a98fc2fb"], "summary": true}"#));
}

#[test]
fn sighting_of_ref_accepts_non_sco_types() {
    // stix2 with allow_custom=True only rejects SCOs and SROs.
    for ty in ["indicator", "malware", "x-custom", "marking-definition", "foo"] {
        let json = WIRE_ZEEK_SIGHTING.replace("indicator--42d3", &format!("{ty}--42d3"));
        assert!(parse_stix2(&json).is_ok(), "{ty}");
    }
}

// ---------------------------------------------------------------------------
// Validation errors
// ---------------------------------------------------------------------------

fn parse_err(json: &str) -> DataError {
    match parse_stix2(json) {
        Ok(o) => panic!("should fail: {json} → {}", o.to_json()),
        Err(e) => e,
    }
}

fn with(base: &str, key: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(base).unwrap();
    if value.is_null() {
        v.as_object_mut().unwrap().remove(key);
    } else {
        v[key] = value;
    }
    v.to_string()
}

#[test]
fn missing_required_properties() {
    for key in ["id", "created", "modified", "pattern", "pattern_type", "valid_from"] {
        let e = parse_err(&with(WIRE_INDICATOR, key, Value::Null));
        assert_eq!(e.to_string(), format!("indicator: missing required property '{key}'"));
        assert_eq!(e.kind(), DataErrorKind::MissingProperty);
    }
    for key in ["id", "created", "modified", "sighting_of_ref"] {
        let e = parse_err(&with(WIRE_ZEEK_SIGHTING, key, Value::Null));
        assert_eq!(e.to_string(), format!("sighting: missing required property '{key}'"));
    }
    let e = parse_err(&with(WIRE_INDICATOR, "type", Value::Null));
    assert_eq!(e.to_string(), "invalid STIX object: missing required property 'type'");
    // spec_version defaults to 2.1
    let no_spec = with(WIRE_INDICATOR, "spec_version", Value::Null);
    assert_eq!(parse_stix2(&no_spec).unwrap().to_json(), WIRE_INDICATOR);
}

#[test]
fn bad_ids() {
    let e = parse_err(&with(WIRE_INDICATOR, "id", json!("foo")));
    assert_eq!(e.to_string(), "indicator: invalid id 'foo': expected 'indicator--<RFC 4122 UUID>'");
    for bad in [
        "indicator--42d31a5b-2da0-4bdd-c823-1723a98fc2fb", // wrong variant
        "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2f",  // too short
        "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fx", // not hex
        "indicator-42d31a5b-2da0-4bdd-9823-1723a98fc2fb",
        "sighting--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", // wrong type
    ] {
        let e = parse_err(&with(WIRE_INDICATOR, "id", json!(bad)));
        assert_eq!(e.to_string(), format!("indicator: invalid id '{bad}': expected 'indicator--<RFC 4122 UUID>'"));
    }
    // any RFC 4122 version is fine, uppercase too
    for good in ["indicator--42d31a5b-2da0-1bdd-9823-1723a98fc2fb", "indicator--42D31A5B-2DA0-4BDD-B823-1723A98FC2FB"] {
        assert!(parse_stix2(&with(WIRE_INDICATOR, "id", json!(good))).is_ok(), "{good}");
    }
    let e = parse_err(&with(WIRE_ZEEK_SIGHTING, "id", json!("sighting--nope")));
    assert!(e.to_string().contains("expected 'sighting--<RFC 4122 UUID>'"), "{e}");
}

#[test]
fn sighting_of_ref_must_be_sdo() {
    for ty in ["ipv4-addr", "domain-name", "file", "x509-certificate", "relationship", "sighting"] {
        let e = parse_err(&with(
            WIRE_ZEEK_SIGHTING,
            "sighting_of_ref",
            json!(format!("{ty}--42d31a5b-2da0-4bdd-9823-1723a98fc2fb")),
        ));
        assert!(e.to_string().starts_with("sighting: invalid value for 'sighting_of_ref'"), "{e}");
        assert!(e.to_string().contains(&format!("('{ty}')")), "{e}");
    }
    let e = parse_err(&with(WIRE_ZEEK_SIGHTING, "sighting_of_ref", json!("indicator--foo")));
    assert!(e.to_string().contains("not a STIX identifier"), "{e}");
    assert!(Sighting::new("ipv4-addr--42d31a5b-2da0-4bdd-9823-1723a98fc2fb").is_err());
}

#[test]
fn time_constraints() {
    for until in ["2021-04-20T07:38:22.53Z", "2021-04-20T07:38:22Z", "2020-01-01T00:00:00Z"] {
        let e = parse_err(&with(WIRE_INDICATOR, "valid_until", json!(until)));
        assert_eq!(e.to_string(), "indicator: 'valid_until' must be later than 'valid_from'");
    }
    assert!(parse_stix2(&with(WIRE_INDICATOR, "valid_until", json!("2021-04-20T07:38:22.530001Z"))).is_ok());
    let e = parse_err(&with(WIRE_ZEEK_SIGHTING, "first_seen", json!("2021-05-03T10:00:01Z")));
    assert!(e.to_string().contains("'last_seen' must be later than or equal to 'first_seen'"), "{e}");
    let e = parse_err(&with(WIRE_INDICATOR, "created", json!("2021-04-20T07:38:22+00:00")));
    assert!(e.to_string().starts_with("indicator: invalid value for 'created'"), "{e}");
    let e = parse_err(&with(WIRE_INDICATOR, "valid_from", json!(1618904302)));
    assert!(e.to_string().contains("expected a string"), "{e}");
}

#[test]
fn invalid_stix_patterns_are_rejected() {
    let e = parse_err(&with(WIRE_INDICATOR, "pattern", json!("[domain-name:value = 'example.com'")));
    assert_eq!(e.kind(), DataErrorKind::InvalidPattern);
    assert_eq!(e.to_string(), "indicator: invalid STIX pattern at 34: expected ']', found end of input");
    assert_eq!(e.pattern_error().unwrap().position, 34);
    for p in [
        "",
        "domain-name:value = 'example.com'",
        "[domain-name:value = example.com]",
        "[domain-name:value = 'example.com'] garbage",
        "[file:hashes.'SHA-256' = 'abc']",
        "[a:b = 1] WITHIN 1 SECONDS WITHIN 2 SECONDS",
    ] {
        let e = parse_err(&with(WIRE_INDICATOR, "pattern", json!(p)));
        assert_eq!(e.kind(), DataErrorKind::InvalidPattern, "{p}");
    }
    // Other pattern types are not validated.
    for pt in ["stix2", "snort", "suricata", "sigma", "yara"] {
        let json = with(&with(WIRE_INDICATOR, "pattern_type", json!(pt)), "pattern", json!("garbage"));
        assert!(parse_stix2(&json).is_ok(), "{pt}");
    }
}

#[test]
fn wrong_types() {
    let e = parse_err(r#"{"type": "malware", "id": "malware--42d31a5b-2da0-4bdd-9823-1723a98fc2fb"}"#);
    assert_eq!(e.to_string(), "unsupported STIX object type 'malware': expected 'indicator' or 'sighting'");
    assert_eq!(e.kind(), DataErrorKind::UnsupportedType);
    let e = parse_err(r#"{"type": 5}"#);
    assert_eq!(e.kind(), DataErrorKind::UnsupportedType);
    let e = parse_err("[]");
    assert!(e.to_string().contains("expected a JSON object"), "{e}");
    let e = parse_err("{");
    assert_eq!(e.kind(), DataErrorKind::InvalidJson);
    let e = Indicator::parse(WIRE_ZEEK_SIGHTING).unwrap_err();
    assert!(e.to_string().contains("expected a STIX object of type 'indicator'"), "{e}");
    let e = Sighting::parse(WIRE_INDICATOR).unwrap_err();
    assert!(e.to_string().contains("expected a STIX object of type 'sighting'"), "{e}");
    let e = parse_err(&with(WIRE_INDICATOR, "spec_version", json!("2.0")));
    assert!(e.to_string().contains("'spec_version'"), "{e}");
}

#[test]
fn property_value_checks() {
    for (key, value, needle) in [
        ("X_foo", json!(1), "invalid custom property name 'X_foo'"),
        ("_foo", json!(1), "invalid custom property name '_foo'"),
        ("name", json!(5), "'name': expected a string"),
        ("labels", json!([1]), "'labels': expected a list of strings"),
        ("revoked", json!("true"), "'revoked': expected a boolean"),
        ("confidence", json!(5.5), "'confidence': expected an integer"),
        ("created_by_ref", json!(INDICATOR_ID), "'created_by_ref'"),
        ("object_marking_refs", json!(["identity--42d31a5b-2da0-4bdd-9823-1723a98fc2fb"]), "'object_marking_refs'"),
        ("kill_chain_phases", json!([{"phase_name": "a"}]), "'kill_chain_phases'"),
        ("external_references", json!([{"url": "a"}]), "'external_references'"),
        ("extensions", json!([1]), "'extensions'"),
        ("extensions", json!({"a": 1}), "'extensions'"),
        ("extensions", json!({"extension-definition--1": {}}), "'extensions'"),
        ("granular_markings", json!([{"kill_chain_name": "a"}]), "'granular_markings'"),
        ("granular_markings", json!([{"selectors": ["nope"], "lang": "en"}]), "'granular_markings'"),
        ("granular_markings", json!([{"selectors": ["id"]}]), "'granular_markings'"),
        ("granular_markings", json!([{"selectors": ["revoked"], "lang": "en"}]), "'granular_markings'"),
        (
            "granular_markings",
            json!([{"selectors": ["external_references.[0].source_name"], "lang": "en"}]),
            "'granular_markings'",
        ),
        ("X_foo", Value::Array(vec![]), "invalid custom property name 'X_foo'"),
        ("spec_version", json!(2.1), "'spec_version'"),
    ] {
        let e = parse_err(&with(WIRE_INDICATOR, key, value));
        assert!(e.to_string().contains(needle), "{key}: {e}");
    }
    for (key, value) in [
        ("count", json!(-1)),
        ("count", json!(1_000_000_000)),
        ("where_sighted_refs", json!([INDICATOR_ID])),
        ("observed_data_refs", json!([INDICATOR_ID])),
        ("summary", json!(1)),
    ] {
        let e = parse_err(&with(WIRE_ZEEK_SIGHTING, key, value));
        assert!(e.to_string().contains(&format!("'{key}'")), "{key}: {e}");
    }
    // accepted
    for (key, value) in [
        ("x-dash", json!(1)),
        ("kill_chain_phases", json!([{"kill_chain_name": "b", "phase_name": "a"}])),
        ("external_references", json!([{"source_name": "cve", "external_id": "CVE-1"}])),
        ("extensions", json!({"x": {"b": 1}})),
        ("created_by_ref", json!("identity--42d31a5b-2da0-4bdd-9823-1723a98fc2fb")),
        ("granular_markings", json!([{"selectors": ["id", "pattern"], "lang": "en"}])),
        (
            "granular_markings",
            json!([{"selectors": ["modified"], "marking_ref": "marking-definition--42d31a5b-2da0-4bdd-9823-1723a98fc2fb"}]),
        ),
        ("external_references", json!([{"source_name": "x", "url": "u"}])),
    ] {
        assert!(parse_stix2(&with(WIRE_INDICATOR, key, value)).is_ok(), "{key}");
    }
}

// ---------------------------------------------------------------------------
// Constructors and mutation
// ---------------------------------------------------------------------------

#[test]
fn indicator_new() {
    let i = Indicator::new("[domain-name:value = 'evil.com']", "stix").unwrap();
    assert!(i.id().starts_with("indicator--"));
    assert_eq!(i.get("spec_version"), Some(&json!("2.1")));
    assert_eq!(i.get("pattern_version"), Some(&json!("2.1")));
    assert_eq!(i.get("created"), i.get("modified"));
    let created = i.get("created").unwrap().as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() >= 24, "{created}");
    // reparses to the same object
    let json = i.to_json();
    assert_eq!(parse_stix2(&json).unwrap().to_json(), json);
    assert_eq!(Indicator::parse(&json).unwrap(), i);

    let s = Indicator::new("alert tcp any any -> any any (msg:\"x\";)", "suricata").unwrap();
    assert_eq!(s.get("pattern_version"), None);
    assert_eq!(s.pattern_type(), "suricata");

    let e = Indicator::new("[domain-name:value = evil.com]", "stix").unwrap_err();
    assert_eq!(e.kind(), DataErrorKind::InvalidPattern);
}

#[test]
fn indicator_set_custom_and_update() {
    let mut i = Indicator::parse(WIRE_INDICATOR).unwrap();
    i.set_custom(X_THREATBUS_UPDATE, json!(Operation::Remove));
    assert_eq!(i.update(), Some(Operation::Remove));
    assert_eq!(i.to_json(), WIRE_REMOVE);
    i.set_custom(X_THREATBUS_UPDATE, json!("EDIT"));
    assert_eq!(i.update(), Some(Operation::Edit));
    i.set_custom(X_THREATBUS_UPDATE, Value::Null);
    assert_eq!(i.update(), None);
    assert_eq!(i.to_json(), WIRE_INDICATOR);
    // spec properties cannot be overwritten through set_custom
    i.set_custom("pattern", json!("garbage"));
    i.set_custom("Bad", json!(1));
    assert_eq!(i.to_json(), WIRE_INDICATOR);
}

#[test]
fn sighting_new_and_setters() {
    let mut s = Sighting::new("indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb").unwrap();
    assert!(s.id().starts_with("sighting--"));
    assert_eq!(s.sighting_of_ref(), "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb");
    let ts =
        chrono::DateTime::parse_from_rfc3339("2021-05-03T10:00:00.500000123Z").unwrap().with_timezone(&chrono::Utc);
    s.set_last_seen(ts);
    assert_eq!(s.get("last_seen"), Some(&json!("2021-05-03T10:00:00.5Z")));
    s.set_custom(X_THREATBUS_SIGHTING_CONTEXT, json!({"noisy": false}));
    s.set_custom(X_THREATBUS_MATCH_TYPE, json!(MatchType::Live));
    s.set_custom(X_THREATBUS_INDICATOR_VALUE, json!("evil.com"));
    let json = s.to_json();
    assert!(json.ends_with(r#""last_seen": "2021-05-03T10:00:00.5Z", "sighting_of_ref": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "x_threatbus_indicator_value": "evil.com", "x_threatbus_match_type": "LIVE", "x_threatbus_sighting_context": {"noisy": false}}"#), "{json}");
    assert_eq!(Sighting::parse(&json).unwrap(), s);
}

#[test]
fn enums_serialize_like_python() {
    assert_eq!(serde_json::to_string(&MessageType::Indicator).unwrap(), "1");
    assert_eq!(serde_json::to_string(&MessageType::Sighting).unwrap(), "2");
    assert_eq!(serde_json::from_str::<MessageType>("2").unwrap(), MessageType::Sighting);
    assert!(serde_json::from_str::<MessageType>("3").is_err());
    assert_eq!(MessageType::Indicator.topic(), TOPIC_INDICATOR);
    assert_eq!(MessageType::Sighting.topic(), TOPIC_SIGHTING);
    assert_eq!(MessageType::Indicator.name(), "indicator");
    assert_eq!(MessageType::Sighting.name(), "sighting");
    assert_eq!(serde_json::to_string(&Operation::Edit).unwrap(), r#""EDIT""#);
    assert_eq!(serde_json::to_string(&Operation::Remove).unwrap(), r#""REMOVE""#);
    assert_eq!(serde_json::to_string(&MatchType::Live).unwrap(), r#""LIVE""#);
    assert_eq!(serde_json::to_string(&MatchType::Retro).unwrap(), r#""RETRO""#);
    assert_eq!(serde_json::from_str::<MatchType>(r#""RETRO""#).unwrap(), MatchType::Retro);
    assert_eq!(TOPIC_SNAPSHOT_REQUEST, "threatbus/snapshotrequest");
    assert_eq!(TOPIC_SNAPSHOT_ENVELOPE, "threatbus/snapshotenvelope");
}

// ---------------------------------------------------------------------------
// Patterns: expected results computed with stix2-patterns 1.3.0
// ---------------------------------------------------------------------------

/// (pattern, `Pattern(p)` parses, `run_validator(p, "2.1")` passes,
/// `is_point_equality_ioc(p)`) as computed by the Python libraries for the
/// patterns of the upstream test suites plus extra edge cases.
const PYTHON_PATTERN_RESULTS: &[(&str, bool, bool, bool)] = &[
    ("file:size = 1280", false, false, false),
    ("[file:size = ]", false, false, false),
    ("[file:hashes.MD5 = cead3f77f6cda6ec00f57d76c9a6879f]", false, false, false),
    ("[file.size = 1280]", false, false, false),
    ("[file:name MATCHES /.*\\.dll/]", false, false, false),
    ("[win-registry-key:key = 'hkey_local_machine\\\\foo\\\\bar'] WITHIN ]", false, false, false),
    ("[win-registry-key:key = 'hkey_local_machine\\\\foo\\\\bar'] WITHIN 5 HOURS]", false, false, false),
    ("[win-registry-key:key = 'hkey_local_machine\\\\foo\\\\bar'] WITHIN -5 SECONDS]", false, false, false),
    ("[network-traffic:dst_ref.value ISSUBSET ]", false, false, false),
    ("[file:hashes.MD5 =? 'cead3f77f6cda6ec00f57d76c9a6879f']", false, false, false),
    ("[x_whatever:detected == t'2457-73-22T32:81:84.1Z']", false, false, false),
    ("[artifact:payload_bin = b'====']", false, false, false),
    ("[foo:bar=1] within 2 seconds", false, false, false),
    ("[file:hashes.'SHA-256' = 'f00']", true, false, true),
    ("[win-registry-key:key = 'hkey_local_machine\\\\foo\\\\bar'] WITHIN 5 SECONDS WITHIN 6 SECONDS", true, false, false),
    ("([win-registry-key:key = 'hkey_local_machine\\\\foo\\\\bar'] REPEATS 2 TIMES REPEATS 3 TIMES)", true, false, false),
    ("[win-registry-key:key = 'hkey_local_machine\\\\foo\\\\bar'] ", true, true, true),
    ("START t'2016-06-01T01:30:00.123Z' STOP t'2016-06-01T02:20:00.123Z' ", false, false, false),
    ("START t'2016-06-01T01:30:00.123Z' STOP t'2016-06-01T02:20:00.123Z'", false, false, false),
    ("[file:size = 1280]", true, true, true),
    ("[file:size != 1280]", true, true, false),
    ("[file:size < 1024]", true, true, false),
    ("[file:size <= 1024]", true, true, false),
    ("[file:size > 1024]", true, true, false),
    ("[file:size >= 1024]", true, true, false),
    ("[file:file_name = 'my_file_name']", true, true, true),
    ("[file:extended_properties.'ntfs-ext'.sid = '234']", true, true, true),
    ("[ipv4addr:value ISSUBSET '192.168.0.1/24']", true, true, false),
    ("[ipv4addr:value NOT ISSUBSET '192.168.0.1/24']", true, true, false),
    ("[user-account:value = 'Peter'] AND [user-account:value != 'Paul'] AND [user-account:value = 'Mary'] WITHIN 5 SECONDS", true, true, false),
    ("[file:file_system_properties.file_name LIKE 'name%']", true, true, false),
    ("[file:file_name IN ('test.txt', 'test2.exe', 'README')]", true, true, false),
    ("[file:size IN (1024, 2048, 4096)]", true, true, false),
    ("[network-connection:extended_properties[0].source_payload MATCHES 'dGVzdHRlc3R0ZXN0']", true, true, false),
    ("[win-registry-key:key = 'hkey_local_machine\\\\foo\\\\bar'] WITHIN 5 SECONDS", true, true, false),
    ("[x_whatever:detected == t'2018-03-22T12:11:14.1Z']", true, true, false),
    ("[artifact:payload_bin = b'dGhpcyBpcyBhIHRlc3Q=']", true, true, true),
    ("[foo:bar=1] REPEATS 9 TIMES", true, true, false),
    ("[network-traffic:start = '2018-04-20T12:36:24.558Z']", true, true, true),
    ("( [(network-traffic:dst_port IN(443,6443,8443) AND network-traffic:src_packets != 0) ])", true, true, false),
    ("([win-registry-key:key = 'hkey_local_machine\\\\foo\\\\bar']) WITHIN 5 SECONDS WITHIN 6 SECONDS", true, true, false),
    ("([win-registry-key:key = 'hkey_local_machine\\\\foo\\\\bar'] REPEATS 2 TIMES) REPEATS 2 TIMES", true, true, false),
    ("[network-traffic:src_port = 37020 AND user-account:user_id = 'root'] ", true, true, false),
    ("START t'2016-06-01T01:30:00.123Z' STOP t'2016-06-01T02:20:00.123Z' OR ", false, false, false),
    ("[ipv4-addr:value = '192.168.122.83'] ", true, true, true),
    ("START t'2016-06-01T03:55:00.123Z' STOP t'2016-06-01T04:30:24.743Z'", false, false, false),
    ("[foo:bar = 1] START t'1932-11-12T15:42:15Z' STOP t'1964-10-23T21:12:26Z'", true, true, false),
    ("[foo:bar = 1] REPEATS 1 TIMES AND [foo:baz = 2] WITHIN 1.23 SECONDS", true, true, false),
    ("([foo:bar = 1] START t'1932-11-12T15:42:15Z' STOP t'1964-10-23T21:12:26Z' AND [foo:abc < h'12ab']) WITHIN 22 SECONDS ", true, true, false),
    ("OR [frob:baz NOT IN (1,2,3)] REPEATS 31 TIMES", false, false, false),
    ("[foo:bar = 1] OR ([foo:baz = false] FOLLOWEDBY [frob:abc LIKE '123']) WITHIN 46.1 SECONDS", true, true, false),
    ("[foo:bar=1 AND bar:foo NOT >33] REPEATS 12 TIMES OR ", false, false, false),
    ("  ([baz:bar ISSUBSET '1234'] FOLLOWEDBY [baz:quux NOT LIKE 'a_cd'])", true, true, false),
    ("[ipv4-addr:value = '6.6.6.6']", true, true, true),
    ("[ipv6-addr:value = '::1']", true, true, true),
    ("[domain-name:value = 'evil.com']", true, true, true),
    ("[x509-certificate:hashes.'SHA-1' = '6e6187d58483457f86eae49315a0a72d7543459a']", true, true, true),
    ("[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']", true, true, true),
    ("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']", true, true, true),
    ("[ipv4-addr:value == '6.6.6.6']", true, true, false),
    ("[a:b != 1 AND a:c <> 2]", true, true, false),
    ("[a:b > 1 OR a:b < -1 OR a:b >= 1.5 OR a:b <= -.5]", true, true, false),
    ("[ipv4-addr:value IN ('1.1.1.1', '2.2.2.2')]", true, true, false),
    ("[ipv4-addr:value NOT IN ()]", true, true, false),
    ("[a:b IN (1, 2.5, true, false, 'x', t'2020-01-01T00:00:00Z', h'ab', b'YWJj')]", true, true, false),
    ("[url:value LIKE '%evil%']", true, true, false),
    ("[file:name MATCHES '^.*\\\\.exe$']", true, true, false),
    ("[ipv4-addr:value NOT ISSUPERSET '198.51.100.0/24']", true, true, false),
    ("[a:b NOT = 'x']", true, true, false),
    ("[EXISTS windows-registry-key:values]", true, true, false),
    ("[EXISTS a:b[-1]]", true, false, false),
    ("[email-message:to_refs[*].value = 'a@b.c']", true, true, true),
    ("[network-traffic:protocols[-1] = 'tcp']", true, false, false),
    ("[network-traffic:protocols[+1] = 'tcp']", true, true, true),
    ("[file:extensions.'windows-pebinary-ext'.sections[*].entropy > 7.0]", true, true, false),
    ("[file:'name' = 'x']", true, true, true),
    ("[a:b = 'it\\'s \\\\ ok']", true, true, true),
    ("[a:b = 'bad \\n escape']", false, false, false),
    ("[a:b = 1] WITHIN 5 SECONDS WITHIN 6 SECONDS", true, false, false),
    ("([a:b = 1]) WITHIN 5 SECONDS WITHIN 6 SECONDS", true, true, false),
    ("([a:b = 1] AND [c:d = 2]) REPEATS 2 TIMES WITHIN 10 SECONDS", true, true, false),
    ("[a:b = 1] START t'2016-06-01T00:00:60Z' STOP t'2016-02-31T23:59:59Z'", true, true, false),
    ("[a:b = b'YQ==' AND a:c = b'YWI=' AND a:d = h'']", true, true, true),
    ("/* comment */ [a:b = 1] // trailing", true, false, true),
    ("(([a:b = 1]))", true, false, true),
    ("[a:b. c = 1]", true, true, true),
    ("[ipv4-addr:value = '1.1.1.1' OR ipv4-addr:value = '2.2.2.2']", true, true, true),
    ("[file:hashes[0] = 'x']", true, false, true),
    ("[file:hashes.sha1 = 5]", true, false, true),
    ("[file:hashes.MD6 = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaazz']", true, true, true),
    ("[file:hashes.SSDEEP = '3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C']", true, true, true),
    ("[file:hashes.'SHA-1' = '6E6187D58483457F86EAE49315A0A72D7543459A']", true, true, true),
    ("[a:b = 1] REPEATS 2 TIMES WITHIN 1 SECONDS REPEATS 3 TIMES", true, false, false),
    (" [domain-name:value = 'evil.com'] ", true, true, true),
    ("([domain-name:value = 'evil.com'])", true, true, true),
    ("[domain-name:value = '\u{e9}']", true, true, true),
    ("[file:size = 5]", true, true, true),
    ("[url:value = 'http://evil.com/a=b']", true, true, true),
    ("[x-foo-:bar = 1]", true, true, true),
    ("[a:b = 007]", false, false, false),
    ("[a:b = -0]", true, true, true),
    ("[a:b = 1] within 5 seconds", false, false, false),
    ("[a:b = 1 and a:c = 2]", false, false, false),
    ("[a:b = TRUE]", false, false, false),
    ("[a:b = b'']", false, false, false),
    ("[a:b = h'abc']", false, false, false),
    ("[ipv4-addr:value = 6.6.6.6]", false, false, false),
    ("Some string", false, false, false),
    ("6.6.6.6 = ipv4-addr:value", false, false, false),
    ("ipv4-addr:value = '6.6.6.6'", false, false, false),
    ("[ipv4-addr:value = '6.6.6.6'", false, false, false),
    ("ipv4-addr:value = '6.6.6.6']", false, false, false),
    ("[ipv4-addr:value = '6.6.6.6' AND domain-name:value = 'evil.com']", true, true, false),
    ("[ipv4-addr:value = '6.6.6.6'] AND [domain-name:value = 'evil.com']", true, true, false),
    ("[]", false, false, false),
    ("[file:hashes.'SHA-256' IN ('aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f')]", true, false, false),
    ("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e\n']", true, true, true),
    ("[a:b = 'x'] AND [c:d = 1] WITHIN 5 SECONDS WITHIN 2 SECONDS", true, false, false),
    ("[a:b = 1] WITHIN 0 SECONDS", true, true, false),
    ("[a:b = 1] WITHIN +5 SECONDS", true, true, false),
    ("[a:b = 1] REPEATS +0 TIMES", true, true, false),
    ("[a:b = t'2016-06-01T00:00:00.123456789Z']", true, true, true),
    ("[a:b[99999999999999999999] = 1]", true, true, true),
];

#[test]
fn patterns_agree_with_python() {
    for &(p, parses, validates, point) in PYTHON_PATTERN_RESULTS {
        assert_eq!(pattern::parse(p).is_ok(), parses, "parse {p:?}");
        assert_eq!(pattern::validate(p).is_ok(), validates, "validate {p:?}");
        assert_eq!(ioc::is_point_equality_ioc(p), point, "ioc {p:?}");
    }
}

// ---------------------------------------------------------------------------
// Hostile and edge-case input: nesting, numbers, pattern versions, external
// references. Expected outputs are what python `stix2` 3.0.1 serializes for
// the same input.
// ---------------------------------------------------------------------------

/// `WIRE_INDICATOR` with `pattern` (and `pattern_version`, if given) replaced.
fn with_pattern(pattern: &str, version: Option<&str>) -> String {
    let json = with(WIRE_INDICATOR, "pattern", json!(pattern));
    match version {
        Some(v) => with(&json, "pattern_version", json!(v)),
        None => json,
    }
}

fn nested_patterns(levels: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "parentheses around an observation",
            format!("[a:b = 'c'] AND {}[a:b = 'c']{}", "(".repeat(levels), ")".repeat(levels)),
        ),
        ("parentheses around a comparison", format!("[{}a:b = 'c'{}]", "(".repeat(levels), ")".repeat(levels))),
        ("unclosed parentheses", format!("({}[a:b = 'c']", "(".repeat(levels))),
        ("qualifier chain", format!("[a:b = 'c']{}", " REPEATS 5 TIMES".repeat(levels))),
    ]
}

/// Runs `f` on a thread with a 256 KiB stack, an eighth of a plugin
/// thread's default: parsing and validating must not depend on the caller's
/// stack size.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    let handle = std::thread::Builder::new().stack_size(256 * 1024).spawn(f).unwrap();
    handle.join().expect("must not crash on a small stack");
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    on_small_stack(|| {
        let n = pattern::MAX_NESTING;
        let half = |s: &str| s.repeat(n / 2);
        let json = with_pattern(
            &format!("[a:b = 'c'] AND {}[{}a:b = 'c'{}]{}", half("("), half("("), half(")"), half(")")),
            None,
        );
        let obj = parse_stix2(&json).unwrap();
        assert_eq!(parse_stix2(&obj.to_json()).unwrap(), obj);
        let chain = format!("[a:b = 'c']{}", " REPEATS 5 TIMES WITHIN 1 SECONDS".repeat(n / 2));
        let p = pattern::validate_version(&chain, pattern::PatternVersion::V2_0).unwrap();
        assert_eq!(p.inspect().qualifiers, vec!["REPEATS 5 TIMES".to_string(), "WITHIN 1 SECONDS".to_string()]);
        parse_stix2(&with_pattern(&chain, Some("2.0"))).unwrap();
    });
}

#[test]
fn deep_nesting_is_rejected_without_exhausting_the_stack() {
    on_small_stack(|| {
        for levels in [pattern::MAX_NESTING + 1, 1_000, 100_000] {
            for (what, p) in nested_patterns(levels) {
                for version in [None, Some("2.0")] {
                    let err = parse_err(&with_pattern(&p, version));
                    assert_eq!(err.kind(), DataErrorKind::InvalidPattern, "{what} x{levels}: {err}");
                    let kind = &err.pattern_error().unwrap().kind;
                    // 2.1 rejects a repeated REPEATS before it gets deep.
                    if !(what == "qualifier chain" && version.is_none() && levels > 1000) {
                        assert!(
                            matches!(
                                kind,
                                pattern::PatternErrorKind::TooDeep | pattern::PatternErrorKind::DuplicateQualifier(_)
                            ),
                            "{what} x{levels}: {err}"
                        );
                    }
                }
            }
            let envelope = format!(
                r#"{{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "x", "body": {}}}"#,
                with_pattern(&nested_patterns(levels)[1].1, None)
            );
            let err = SnapshotEnvelope::from_json(&envelope).unwrap_err();
            assert_eq!(err.kind(), DataErrorKind::InvalidPattern, "{err}");
        }
    });
}

#[test]
fn too_deep_error_names_the_limit() {
    let p = format!("[{}a:b = 'c'{}]", "(".repeat(300), ")".repeat(300));
    let e = pattern::validate(&p).unwrap_err();
    assert_eq!(e.kind, pattern::PatternErrorKind::TooDeep);
    assert_eq!(e.position, 1 + pattern::MAX_NESTING);
    assert_eq!(e.to_string(), format!("at {}: parentheses and qualifiers nest deeper than 200 levels", 201));
}

#[test]
fn deep_json_in_custom_properties_is_rejected() {
    for levels in [1_000, 100_000] {
        let json = format!(
            "{},\"x_deep\": {}1{}}}",
            &WIRE_INDICATOR[..WIRE_INDICATOR.len() - 1],
            "[".repeat(levels),
            "]".repeat(levels)
        );
        assert_eq!(parse_err(&json).kind(), DataErrorKind::InvalidJson);
    }
    let ok = format!(
        "{},\"x_deep\": {}1{}}}",
        &WIRE_INDICATOR[..WIRE_INDICATOR.len() - 1],
        "[".repeat(100),
        "]".repeat(100)
    );
    parse_stix2(&ok).unwrap();
}

/// `WIRE_INDICATOR` with a custom property `x_num` written as `number`.
fn with_number(number: &str) -> String {
    format!("{}, \"x_num\": [{number}, {{\"k\": {number}}}]}}", &WIRE_INDICATOR[..WIRE_INDICATOR.len() - 1])
}

fn number_out(number: &str) -> String {
    let out = parse_stix2(&with_number(number)).unwrap_or_else(|e| panic!("{number}: {e}")).to_json();
    let tail = out.rsplit_once("\"x_num\": [").unwrap().1;
    let (first, rest) = tail.split_once(", {\"k\": ").unwrap();
    assert_eq!(rest.strip_suffix("}]}").unwrap(), first, "same number in a list and an object");
    first.to_string()
}

#[test]
fn floats_survive_exactly() {
    // Full-precision doubles that a parser without correct rounding gets
    // one digit wrong.
    for f in [
        "0.42451918914251396",
        "0.3049452709083432",
        "2.2250738585072014e-308",
        "1.7976931348623157e+308",
        "5e-324",
        "0.1",
        "-0.0",
        "1.0",
    ] {
        assert_eq!(number_out(f), f);
    }
    // Written as Python's repr(float) of the correctly rounded double.
    for (input, want) in [
        ("1E5", "100000.0"),
        ("1.5e-7", "1.5e-07"),
        ("9007199254740993.0", "9007199254740992.0"),
        ("1e-400", "0.0"),
        ("123456789012345678901234567890.5", "1.2345678901234568e+29"),
    ] {
        assert_eq!(number_out(input), want, "{input}");
    }
    // Exhaustively for many random doubles: the text written parses back to
    // the same bits.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let f = f64::from_bits(state);
        if !f.is_finite() {
            continue;
        }
        let text = format!("{f:e}");
        let out = number_out(&text);
        assert_eq!(out.parse::<f64>().unwrap().to_bits(), f.to_bits(), "{text} -> {out}");
    }
}

#[test]
fn integers_keep_their_digits() {
    for i in [
        "10000000000000000000000000000000",
        "-12345678901234567890",
        "18446744073709551616",
        "9007199254740993",
        "0",
        "100",
    ] {
        assert_eq!(number_out(i), i);
    }
    // A Python int has no negative zero.
    assert_eq!(number_out("-0"), "0");
    let limit = "9".repeat(pyjson::MAX_INTEGER_DIGITS);
    assert_eq!(number_out(&limit), limit);
}

#[test]
fn numbers_python_cannot_carry_are_rejected() {
    for n in ["1e400", "-1e309", "1".repeat(pyjson::MAX_INTEGER_DIGITS + 1).as_str()] {
        let e = parse_err(&with_number(n));
        assert_eq!(e.kind(), DataErrorKind::InvalidProperty, "{e}");
        assert!(e.message().contains("number"), "{e}");
    }
}

#[test]
fn sighting_context_numbers_survive() {
    let json = format!(
        r#"{{"type": "sighting", "spec_version": "2.1", "id": "{SIGHTING_ID}", "created": "2021-05-03T10:00:01.123Z", "modified": "2021-05-03T10:00:01.123Z", "sighting_of_ref": "{INDICATOR_ID}", "x_threatbus_sighting_context": {{"duration": 0.42451918914251396, "big": 1000000000000000000000000000000, "neg": -0}}}}"#
    );
    let out = parse_stix2(&json).unwrap().to_json();
    assert!(out.ends_with(r#""x_threatbus_sighting_context": {"big": 1000000000000000000000000000000, "duration": 0.42451918914251396, "neg": 0}}"#), "{out}");
}

#[test]
fn pattern_version_selects_the_grammar() {
    let start_stop_strings = "[a:b = 'c'] START '2020-01-01T00:00:00Z' STOP '2020-01-02T00:00:00Z'";
    let start_stop_timestamps = "[a:b = 'c'] START t'2020-01-01T00:00:00Z' STOP t'2020-01-02T00:00:00Z'";
    // (pattern, pattern_version, accepted) as stix2 3.0.1 decides.
    let cases = [
        (start_stop_strings, Some("2.0"), true),
        (start_stop_strings, Some("2.1"), false),
        (start_stop_strings, None, false),
        (start_stop_strings, Some(""), false),
        (start_stop_timestamps, Some("2.0"), false),
        (start_stop_timestamps, Some("2.1"), true),
        ("[a:b = 'c'] START 'x' STOP 'y'", Some("2.0"), true),
        ("[EXISTS a:b]", Some("2.1"), true),
        ("[EXISTS a:b]", Some("2.0"), false),
        ("[EXISTS a:b]", Some("2.2"), false),
        ("[EXISTS:b = 'x']", Some("2.0"), true),
        ("[EXISTS:b = 'x']", Some("2.1"), false),
        ("[a:b = 'c'] REPEATS 5 TIMES REPEATS 2 TIMES", Some("2.0"), true),
        ("[a:b = 'c'] REPEATS 5 TIMES REPEATS 2 TIMES", Some("2.1"), false),
        ("[a:b = 'c'] WITHIN 5 SECONDS WITHIN 4 SECONDS", Some("banana"), true),
        ("[file:hashes.MD5 = 'x']", Some("2.0"), false),
        ("[a:b[-1] = 'x']", Some("2.0"), false),
        ("a:b = 'x'", Some("2.0"), false),
    ];
    for (p, version, accepted) in cases {
        let json = with_pattern(p, version);
        match parse_stix2(&json) {
            Ok(obj) => {
                assert!(accepted, "{p} ({version:?}) should be rejected");
                let out = obj.to_json();
                let want = version.filter(|v| !v.is_empty()).unwrap_or("2.1");
                assert!(out.contains(&format!("\"pattern_version\": \"{want}\"")), "{out}");
            }
            Err(e) => assert!(!accepted, "{p} ({version:?}) should be accepted: {e}"),
        }
    }
    let v20 = pattern::validate_version(start_stop_strings, pattern::PatternVersion::V2_0).unwrap();
    assert_eq!(v20.inspect().qualifiers, vec!["START '2020-01-01T00:00:00Z' STOP '2020-01-02T00:00:00Z'".to_string()]);
}

fn with_reference(reference: Value) -> String {
    with(WIRE_INDICATOR, "external_references", json!([reference]))
}

#[test]
fn external_references_are_validated_like_stix2() {
    let rejected = [
        (json!({"source_name": "x"}), "at least one of"),
        (json!({"source_name": "x", "url": null}), "at least one of"),
        (json!({"description": "d"}), "'source_name'"),
        (json!({"source_name": 5, "description": "d"}), "'source_name': expected a string"),
        (json!({"source_name": "x", "url": 5}), "'url': expected a string"),
        (json!({"source_name": "x", "external_id": ["a"]}), "'external_id': expected a string"),
        (json!({"source_name": "x", "description": "d", "hashes": {}}), "must not be empty"),
        (json!({"source_name": "x", "description": "d", "hashes": "abc"}), "expected an object"),
        (json!({"source_name": "x", "description": "d", "hashes": {"sha_1": "a".repeat(40)}}), "hash-algorithm-ov"),
        (json!({"source_name": "x", "description": "d", "hashes": {"MD6": "a".repeat(32)}}), "hash-algorithm-ov"),
        (json!({"source_name": "x", "description": "d", "hashes": {"SHA-1": 5}}), "expected a string"),
        (json!({"source_name": "x", "description": "d", "hashes": {"SHA1": "g".repeat(40)}}), "not a valid SHA-1 hash"),
        (
            json!({"source_name": "x", "description": "d", "hashes": {"SHA3-256": "a".repeat(63)}}),
            "not a valid SHA3-256",
        ),
        (json!({"source_name": "x", "description": "d", "hashes": {"SSDEEP": "a b"}}), "not a valid SSDEEP"),
        (json!("not an object"), "expected an external reference object"),
    ];
    for (reference, why) in rejected {
        let e = parse_err(&with_reference(reference.clone()));
        assert_eq!(e.kind(), DataErrorKind::InvalidProperty, "{reference}: {e}");
        assert!(e.message().contains(why), "{reference}: {e}");
    }
}

#[test]
fn external_references_are_written_like_stix2() {
    let out_of = |reference: Value| {
        let out = parse_stix2(&with_reference(reference)).unwrap().to_json();
        out.split_once("\"external_references\": ").unwrap().1.strip_suffix('}').unwrap().to_string()
    };
    let (sha256, md5) = ("a".repeat(64), "B".repeat(32));
    // stix2 order (source_name, description, url, hashes, external_id, then
    // custom properties), vocabulary hash names, nulls dropped.
    assert_eq!(
        out_of(
            json!({"x_custom": 1, "url": "http://u", "external_id": "E", "source_name": "s", "description": "d", "hashes": {"sha256": sha256, "md5": md5}, "a_null": null})
        ),
        format!(
            r#"[{{"source_name": "s", "description": "d", "url": "http://u", "hashes": {{"MD5": "{md5}", "SHA-256": "{sha256}"}}, "external_id": "E", "x_custom": 1}}]"#
        )
    );
    assert_eq!(out_of(json!({"source_name": "x", "url": ""})), r#"[{"source_name": "x", "url": ""}]"#);
    assert_eq!(
        out_of(json!({"source_name": "x", "description": "d", "hashes": []})),
        r#"[{"source_name": "x", "description": "d"}]"#
    );
    let ssdeep = "3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C";
    assert_eq!(
        out_of(
            json!({"source_name": "x", "external_id": "1", "hashes": {"ssdeep": ssdeep, "S-H-A-1": "c".repeat(40)}})
        ),
        format!(
            r#"[{{"source_name": "x", "hashes": {{"SHA-1": "{}", "SSDEEP": "{ssdeep}"}}, "external_id": "1"}}]"#,
            "c".repeat(40)
        )
    );
    // The serde path writes the same bytes as the fast writer.
    let obj = parse_stix2(&with_reference(json!({"url": "u", "source_name": "s"}))).unwrap();
    assert_eq!(pyjson::to_string(&obj), obj.to_json());
}
