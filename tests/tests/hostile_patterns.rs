//! Deeply nested STIX patterns against the real bus: over zmq (as an
//! indicator and inside a snapshot envelope) and as an AMQP body published
//! straight to the rabbitmq backbone's exchange. Each is rejected, the bus
//! stays up and keeps routing, and the AMQP body is rejected once
//! (dead-lettered), not redelivered.

mod zmq_support;
#[macro_use]
mod rabbitmq_support;

use rabbitmq_support::*;
use serde_json::json;
use zmq_support::*;

const TAG: u32 = 0x0000_0d0d;

/// The attack patterns of one nesting depth, each with whether `stix2`
/// accepts it (only the shallow, well-formed ones).
fn attack_patterns(levels: usize) -> Vec<(String, bool)> {
    let open = "(".repeat(levels);
    let close = ")".repeat(levels);
    let shallow = levels <= 100;
    vec![
        (format!("[ipv4-addr:value = '10.0.0.1'] AND {open}[ipv4-addr:value = '10.0.0.2']{close}"), shallow),
        (format!("[{open}ipv4-addr:value = '10.0.0.1'{close}]"), shallow),
        (format!("({open}[ipv4-addr:value = '10.0.0.1']"), false),
        (format!("[ipv4-addr:value = '10.0.0.1']{}", " REPEATS 5 TIMES".repeat(levels)), false),
    ]
}

/// Indicator `n` with its pattern replaced.
fn indicator_with_pattern(n: u64, pattern: &str) -> String {
    let mut v = json(&indicator_json(TAG, n));
    v["pattern"] = json!(pattern);
    v.to_string()
}

#[test]
fn nested_patterns_over_zmq_are_rejected_and_the_bus_keeps_routing() {
    // The deepest patterns make frames of over 1 MiB, the default bound of
    // the sub port; raise it so that they reach the validator.
    let mut bus = ZmqBus::start_with(Ports::ANY, "max_frame_size: 16777216");
    let app = bus.subscribe(json!("stix2/indicator"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&app]);

    let mut n = 0;
    let mut want_delivered = Vec::new();
    for levels in [10, 1_000, 100_000] {
        for (pattern, accepted) in attack_patterns(levels) {
            n += 1;
            publisher.indicator(&indicator_with_pattern(n, &pattern));
            if accepted {
                want_delivered.push(indicator_id(TAG, n));
            }
            // The same object inside a snapshot envelope.
            n += 1;
            let envelope = format!(
                r#"{{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "x", "body": {}}}"#,
                indicator_with_pattern(n, &pattern)
            );
            publisher.send("threatbus/snapshotenvelope", &envelope);
        }
    }
    let last = indicator_json(TAG, 9_999);
    publisher.indicator(&last);
    want_delivered.push(indicator_id(TAG, 9_999));

    let got: Vec<String> = app.recv_until(&indicator_id(TAG, 9_999)).iter().map(|d| d.id()).collect();
    assert_eq!(got, want_delivered, "only the valid shallow patterns and the last indicator are delivered");
    println!("{n} hostile frames sent; the bus delivered the {} valid ones and is still routing", got.len());

    // Still routing, and it stops cleanly (no crash, exit 0).
    publisher.indicator(&indicator_json(TAG, 10_000));
    assert_eq!(app.recv_real().id(), indicator_id(TAG, 10_000));
    let status = bus.bus.terminate();
    assert!(status.success(), "bus exited with {status}");
}

#[test]
fn nested_patterns_over_amqp_are_rejected_once_and_not_redelivered() {
    require_rabbitmq!("nested_patterns_over_amqp_are_rejected_once_and_not_redelivered");
    let mut bad = Vec::new();
    for levels in [1_000, 100_000] {
        for (i, (pattern, _)) in attack_patterns(levels).into_iter().enumerate() {
            bad.push(indicator_with_pattern((levels + i) as u64, &pattern).into_bytes());
        }
    }
    assert_bad_bodies_dead_lettered(&bad, TAG);
    println!("{} hostile AMQP bodies dead-lettered once each; the bus kept routing", bad.len());
}
