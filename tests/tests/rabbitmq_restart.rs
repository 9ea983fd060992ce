//! Broker restart in the middle of a stream: with a durable queue, a
//! durable exchange and persistent messages, not one of 10,000 indicators
//! is lost (publisher confirms + republish, reconnect with backoff).
//!
//! At the restart, indicators are in every stage: delivered, waiting in the
//! durable queue, published but unconfirmed (a memory alarm keeps the
//! broker from reading the publisher's connection, so the restart drops
//! them on the floor), and still in the bus's inbound queue.
//!
//! Alone in its own test binary because it stops the broker (cargo runs
//! test binaries one after the other).

mod zmq_support;
#[macro_use]
mod rabbitmq_support;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use rabbitmq_support::*;
use serde_json::json;
use zmq_support::*;

const TAG: u32 = 0x0000_0b02;
const N: u64 = 10_000;
/// Indicators sent before the restart; the rest are sent while the broker
/// is alarmed and restarted, so that some are in flight (taken from inq but
/// not confirmed) when the connection drops.
const FIRST: u64 = 3_000;
/// Distinct indicators received before the broker is restarted.
const RESTART_AT: usize = 2_000;

#[test]
fn broker_restart_mid_stream_loses_no_indicator() {
    require_rabbitmq!("broker_restart_mid_stream_loses_no_indicator");
    let amqp = Amqp::connect();
    let mut setup = RmqSetup::fresh();
    setup.durable = true;
    setup.extra = "exchange_durable: true\npersistent: true".into();
    let mut bus = RmqBus::start(setup.clone());
    let client = bus.subscribe(json!("stix2/indicator"), 0);
    let app = bus.publisher();
    app.sync(&[&client]);

    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let sender = std::thread::spawn(move || {
        for n in 0..N {
            if n == FIRST {
                go_rx.recv().expect("restart signal");
            }
            app.indicator(&indicator_json(TAG, n));
        }
        app // keep the socket (and its linger) alive until joined
    });

    let want: HashSet<String> = (0..N).map(|n| indicator_id(TAG, n)).collect();
    let mut seen = HashSet::new();
    let mut duplicates = 0usize;
    let mut restarted_at = None;
    while seen.len() < want.len() {
        let d = client.recv_real();
        let id = d.id();
        assert!(want.contains(&id), "unexpected message {}", d.json);
        if !seen.insert(id) {
            duplicates += 1;
        }
        if restarted_at.is_none() && seen.len() >= RESTART_AT {
            restarted_at = Some(seen.len());
            // The broker stops reading publishing connections...
            let alarm = MemoryAlarm::raise();
            go.send(()).expect("sender alive");
            // ...so once the bus published into it, those messages are
            // unconfirmed...
            wait_until_publisher_blocked(&setup.queue_name());
            // ...and stop_app drops them with every connection; start_app
            // recovers the durable queue, exchange and binding.
            rabbitmqctl(&["stop_app"]);
            rabbitmqctl(&["start_app"]);
            drop(alarm);
            rabbitmqctl(&["await_startup"]);
        }
    }
    let _app = sender.join().expect("sender thread");
    let restarted_at = restarted_at.expect("broker was restarted");
    assert!(restarted_at < N as usize, "the restart happened mid-stream");
    eprintln!(
        "broker restarted after {restarted_at} of {N} indicators; all {N} arrived ({duplicates} duplicates, \
         at-least-once)"
    );

    // Both connections noticed and came back, and the publisher published
    // what had not been confirmed again.
    bus.bus.wait_for("RabbitMQ publisher: connection lost");
    bus.bus.wait_for("RabbitMQ consumer: reconnected");
    let log = bus.bus.log();
    let again: usize = log
        .lines()
        .filter_map(|l| l.split("; ").find_map(|p| p.strip_suffix(" unconfirmed messages will be published again")))
        .map(|n| n.parse::<usize>().expect("a count"))
        .sum();
    assert!(again > 0, "some messages were in flight at the restart:\n{log}");
    eprintln!("{again} messages were unconfirmed when the connection dropped");
    let st = bus.bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.bus.log());
    let log = bus.bus.log();
    assert!(log.contains("RabbitMQ backbone stopped"), "{log}");
    eprintln!("{}", log.lines().filter(|l| l.contains("RabbitMQ")).collect::<Vec<_>>().join("\n"));
    amqp.delete_queue(&setup.queue_name());
    amqp.delete_exchange(&setup.exchange);
}

/// A memory alarm on the broker: it blocks connections that publish.
/// Cleared on drop, also when the test fails.
struct MemoryAlarm;

impl MemoryAlarm {
    fn raise() -> MemoryAlarm {
        rabbitmqctl(&["set_vm_memory_high_watermark", "0.0000001"]);
        MemoryAlarm
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["set_vm_memory_high_watermark", "0.4"]).output();
    }
}

/// Waits until the broker reports the bus's publisher connection as
/// `blocked`: it published while the alarm was on.
fn wait_until_publisher_blocked(queue: &str) {
    let name = format!("threatbus publisher ({queue})");
    let deadline = Instant::now() + threatbus_integration_tests::WAIT;
    loop {
        let out = rabbitmqctl(&["list_connections", "-q", "--no-table-headers", "client_properties", "state"]);
        if out.lines().any(|l| l.contains(&name) && l.trim_end().ends_with("\tblocked")) {
            return;
        }
        assert!(Instant::now() < deadline, "the publisher connection was not blocked:\n{out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
