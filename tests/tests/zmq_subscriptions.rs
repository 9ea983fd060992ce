//! Subscriptions on the zmq app's pub port, through the real bus: nobody
//! reads another app's traffic, caps answer `error`, idle subscriptions
//! expire, and every message a subscription loses is counted.

mod zmq_support;

use std::time::Duration;

use serde_json::json;
use zmq_support::*;

const TAG: u32 = 0x5b5b_0001;

/// A SUB socket on the pub port with the given subscriptions, as an
/// attacker (or a misconfigured app) would open it.
fn raw_sub(pub_port: u16, prefixes: &[&[u8]]) -> zmq::Socket {
    let s = zctx().socket(zmq::SUB).unwrap();
    s.set_linger(0).unwrap();
    s.connect(&format!("tcp://127.0.0.1:{pub_port}")).unwrap();
    for p in prefixes {
        s.set_subscribe(p).unwrap();
    }
    s
}

#[test]
fn nobody_reads_another_subscribers_traffic() {
    let mut bus = ZmqBus::start();
    let a = bus.subscribe(json!("stix2/indicator"), 0);
    // The spy subscribes to everything, to a prefix of A's topic, and to
    // its own p2p topic C, all on one connection.
    let c = bus.request(r#"{"action": "subscribe", "topic": "stix2/indicator"}"#);
    let c_p2p = c["topic"].as_str().unwrap().to_string();
    let spy = raw_sub(bus.ports.pub_port, &[b"", &a.p2p.as_bytes()[..4], b"stix2", c_p2p.as_bytes()]);
    let spy_as_c = Client { p2p: c_p2p.clone(), sub: spy };
    bus.bus.wait_for("refused a subscription to");
    let publisher = bus.publisher();
    publisher.sync(&[&a, &spy_as_c]);
    for n in 0..50 {
        publisher.indicator(&indicator_json(TAG, n));
    }
    publisher.indicator(&indicator_json(TAG, 1000));
    assert_eq!(a.recv_until(&indicator_id(TAG, 1000)).len(), 51);
    // A has everything; a frame for A that reached the spy's connection
    // would now be ahead of anything published later for C on it.
    publisher.indicator(&indicator_json(TAG, 2000));
    let seen = spy_as_c.recv_until(&indicator_id(TAG, 2000));
    assert_eq!(seen.len(), 52, "the spy got exactly C's own stream");
    assert!(bus.bus.terminate().success());
}

#[test]
fn caps_answer_error_and_are_logged_once() {
    let mut bus =
        ZmqBus::start_with(Ports::ANY, "max_subscriptions: 3\nmax_topics_per_request: 2\nmax_topic_length: 20");
    let sub = |t: serde_json::Value| bus.request(&json!({"action": "subscribe", "topic": t}).to_string());
    assert_eq!(sub(json!(["stix2/indicator", "stix2/sighting", "stix2/x"]))["status"], "error");
    assert_eq!(sub(json!("stix2/indicator/".to_string() + &"x".repeat(10)))["status"], "error");
    let first = sub(json!(["stix2/indicator", "stix2/sighting"]));
    assert_eq!(first["status"], "success");
    assert_eq!(sub(json!("stix2/indicator"))["status"], "success");
    assert_eq!(sub(json!("stix2/sighting"))["status"], "success");
    for _ in 0..5 {
        assert_eq!(sub(json!("stix2/indicator"))["status"], "error", "the fourth subscription is over the cap");
    }
    // Removing one makes room again.
    let p2p = first["topic"].as_str().unwrap();
    assert_eq!(bus.status(&json!({"action": "unsubscribe", "topic": p2p}).to_string()), "success");
    assert_eq!(sub(json!("stix2/indicator"))["status"], "success");
    for line in [
        "the most allowed (max_subscriptions)",
        "more than max_topics_per_request (2)",
        "longer than max_topic_length (20)",
    ] {
        bus.bus.wait_for(line);
    }
    let log = bus.bus.log();
    let over = log.lines().filter(|l| l.contains("the most allowed (max_subscriptions)")).count();
    assert_eq!(over, 1, "five refusals at the cap, one line:\n{log}");
    assert!(bus.bus.terminate().success());
}

#[test]
fn idle_subscriptions_expire_and_live_ones_stay() {
    let mut bus = ZmqBus::start_with(Ports::ANY, "idle_timeout: 1\nconnect_grace: 0.5");
    // One app connects and stays; one subscribes and never connects; one
    // connects and goes away.
    let stays = bus.subscribe(json!("stix2/indicator"), 0);
    let never = bus.request(r#"{"action": "subscribe", "topic": "stix2/indicator"}"#);
    let never = never["topic"].as_str().unwrap().to_string();
    let leaves = bus.subscribe(json!("stix2/sighting"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&stays, &leaves]);
    let leaves_p2p = leaves.p2p.clone();
    drop(leaves);
    bus.bus.wait_for(&format!("no app is subscribed to {leaves_p2p} any more"));
    bus.bus.wait_for(&format!("Subscription {never} (topics [\"stix2/indicator\"]) removed: no app subscribed"));
    bus.bus.wait_for(&format!("Subscription {leaves_p2p} (topics [\"stix2/sighting\"]) removed: no app subscribed"));
    for gone in [&never, &leaves_p2p] {
        assert_eq!(bus.status(&json!({"action": "heartbeat", "topic": gone}).to_string()), "error");
    }
    // The connected one outlived both and still gets data.
    assert_eq!(bus.status(&json!({"action": "heartbeat", "topic": stays.p2p}).to_string()), "success");
    publisher.indicator(&indicator_json(TAG, 1));
    assert_eq!(stays.recv_real().id(), indicator_id(TAG, 1));
    assert!(bus.bus.terminate().success());
}

#[test]
fn a_subscriber_that_does_not_read_loses_counted_messages_only() {
    let mut bus = ZmqBus::start_with(Ports::ANY, "subscriber_queue_size: 100\npub_hwm: 10");
    let reader = bus.subscribe(json!("stix2/indicator"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&reader]);
    // The stalled app: subscribed and connected, but it never reads.
    let r = bus.request(r#"{"action": "subscribe", "topic": "stix2/indicator"}"#);
    let stalled = r["topic"].as_str().unwrap().to_string();
    let sock = raw_sub(bus.ports.pub_port, &[stalled.as_bytes()]);
    sock.set_rcvhwm(10).unwrap();
    bus.bus.wait_for(&format!("an app subscribed to {stalled} on the pub port"));
    const N: u64 = 5_000;
    let body = format!(r#""{}""#, "p".repeat(20_000));
    for n in 0..N {
        let json = indicator_json(TAG, n);
        // Pad each indicator so that the kernel buffers fill quickly.
        let padded = json.replacen('{', &format!(r#"{{"x_padding": {body}, "#), 1);
        publisher.indicator(&padded);
    }
    // The reader's queue is as small as the stalled one's, so it may miss
    // some too. Once it receives a sentinel that was the last message
    // published, the bus has offered every message to both.
    let mut total = N;
    'synced: loop {
        let sentinel = indicator_id(TAG, total);
        publisher.indicator(&indicator_json(TAG, total));
        total += 1;
        while let Some(d) = reader.try_recv(Duration::from_millis(200)) {
            if d.id() == sentinel {
                break 'synced;
            }
        }
        assert!(total < N + 500, "the reader never caught up");
    }
    assert_eq!(bus.status(&json!({"action": "unsubscribe", "topic": stalled}).to_string()), "success");
    bus.bus.wait_for(&format!("subscription {stalled} ended:"));
    let log = bus.bus.log();
    let line = log.lines().find(|l| l.contains(&format!("subscription {stalled} ended:"))).unwrap();
    let num = |before: &str| -> u64 {
        let end = line.find(before).unwrap_or_else(|| panic!("{before:?} in {line}"));
        line[..end].trim_end().rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (delivered, dropped, discarded) =
        (num(" messages delivered"), num(" dropped because"), num(" discarded undelivered"));
    assert_eq!(delivered + dropped + discarded, total, "every message is accounted for: {line}");
    println!("{total} offered to the stalled app: {line}");
    assert!(dropped > 0, "the bounded queue dropped: {line}");
    assert!(delivered < N, "{line}");
    // 100 MB do not fit into the socket buffers: at the end the app's
    // ZeroMQ pipe was full, and what the bus still held was discarded at
    // the unsubscription (counted), not dropped silently at the pipe.
    assert!(discarded > 0, "{line}");
    drop(sock);
    assert!(bus.bus.terminate().success());
}

#[test]
fn an_oversized_subscription_costs_its_connection_only() {
    let mut bus = ZmqBus::start();
    let a = bus.subscribe(json!("stix2/indicator"), 0);
    let c = bus.request(r#"{"action": "subscribe", "topic": "stix2/indicator"}"#);
    let c_p2p = c["topic"].as_str().unwrap().to_string();
    // C's subscription, then a 4 KB one on the same connection (an XSUB
    // socket sends subscriptions as it is told): the bus applies C, then
    // ZeroMQ drops the connection at the oversized frame (without a bound,
    // C would simply stay live).
    let spy = zctx().socket(zmq::XSUB).unwrap();
    spy.set_linger(0).unwrap();
    spy.connect(&format!("tcp://127.0.0.1:{}", bus.ports.pub_port)).unwrap();
    spy.send([&[1u8][..], c_p2p.as_bytes()].concat(), 0).unwrap();
    let mut huge = vec![b'q'; 4 << 10];
    huge[0] = 1;
    spy.send(huge, 0).unwrap();
    bus.bus.wait_for(&format!("an app subscribed to {c_p2p} on the pub port"));
    bus.bus.wait_for(&format!("no app is subscribed to {c_p2p} any more"));
    drop(spy);
    assert!(!bus.bus.log().contains("refused a subscription to qqq"), "the oversized frame never reached the bus");
    // Everybody else is served as before.
    let publisher = bus.publisher();
    publisher.sync(&[&a]);
    publisher.indicator(&indicator_json(TAG, 1));
    assert_eq!(a.recv_real().id(), indicator_id(TAG, 1));
    assert!(bus.bus.terminate().success());
}

#[test]
fn an_oversized_frame_costs_its_connection_only() {
    let mut bus = ZmqBus::start_with(Ports::ANY, "max_frame_size: 65536");
    let a = bus.subscribe(json!("stix2/indicator"), 0);
    let app = bus.publisher();
    app.sync(&[&a]);
    // A frame over the bound, then a valid one, on the same connection:
    // the bus never sees the first (no log line about it); ZeroMQ drops
    // the connection, the app reconnects, and a later frame arrives.
    let mut frame = b"stix2/indicator ".to_vec();
    frame.extend(vec![b' '; 2 << 20]);
    app.send_raw(&frame);
    let mut n = 100;
    loop {
        app.indicator(&indicator_json(TAG, n));
        if let Some(d) = a.try_recv(Duration::from_millis(100)).filter(|d| !d.is_warmup()) {
            assert!(d.id().starts_with(&format!("indicator--{TAG:08x}-")), "{d:?}");
            break;
        }
        n += 1;
        assert!(n < 1_000, "the app never got through again");
    }
    assert!(!bus.bus.log().contains("invalid message on topic 'stix2/indicator'"), "{}", bus.bus.log());
    assert!(bus.bus.terminate().success());
}
