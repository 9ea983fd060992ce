//! Broker restart in the middle of a stream: with a durable queue, a
//! durable exchange and persistent messages, not one of 10,000 indicators
//! is lost (publisher confirms + republish, reconnect with backoff).
//!
//! At the restart, indicators are in every stage: delivered, waiting in the
//! durable queue, published but unconfirmed (a memory alarm keeps the
//! broker from reading the publisher's connection, so the restart drops
//! them on the floor), and still in the bus's inbound queue.
//!
//! In their own test binary because they stop the broker (cargo runs test
//! binaries one after the other); a lock keeps the two tests apart.

mod metrics_support;
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

/// The tests of this file stop the broker: one at a time.
fn broker_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn broker_restart_mid_stream_loses_no_indicator() {
    require_rabbitmq!("broker_restart_mid_stream_loses_no_indicator");
    let _lock = broker_lock();
    let amqp = Amqp::connect();
    let mut setup = RmqSetup::fresh();
    setup.durable = true;
    setup.extra = "exchange_durable: true\npersistent: true".into();
    setup.metrics = true;
    let mut bus = RmqBus::start(setup.clone());
    let metrics = metrics_support::metrics_addr(&mut bus.bus);
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
    // The backbone's own counters tell the same story: every message taken
    // was confirmed once, the unconfirmed ones were published again, and
    // both connections reconnected.
    let rmq = [("plugin", "rabbitmq")];
    let taken = |s: &metrics_support::Scrape| s.count("threatbus_rabbitmq_taken_total", &rmq);
    let s = metrics_support::scrape_until(&metrics, "every taken message confirmed", |s| {
        taken(s) > 0 && s.count("threatbus_rabbitmq_confirmed_total", &rmq) == taken(s)
    });
    let republished = s.count("threatbus_rabbitmq_republished_total", &rmq);
    assert!(republished as usize >= again, "{republished} republished, {again} unconfirmed:\n{}", s.text);
    assert_eq!(s.count("threatbus_rabbitmq_published_total", &rmq), taken(&s) + republished, "{}", s.text);
    assert!(s.count("threatbus_rabbitmq_reconnects_total", &rmq) >= 2, "{}", s.text);
    assert!(s.count("threatbus_rabbitmq_connects_total", &rmq) >= 4, "{}", s.text);
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

/// Started while the broker is down, the bus keeps what its apps send and
/// publishes it once the broker is there; stopped while the broker is down,
/// it still exits within its time budget.
#[test]
fn bus_started_before_the_broker_delivers_once_it_is_up() {
    require_rabbitmq!("bus_started_before_the_broker_delivers_once_it_is_up");
    let _lock = broker_lock();
    let setup = RmqSetup::fresh();
    let down = BrokerDown::stop();
    let mut bus = RmqBus::start_no_wait(setup.clone());
    bus.bus.wait_for(&format!("RabbitMQ publisher: connection to amqp://127.0.0.1:{AMQP_PORT}/ failed to open"));
    // The zmq side works without the broker; what the app sends waits in
    // the bus (nothing is delivered: local delivery goes through RabbitMQ).
    let client = bus.subscribe(json!("stix2/indicator"), 0);
    let app = bus.publisher();
    let first = indicator_json(TAG, 1_000_001);
    // The PUB socket connects asynchronously and drops what it sends
    // before: send the same indicator for a second (the copies that made
    // it wait in the bus; duplicates are fine). None is delivered.
    for _ in 0..20 {
        app.indicator(&first);
        assert!(client.try_recv(Duration::from_millis(50)).is_none(), "delivered without a broker");
    }
    drop(down);
    bus.bus.wait_for("RabbitMQ consumer: reconnected");
    bus.bus.wait_for("RabbitMQ publisher: reconnected");
    // Sync (warm-ups) proves the zmq connections; the first indicator was
    // accepted before and must arrive too.
    app.sync(&[&client]);
    let got = client.recv_until(&indicator_id(TAG, 1_000_001));
    assert_eq!(got.last().map(|d| d.json.clone()), Some(first));

    // Broker gone again: SIGTERM still ends the bus within its budget,
    // and it says what it could not publish.
    let _down = BrokerDown::stop();
    app.indicator(&indicator_json(TAG, 1_000_002));
    let st = bus.bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.bus.log());
    let log = bus.bus.log();
    assert!(log.contains("RabbitMQ backbone stopped"), "{log}");
    eprintln!("{}", log.lines().filter(|l| l.contains("RabbitMQ")).collect::<Vec<_>>().join("\n"));
    drop(_down);
    Amqp::connect().delete_exchange(&setup.exchange);
}

/// `rabbitmqctl stop_app` until dropped (then `start_app`), also when the
/// test fails.
struct BrokerDown;

impl BrokerDown {
    fn stop() -> BrokerDown {
        rabbitmqctl(&["stop_app"]);
        BrokerDown
    }
}

impl Drop for BrokerDown {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
        let _ = Command::new("rabbitmqctl").arg("await_startup").output();
    }
}
