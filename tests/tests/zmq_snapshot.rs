//! Snapshots between two zmq apps through the real bus:
//! app A subscribes with a snapshot, app B gets the request and answers
//! with an envelope, A receives the body as ordinary data, B does not.

mod zmq_support;

use serde_json::json;
use zmq_support::*;

const TAG: u32 = 0x5a5a_0001;

#[test]
fn snapshot_request_and_envelope_between_two_apps() {
    let mut bus = ZmqBus::start();
    let b = bus.subscribe(json!("stix2/indicator"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&b]);

    // A asks for the indicators of the last 3 days.
    let a = bus.subscribe(json!(["stix2/indicator"]), 3);
    let req = b.recv_real();
    assert_eq!(req.kind, "snapshotrequest");
    let r = req.value();
    assert_eq!(r["type"], "snapshotrequest");
    assert_eq!(r["snapshot_type"], 1);
    assert_eq!(r["snapshot"], 3 * 86_400);
    let snapshot_id = r["snapshot_id"].as_str().expect("snapshot_id").to_string();
    // Key order and separators of the original's SnapshotRequestEncoder.
    assert_eq!(
        req.json,
        format!(
            r#"{{"type": "snapshotrequest", "snapshot_type": 1, "snapshot_id": "{snapshot_id}", "snapshot": 259200}}"#
        )
    );
    bus.bus.wait_for("Requesting snapshot from all plugins for message type");

    // A is connected before B answers.
    publisher.sync(&[&a]);
    let body = indicator_json(TAG, 7);
    let envelope = format!(
        r#"{{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "{snapshot_id}", "body": {body}}}"#
    );
    publisher.send("threatbus/snapshotenvelope", &envelope);

    let got = a.recv_real();
    assert_eq!(got.kind, "indicator");
    assert_eq!(got.value(), json(&body));

    // Only A got the body, and A never got a snapshot request (its own).
    let end = indicator_json(TAG, 99);
    publisher.indicator(&end);
    let rest_b = b.recv_until(&indicator_id(TAG, 99));
    assert_eq!(rest_b.len(), 1, "B got more than the sentinel: {rest_b:?}");
    // A's subscription buffers from the moment it is made, so A's stream
    // holds everything ever sent to it: had A been sent its own snapshot
    // request, `got` above would have been that request.
    let rest_a = a.recv_until(&indicator_id(TAG, 99));
    assert_eq!(rest_a.len(), 1, "A got more than the sentinel: {rest_a:?}");
}

#[test]
fn topic_list_with_snapshot_requests_each_type_once() {
    let bus = ZmqBus::start();
    let b = bus.subscribe(json!("stix2/indicator"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&b]);
    // Numeric strings are accepted as days, as by the original.
    let r = bus.request(r#"{"action": "subscribe", "topic": ["stix2/indicator", "stix2/sighting"], "snapshot": "1"}"#);
    assert_eq!(r["status"], "success", "{r}");
    let mut types: Vec<u64> = (0..2)
        .map(|_| {
            let d = b.recv_real();
            assert_eq!(d.kind, "snapshotrequest", "{d:?}");
            d.value()["snapshot_type"].as_u64().unwrap()
        })
        .collect();
    types.sort();
    assert_eq!(types, vec![1, 2]);
}

#[test]
fn subscribing_without_snapshot_requests_nothing() {
    let bus = ZmqBus::start();
    let b = bus.subscribe(json!("stix2/indicator"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&b]);
    let _a = bus.subscribe(json!("stix2/indicator"), 0);
    publisher.indicator(&indicator_json(TAG, 1));
    let got = b.recv_until(&indicator_id(TAG, 1));
    assert_eq!(got.len(), 1, "{got:?}");
}
