//! Messages through the real bus: app PUB → zmq SUB → inq → inmem →
//! subscriber queue → zmq PUB → app SUB
//! (as the Python original's `test_zmq_app_message_roundtrips.py`).

mod zmq_support;

use serde_json::json;
use zmq_support::*;

const TAG: u32 = 0x1234_5678;

#[test]
fn indicator_and_sighting_roundtrip_in_order() {
    // As the original's test: one subscription to a topic list, an
    // indicator and a sighting come back in order, equal after parsing.
    let bus = ZmqBus::start();
    let app = bus.subscribe(json!(["stix2/indicator", "stix2/sighting"]), 100);
    let publisher = bus.publisher();
    publisher.sync(&[&app]);

    let ind = indicator_json(TAG, 1);
    let sig = sighting_json(TAG, 2, &indicator_id(TAG, 1));
    publisher.indicator(&ind);
    publisher.sighting(&sig);
    let first = app.recv_real();
    assert_eq!(first.kind, "indicator");
    assert_eq!(first.value(), json(&ind));
    let second = app.recv_real();
    assert_eq!(second.kind, "sighting");
    assert_eq!(second.value(), json(&sig));
}

#[test]
fn output_is_python_stix2_serialization() {
    // Input in another layout (compact, keys shuffled); apps get exactly
    // what Python's stix2 `serialize()` emits.
    let bus = ZmqBus::start();
    let app = bus.subscribe(json!("stix2/indicator"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&app]);
    publisher.indicator(
        r#"{"valid_from":"2021-04-20T07:38:22.53Z","pattern_version":"2.1","pattern_type":"stix","pattern":"[domain-name:value = 'example.com']","modified":"2021-04-20T07:38:22.530Z","created":"2021-04-20T07:38:22.530Z","id":"indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb","spec_version":"2.1","type":"indicator"}"#,
    );
    let d = app.recv_real();
    assert_eq!(d.kind, "indicator");
    assert_eq!(
        d.json,
        r#"{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[domain-name:value = 'example.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}"#
    );
}

#[test]
fn several_subscribers_get_what_they_subscribed() {
    let bus = ZmqBus::start();
    let both = bus.subscribe(json!(["stix2/indicator", "stix2/sighting"]), 0);
    let indicators = bus.subscribe(json!("stix2/indicator"), 0);
    let sightings = bus.subscribe(json!(["stix2/sighting"]), 0);
    let all = bus.subscribe(json!("stix2/"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&both, &indicators, &sightings, &all]);

    let ind: Vec<String> = (10..15).map(|n| indicator_json(TAG, n)).collect();
    let sig: Vec<String> = (20..25).map(|n| sighting_json(TAG, n, &indicator_id(TAG, n - 10))).collect();
    for (i, s) in ind.iter().zip(&sig) {
        publisher.indicator(i);
        publisher.sighting(s);
    }
    // Sentinels mark the end of the stream for each kind.
    let end_ind = indicator_json(TAG, 99);
    let end_sig = sighting_json(TAG, 99, &indicator_id(TAG, 99));
    publisher.indicator(&end_ind);
    publisher.sighting(&end_sig);

    let interleaved: Vec<serde_json::Value> = ind.iter().zip(&sig).flat_map(|(i, s)| [json(i), json(s)]).collect();
    for c in [&both, &all] {
        let got: Vec<_> = c.recv_until(&sighting_id(TAG, 99)).iter().map(|d| d.value()).collect();
        let mut want = interleaved.clone();
        want.push(json(&end_ind));
        want.push(json(&end_sig));
        assert_eq!(got, want);
    }
    let got: Vec<_> =
        indicators.recv_until(&indicator_id(TAG, 99)).iter().map(|d| (d.kind.clone(), d.value())).collect();
    let mut want: Vec<_> = ind.iter().map(|i| ("indicator".to_string(), json(i))).collect();
    want.push(("indicator".into(), json(&end_ind)));
    assert_eq!(got, want);
    let got: Vec<_> = sightings.recv_until(&sighting_id(TAG, 99)).iter().map(|d| (d.kind.clone(), d.value())).collect();
    let mut want: Vec<_> = sig.iter().map(|s| ("sighting".to_string(), json(s))).collect();
    want.push(("sighting".into(), json(&end_sig)));
    assert_eq!(got, want);
}

