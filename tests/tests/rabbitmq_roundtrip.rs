//! The rabbitmq backbone against a real RabbitMQ, with the real binary,
//! the real zmq app and real ZeroMQ clients
//! (as the Python original's `test_rabbitmq.py`): every message type goes through the broker, the
//! bodies on the wire are the Python ones byte for byte, two hosts share an
//! exchange, a Python host's topology is accepted, and bad bodies are
//! rejected (dead-lettered), not silently acked.

mod metrics_support;
mod zmq_support;
#[macro_use]
mod rabbitmq_support;

use rabbitmq_support::*;
use serde_json::json;
use threatbus_integration_tests::*;
use zmq_support::*;

const TAG: u32 = 0x0000_0a01;

/// Indicators and sightings published by a zmq app reach the subscriber
/// through RabbitMQ; the bus's snapshot request and an app's snapshot
/// envelope travel through the exchange too. Each body on the wire is
/// exactly what the Python backbone publishes.
#[test]
fn every_message_type_roundtrips_through_the_broker() {
    require_rabbitmq!("every_message_type_roundtrips_through_the_broker");
    let amqp = Amqp::connect();
    let setup = RmqSetup::fresh();
    amqp.declare_fanout(&setup.exchange, false);
    let mut wire = amqp.observe(&setup.exchange);
    let bus = RmqBus::start(setup);

    let a = bus.subscribe(json!(["stix2/indicator", "stix2/sighting"]), 0);
    let app = bus.publisher();
    app.sync(&[&a]);

    // Indicator and sighting.
    let ind = indicator_json(TAG, 1);
    let sig = sighting_json(TAG, 1, &indicator_id(TAG, 1));
    app.indicator(&ind);
    app.sighting(&sig);
    let got = a.recv_until(&sighting_id(TAG, 1));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].kind.as_str(), got[0].json.as_str()), ("indicator", ind.as_str()));
    assert_eq!((got[1].kind.as_str(), got[1].json.as_str()), ("sighting", sig.as_str()));
    assert_eq!(wire.recv_matching(|b| b.contains(&indicator_id(TAG, 1)) && b.contains(r#""type": "indicator""#)), ind);
    assert_eq!(wire.recv_matching(|b| b.contains(&sighting_id(TAG, 1))), sig);

    // A subscription with a snapshot: the bus's SnapshotRequest goes through
    // the broker and reaches the other zmq app.
    let b = bus.subscribe(json!("stix2/indicator"), 30);
    let req = loop {
        let d = a.recv_real();
        if d.kind == "snapshotrequest" {
            break d;
        }
    };
    let reqv = req.value();
    assert_eq!(reqv["type"], "snapshotrequest");
    assert_eq!(reqv["snapshot_type"], 1);
    assert_eq!(reqv["snapshot"], 30 * 86_400);
    let snapshot_id = reqv["snapshot_id"].as_str().expect("snapshot_id").to_string();
    let on_wire = wire.recv_matching(|b| b.contains(r#""type": "snapshotrequest""#));
    assert_eq!(on_wire, req.json, "the request on the wire is the one delivered");
    assert_eq!(
        on_wire,
        format!(
            r#"{{"type": "snapshotrequest", "snapshot_type": 1, "snapshot_id": "{snapshot_id}", "snapshot": 2592000}}"#
        )
    );

    // App A answers with an envelope; it goes through the broker and the
    // requester B receives the bare indicator.
    app.sync(&[&b]);
    let ind2 = indicator_json(TAG, 2);
    let env = format!(
        r#"{{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "{snapshot_id}", "body": {ind2}}}"#
    );
    app.send("threatbus/snapshotenvelope", &env);
    let got = b.recv_real();
    assert_eq!((got.kind.as_str(), got.json.as_str()), ("indicator", ind2.as_str()));
    assert_eq!(wire.recv_matching(|b| b.contains(r#""type": "snapshotenvelope""#)), env);
}

/// Two Rust hosts with their own queues on one exchange each deliver the
/// other's messages (fan-out replication), each exactly once.
#[test]
fn two_hosts_on_one_exchange_deliver_each_others_messages() {
    require_rabbitmq!("two_hosts_on_one_exchange_deliver_each_others_messages");
    let one = RmqSetup::fresh();
    let two = one.peer();
    let bus1 = RmqBus::start(one.clone());
    let bus2 = RmqBus::start(two.clone());
    let c1 = bus1.subscribe(json!("stix2/"), 0);
    let c2 = bus2.subscribe(json!("stix2/"), 0);
    let p1 = bus1.publisher();
    let p2 = bus2.publisher();
    // Warm-ups from each host reach the clients of both.
    p1.sync(&[&c1, &c2]);
    p2.sync(&[&c1, &c2]);

    let ind = indicator_json(TAG, 10);
    let sig = sighting_json(TAG, 11, &indicator_id(TAG, 10));
    p1.indicator(&ind);
    p2.sighting(&sig);
    for (name, c) in [("host 1", &c1), ("host 2", &c2)] {
        let mut got = Vec::new();
        while got.len() < 2 {
            got.push(c.recv_real());
        }
        got.sort_by(|x, y| x.kind.cmp(&y.kind));
        assert_eq!((got[0].kind.as_str(), got[0].json.as_str()), ("indicator", ind.as_str()), "{name}");
        assert_eq!((got[1].kind.as_str(), got[1].json.as_str()), ("sighting", sig.as_str()), "{name}");
        // Nothing more: each message once per host. A marker sent after
        // them is the next thing each client sees.
    }
    let marker = indicator_json(TAG, 12);
    p1.indicator(&marker);
    assert_eq!(c1.recv_real().json, marker);
    assert_eq!(c2.recv_real().json, marker);

    let amqp = Amqp::connect();
    assert_eq!(amqp.queue_state(&one.queue_name()).map(|s| s.1), Some(1), "host 1 consumes its own queue");
    assert_eq!(amqp.queue_state(&two.queue_name()).map(|s| s.1), Some(1), "host 2 consumes its own queue");
}

/// A Python host (played by a raw AMQP client) publishes bodies exactly as
/// `threatbus-rabbitmq` does, without properties; the bus delivers them.
#[test]
fn bodies_from_a_python_host_are_delivered() {
    require_rabbitmq!("bodies_from_a_python_host_are_delivered");
    let amqp = Amqp::connect();
    let setup = RmqSetup::fresh();
    let bus = RmqBus::start(setup.clone());
    let c = bus.subscribe(json!(["stix2/indicator", "stix2/sighting"]), 0);
    let app = bus.publisher();
    app.sync(&[&c]);
    let other = bus.subscribe(json!("stix2/indicator"), 0);
    app.sync(&[&other]);

    // The Python bus's documented example objects, as pika publishes them.
    let bodies = [
        r#"{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[domain-name:value = 'example.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z", "x_threatbus_update": "REMOVE"}"#,
        r#"{"type": "sighting", "spec_version": "2.1", "id": "sighting--6f0c2c3e-3b9a-4f3c-9f7e-2c1b8a2f0d11", "created": "2021-05-03T10:00:01.123Z", "modified": "2021-05-03T10:00:01.123Z", "last_seen": "2021-05-03T10:00:00.5Z", "sighting_of_ref": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "x_threatbus_sighting_context": {"noisy": false}}"#,
    ];
    for b in bodies {
        amqp.publish(&setup.exchange, b.as_bytes());
    }
    for b in bodies {
        let d = c.recv_real();
        assert_eq!(d.json, b, "delivered byte for byte");
    }

    // A snapshot request from another host reaches this host's zmq apps.
    let req = r#"{"type": "snapshotrequest", "snapshot_type": 1, "snapshot_id": "c8d3cd0c-3a49-4b9f-a1bb-1b0e2d4b6a10", "snapshot": 3600}"#;
    amqp.publish(&setup.exchange, req.as_bytes());
    let d = loop {
        let d = c.recv_real();
        if d.kind == "snapshotrequest" {
            break d;
        }
    };
    assert_eq!(d.json, req);
}

/// What the bus declares is what pika declares: a non-durable fanout
/// exchange and the queue with the Python arguments, so Python hosts can
/// join the same exchange, and a queue declared by a Python host first is
/// used as it is.
#[test]
fn topology_is_the_python_one() {
    require_rabbitmq!("topology_is_the_python_one");
    let amqp = Amqp::connect();
    let mut setup = RmqSetup::fresh();
    setup.durable = false;
    setup.queue_extra = "lazy: false\nmax_items: 10".into();
    let bus = RmqBus::start(setup.clone());

    let exchanges =
        rabbitmqctl(&["list_exchanges", "-q", "--no-table-headers", "name", "type", "durable", "auto_delete"]);
    let line = exchanges.lines().find(|l| l.split('\t').next() == Some(setup.exchange.as_str()));
    assert_eq!(line, Some(format!("{}\tfanout\tfalse\tfalse", setup.exchange).as_str()), "{exchanges}");
    let queues = rabbitmqctl(&[
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "durable",
        "auto_delete",
        "exclusive",
        "arguments",
    ]);
    let line = queues.lines().find(|l| l.split('\t').next() == Some(setup.queue_name().as_str())).unwrap_or_default();
    let cols: Vec<&str> = line.split('\t').collect();
    assert_eq!(cols.get(1..4), Some(&["false", "true", "false"][..]), "{queues}");
    let args = cols.get(4).copied().unwrap_or_default();
    assert!(args.contains("x-queue-mode") && args.contains("default"), "{args}");
    assert!(args.contains("x-max-length") && args.contains("10"), "{args}");

    // A Python host declares the same exchange with pika's defaults: no
    // PRECONDITION_FAILED (the helper panics on any error).
    amqp.declare_fanout(&setup.exchange, false);
    drop(bus);

    // A Python host created the queue first (pika: `I` integer argument):
    // the bus uses it as it is.
    let mut py = RmqSetup::fresh();
    py.durable = true;
    py.queue_extra = "max_items: 1000".into();
    amqp.declare_fanout(&py.exchange, false);
    amqp.declare_python_queue(&py.queue_name(), true, false, "lazy", 1000);
    let mut bus = RmqBus::start(py.clone());
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    let app = bus.publisher();
    app.sync(&[&c]);
    let log = bus.bus.log();
    assert!(!log.contains("cannot declare"), "{log}");
    bus.bus.terminate();
    amqp.delete_queue(&py.queue_name());
    amqp.delete_exchange(&py.exchange);
    amqp.delete_exchange(&setup.exchange);
}

/// Bodies that are not Threat Bus messages, published straight to the
/// exchange, are logged and rejected without requeue (so a dead-letter
/// exchange receives them); the bus keeps working.
#[test]
fn bad_bodies_are_rejected_with_a_log_line() {
    require_rabbitmq!("bad_bodies_are_rejected_with_a_log_line");
    let bad: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        br#"{"type": "foo"}"#.to_vec(),
        br#"{"no": "type"}"#.to_vec(),
        vec![0xff, 0xfe, b'{'],
        br#"{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[ipv4-addr:value = ", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}"#.to_vec(),
        br#"{"type": "sighting", "spec_version": "2.1"}"#.to_vec(),
        b"".to_vec(),
    ];
    assert_bad_bodies_dead_lettered(&bad, TAG);
}

/// SIGTERM closes both AMQP connections cleanly (the broker sees no
/// connection of the bus afterwards, and the bus exits 0 with its final
/// counters logged).
#[test]
fn sigterm_closes_the_connections() {
    require_rabbitmq!("sigterm_closes_the_connections");
    let setup = RmqSetup::fresh();
    let mut bus = RmqBus::start(setup.clone());
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    let app = bus.publisher();
    app.sync(&[&c]);
    let names = || rabbitmqctl(&["list_connections", "-q", "--no-table-headers", "client_properties"]);
    let before = names();
    assert_eq!(before.matches(&setup.queue_name()).count(), 2, "publisher and consumer connections: {before}");
    let st = bus.bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.bus.log());
    let log = bus.bus.log();
    assert!(log.contains("RabbitMQ publisher: connection closed"), "{log}");
    assert!(log.contains("RabbitMQ consumer: connection closed"), "{log}");
    assert!(log.contains("RabbitMQ backbone stopped"), "{log}");
    // The broker forgets both connections (it does so right after
    // close-ok; wait for its bookkeeping, bounded).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let after = names();
        if after.matches(&setup.queue_name()).count() == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "connections still open: {after}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// With a 1-second heartbeat, idle connections stay up: the broker would
/// close a connection that sent nothing for two intervals (the Python
/// publisher's quirk), so the bus must keep sending heartbeats on its own.
#[test]
fn idle_connections_survive_short_heartbeats() {
    require_rabbitmq!("idle_connections_survive_short_heartbeats");
    let mut setup = RmqSetup::fresh();
    setup.extra = "heartbeat: 1".into();
    let mut bus = RmqBus::start(setup.clone());
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    let app = bus.publisher();
    app.sync(&[&c]);
    // Idle for five heartbeat intervals (two missed ones close a connection).
    std::thread::sleep(std::time::Duration::from_secs(5));
    let ind = indicator_json(TAG, 30);
    app.indicator(&ind);
    assert_eq!(c.recv_real().json, ind);
    let conns = rabbitmqctl(&["list_connections", "-q", "--no-table-headers", "client_properties", "timeout"]);
    let ours: Vec<&str> = conns.lines().filter(|l| l.contains(&setup.queue_name())).collect();
    assert_eq!(ours.len(), 2, "{conns}");
    assert!(ours.iter().all(|l| l.trim_end().ends_with("\t1")), "heartbeat negotiated to 1 s: {conns}");
    let st = bus.bus.terminate();
    assert!(st.success());
    let log = bus.bus.log();
    assert!(!log.contains("connection lost") && !log.contains("connection failed"), "{log}");
    assert_eq!(log.matches("RabbitMQ publisher: connected").count(), 1, "{log}");
}

/// `exclusive: true`: the queue belongs to the consumer's connection (the
/// publisher does not declare it), messages still flow, and the broker
/// deletes the queue when the bus closes its connection.
#[test]
fn exclusive_queue_works_and_goes_away() {
    require_rabbitmq!("exclusive_queue_works_and_goes_away");
    let mut setup = RmqSetup::fresh();
    setup.queue_extra = "exclusive: true\nmax_items: 100".into();
    let mut bus = RmqBus::start(setup.clone());
    let c = bus.subscribe(json!("stix2/sighting"), 0);
    let app = bus.publisher();
    app.sync(&[&c]);
    let sig = sighting_json(TAG, 40, &indicator_id(TAG, 40));
    app.sighting(&sig);
    assert_eq!(c.recv_until(&sighting_id(TAG, 40)).last().map(|d| d.json.clone()), Some(sig));
    // (A passive declare from another connection is refused for an
    // exclusive queue: ask rabbitmqctl.)
    let queues = || rabbitmqctl(&["list_queues", "-q", "--no-table-headers", "name", "exclusive", "consumers"]);
    let line = format!("{}\ttrue\t1", setup.queue_name());
    let before = queues();
    assert!(before.lines().any(|l| l.trim_end() == line), "{before}");
    assert!(bus.bus.terminate().success());
    // Deleted with its connection (the broker's bookkeeping may trail the
    // close-ok a little; bounded wait).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let after = queues();
        if !after.contains(&setup.queue_name()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "exclusive queue still there: {after}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Amqp::connect().delete_exchange(&setup.exchange);
}

/// The round trips through the broker are counted, exactly: what the zmq
/// app accepted, what the backbone took, published, had confirmed and
/// consumed back, and what reached the subscriber's queue.
#[test]
fn round_trips_are_counted_in_the_metrics() {
    require_rabbitmq!("round_trips_are_counted_in_the_metrics");
    let mut setup = RmqSetup::fresh();
    setup.metrics = true;
    let mut bus = RmqBus::start(setup);
    let addr = metrics_support::metrics_addr(&mut bus.bus);
    let reply =
        request_raw(bus.ports.manage, &[br#"{"action": "subscribe", "topic": "stix2/indicator", "snapshot": 0}"#]);
    assert!(reply.contains("success"), "{reply}");
    let publisher = metrics_support::XPublisher::connect(zctx(), bus.ports.sub_port);
    for n in 0..7 {
        publisher.send(&format!("stix2/indicator {}", indicator_json(TAG, 100 + n)));
    }
    let (rmq, zmq) = (("plugin", "rabbitmq"), ("plugin", "zmq"));
    let ind = ("topic", "stix2/indicator");
    let s = metrics_support::scrape_until(&addr, "7 indicators through the broker", |s| {
        s.count("threatbus_messages_delivered_total", &[zmq, ind]) == 7
            && s.count("threatbus_rabbitmq_confirmed_total", &[rmq]) == 7
    });
    assert_eq!(s.count("threatbus_messages_accepted_total", &[zmq, ind]), 7, "{}", s.text);
    for (name, want) in [
        ("threatbus_rabbitmq_taken_total", 7),
        ("threatbus_rabbitmq_published_total", 7),
        ("threatbus_rabbitmq_republished_total", 0),
        ("threatbus_rabbitmq_consumed_total", 7),
        ("threatbus_rabbitmq_rejected_total", 0),
        ("threatbus_rabbitmq_connects_total", 2),
        ("threatbus_rabbitmq_reconnects_total", 0),
    ] {
        assert_eq!(s.count(name, &[rmq]), want, "{name}:\n{}", s.text);
    }
    assert_eq!(
        s.count("threatbus_messages_received_total", &[rmq, ind]),
        7,
        "validated again on the way back:\n{}",
        s.text
    );
    metrics_support::promtool_check(&s.text);
    println!("7 indicators through RabbitMQ: accepted, taken, published, confirmed, consumed and delivered 7 each");
}