#[test]
fn unsubscribed_apps_get_nothing_more() {
    let bus = ZmqBus::start();
    let stays = bus.subscribe(json!("stix2/indicator"), 0);
    let leaves = bus.subscribe(json!("stix2/indicator"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&stays, &leaves]);
    let unsub = json!({"action": "unsubscribe", "topic": leaves.p2p}).to_string();
    assert_eq!(bus.status(&unsub), "success");
    publisher.indicator(&indicator_json(TAG, 1));
    let got = stays.recv_until(&indicator_id(TAG, 1));
    assert_eq!(got.len(), 1);
    // Everything `leaves` still gets was published before it unsubscribed.
    while let Some(d) = leaves.try_recv(std::time::Duration::ZERO) {
        assert!(d.is_warmup(), "delivered after unsubscribe: {d:?}");
    }
}

#[test]
fn garbage_frames_are_dropped_and_never_resent() {
    let mut bus = ZmqBus::start();
    let app = bus.subscribe(json!(["stix2/indicator", "stix2/sighting"]), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&app]);

    let first = indicator_json(TAG, 1);
    publisher.indicator(&first);
    // The original re-sent the previous object for this topic.
    publisher.send("threatbus/snapshotenvelopeX", &first);
    publisher.send_raw(b"stix2/indicator");
    publisher.send_raw(b"stix2/indicator not json");
    publisher.send_raw(b"stix2/indicator {\"type\": \"indicator\"}");
    publisher.send_raw(&[b's', b't', b'i', b'x', b'2', b'/', 0xff, b' ', b'{', b'}']);
    // Topic and object type disagree (the original did not check).
    publisher.sighting(&indicator_json(TAG, 2));
    publisher.indicator(&sighting_json(TAG, 3, &indicator_id(TAG, 1)));
    publisher.send("stix2/malware", &indicator_json(TAG, 4));
    // An invalid STIX pattern.
    publisher.indicator(&indicator_json(TAG, 5).replace("']\"", "'\""));
    // A multipart message, even if each part looks fine.
    publisher.sock.send_multipart(["stix2/indicator", &indicator_json(TAG, 6)], 0).unwrap();
    publisher.sock.send_multipart([format!("stix2/indicator {}", indicator_json(TAG, 7)).as_str(), "x"], 0).unwrap();
    // A snapshot envelope for an unknown snapshot goes nowhere.
    publisher.send(
        "threatbus/snapshotenvelope",
        &format!(r#"{{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "nope", "body": {first}}}"#),
    );
    let last = indicator_json(TAG, 8);
    publisher.indicator(&last);

    let got = app.recv_until(&indicator_id(TAG, 8));
    let ids: Vec<String> = got.iter().map(|d| d.id()).collect();
    assert_eq!(ids, vec![indicator_id(TAG, 1), indicator_id(TAG, 8)]);
    assert_eq!(got[1].value(), json(&last));
    bus.bus.wait_for("Error decoding message");
    let log = bus.bus.log();
    for reason in
        ["unsupported topic 'threatbus/snapshotenvelopeX'", "no space between topic and JSON", "not UTF-8", "multipart"]
    {
        assert!(log.contains(reason), "no log line about {reason:?}:\n{log}");
    }
}

#[test]
fn many_indicators_arrive_complete_and_in_order() {
    let bus = ZmqBus::start();
    let a = bus.subscribe(json!("stix2/indicator"), 0);
    let b = bus.subscribe(json!("stix2/"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&a, &b]);
    let n = 5_000u64;
    for i in 0..n {
        publisher.indicator(&indicator_json(TAG, i));
    }
    for c in [&a, &b] {
        let got = c.recv_until(&indicator_id(TAG, n - 1));
        let ids: Vec<String> = got.iter().map(|d| d.id()).collect();
        let want: Vec<String> = (0..n).map(|i| indicator_id(TAG, i)).collect();
        assert_eq!(ids, want);
    }
}
