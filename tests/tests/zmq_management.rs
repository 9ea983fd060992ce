//! The zmq management protocol
//! (as the Python original's `test_zmq_app_management.py`) against the real bus over real ZeroMQ.

mod zmq_support;

use serde_json::json;
use threatbus_integration_tests::*;
use zmq_support::*;

#[test]
fn unknown_action_and_non_json_and_garbage() {
    let bus = ZmqBus::start();
    assert_eq!(bus.status(r#"{"action": "FOO"}"#), "unknown request");
    assert_eq!(bus.status(r#"{"action": "FOO", "topic": "stix2/indicator"}"#), "unknown request");
    assert_eq!(bus.request_raw(&[b"FOO"]), r#"{"status": "error"}"#);
    assert_eq!(bus.request_raw(&[b"[1, 2, 3]"]), r#"{"status": "error"}"#);
    assert_eq!(bus.request_raw(&[b""]), r#"{"status": "error"}"#);
    assert_eq!(bus.request_raw(&[&[0xff, 0xfe, 0x00, 0x7b]]), r#"{"status": "error"}"#);
    // A multipart request gets exactly one reply and does not derail the socket.
    assert_eq!(bus.request_raw(&[br#"{"action": "FOO"}"#, b"second part"]), r#"{"status": "error"}"#);
    // A DEALER that skips the REQ envelope is ignored by ZeroMQ's REP logic;
    // the endpoint keeps answering proper requests.
    let dealer = zctx().socket(zmq::DEALER).unwrap();
    dealer.set_linger(0).unwrap();
    dealer.connect(&format!("tcp://127.0.0.1:{}", bus.ports.manage)).unwrap();
    dealer.send("garbage without envelope", 0).unwrap();
    dealer.send_multipart([&b""[..], b"not json"], 0).unwrap();
    assert_eq!(dealer.poll(zmq::POLLIN, WAIT.as_millis() as i64).unwrap(), 1);
    let reply = dealer.recv_multipart(0).unwrap();
    assert_eq!(reply, vec![b"".to_vec(), br#"{"status": "error"}"#.to_vec()]);
    assert_eq!(bus.status(r#"{"action": "heartbeat", "topic": "nope"}"#), "error");
    let log = bus.bus.log();
    assert!(log.contains("Error handling management message"), "{log}");
}

#[test]
fn heartbeat_failures() {
    let bus = ZmqBus::start();
    assert_eq!(bus.status(r#"{"action": "heartbeat"}"#), "unknown request");
    assert_eq!(bus.status(r#"{"action": "heartbeat", "topic": ""}"#), "unknown request");
    assert_eq!(bus.status(r#"{"action": "heartbeat", "topic": "abcdefghijklmnopqrstuvwxyzabcdef"}"#), "error");
}

#[test]
fn subscription_failures() {
    let bus = ZmqBus::start();
    assert_eq!(bus.status(r#"{"action": "subscribe"}"#), "unknown request");
    assert_eq!(bus.status(r#"{"action": "subscribe", "topic": []}"#), "unknown request");
    assert_eq!(bus.status(r#"{"action": "subscribe", "topic": "stix2/indicator", "snapshot": "FOO"}"#), "error");
    assert_eq!(bus.status(r#"{"action": "subscribe", "topic": "stix2/indicator", "snapshot": null}"#), "error");
}

#[test]
fn unsubscription_failures() {
    let bus = ZmqBus::start();
    assert_eq!(bus.status(r#"{"action": "unsubscribe"}"#), "unknown request");
    assert_eq!(bus.status(r#"{"action": "unsubscribe", "topic": "abcdefghijklmnopqrstuvwxyzabcdef"}"#), "error");
    let mut bus = bus;
    bus.bus.wait_for("No one was subscribed for that topic. Skipping.");
}

#[test]
fn full_roundtrip_success() {
    let mut bus = ZmqBus::start();
    let reply = bus.request(r#"{"action": "subscribe", "topic": "stix2/indicator", "snapshot": 0}"#);
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["pub_port"], bus.ports.pub_port);
    assert_eq!(reply["sub_port"], bus.ports.sub_port);
    let p2p = reply["topic"].as_str().unwrap().to_string();
    assert_eq!(p2p.len(), 32);
    assert!(p2p.bytes().all(|b| b.is_ascii_lowercase()), "{p2p}");
    // Byte layout of the original's send_json.
    let keys: Vec<&str> = reply.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4, "{reply}");

    let hb = json!({"action": "heartbeat", "topic": p2p}).to_string();
    assert_eq!(bus.request_raw(&[hb.as_bytes()]), r#"{"status": "success"}"#);
    let unsub = json!({"action": "unsubscribe", "topic": p2p}).to_string();
    assert_eq!(bus.request_raw(&[unsub.as_bytes()]), r#"{"status": "success"}"#);
    // The backbone forgot the subscription, too.
    bus.bus.wait_for("Removing subscription from: stix2/indicator");
    assert_eq!(bus.status(&hb), "error");
    assert_eq!(bus.status(&unsub), "error");
}

#[test]
fn subscribe_reply_is_byte_compatible() {
    let bus = ZmqBus::start();
    let raw = bus
        .request_raw(&[br#"{"action": "subscribe", "topic": ["stix2/indicator", "stix2/sighting"], "snapshot": "0"}"#]);
    let p2p = json(&raw)["topic"].as_str().unwrap().to_string();
    assert_eq!(
        raw,
        format!(
            r#"{{"topic": "{p2p}", "pub_port": {}, "sub_port": {}, "status": "success"}}"#,
            bus.ports.pub_port, bus.ports.sub_port
        )
    );
}

#[test]
fn every_subscription_gets_its_own_p2p_topic() {
    let bus = ZmqBus::start();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let r = bus.request(r#"{"action": "subscribe", "topic": "stix2/indicator"}"#);
        assert!(seen.insert(r["topic"].as_str().unwrap().to_string()), "p2p topic repeated");
    }
}

#[test]
fn failed_subscribe_leaves_no_dangling_subscription() {
    let mut bus = ZmqBus::start();
    // The original stored the p2p entry and subscribed the first topic before
    // failing on the second; nothing may be subscribed here.
    assert_eq!(bus.status(r#"{"action": "subscribe", "topic": ["stix2/indicator", 5]}"#), "error");
    assert_eq!(bus.status(r#"{"action": "subscribe", "topic": ["stix2/indicator", ""]}"#), "error");
    assert_eq!(bus.status(r#"{"action": "subscribe", "topic": 17}"#), "error");
    // The requests are handled one after the other, so once this
    // subscription is logged, anything the failed ones did is logged too.
    bus.request(r#"{"action": "subscribe", "topic": "stix2/sighting"}"#);
    bus.bus.wait_for("Adding subscription to: stix2/sighting");
    let log = bus.bus.log();
    assert!(!log.contains("Adding subscription to: stix2/indicator"), "{log}");
    assert_eq!(bus.bus.count("added for topics"), 1, "{log}");
}

#[test]
fn heartbeat_after_restart_is_an_error() {
    let ports = Ports::free();
    let mut first = ZmqBus::start_with(ports, "");
    let r = first.request(r#"{"action": "subscribe", "topic": "stix2/indicator"}"#);
    let hb = json!({"action": "heartbeat", "topic": r["topic"]}).to_string();
    assert_eq!(first.status(&hb), "success");
    let st = first.bus.terminate();
    assert!(st.success(), "{st:?}\n{}", first.bus.log());
    assert!(first.bus.log().contains("ZeroMQ app plugin stopped"));
    drop(first);

    // Apps see "error" and re-subscribe.
    let second = ZmqBus::start_with(ports, "");
    assert_eq!(second.status(&hb), "error");
    let r2 = second.request(r#"{"action": "subscribe", "topic": "stix2/indicator"}"#);
    assert_eq!(r2["status"], "success");
}

#[test]
fn subscriptions_expire_without_heartbeat_when_configured() {
    let mut bus = ZmqBus::start_with(Ports::free(), "heartbeat_timeout: 3");
    let dead =
        bus.request(r#"{"action": "subscribe", "topic": "stix2/indicator"}"#)["topic"].as_str().unwrap().to_string();
    let alive =
        bus.request(r#"{"action": "subscribe", "topic": "stix2/sighting"}"#)["topic"].as_str().unwrap().to_string();
    let hb = |p: &str| json!({"action": "heartbeat", "topic": p}).to_string();
    // Keep one subscription alive (as apps do, every 5 s; here more often
    // than the timeout) until the other one is reported expired.
    let deadline = std::time::Instant::now() + WAIT;
    while !bus.bus.log().contains(&format!("Subscription {dead} (topics [\"stix2/indicator\"]) expired")) {
        assert!(std::time::Instant::now() < deadline, "no expiry within {WAIT:?}:\n{}", bus.bus.log());
        assert_eq!(bus.status(&hb(&alive)), "success");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(bus.status(&hb(&dead)), "error");
    assert_eq!(bus.status(&hb(&alive)), "success");
    bus.bus.wait_for("Removing subscription from: stix2/indicator");
    assert!(!bus.bus.log().contains("Removing subscription from: stix2/sighting"));
}

#[test]
fn no_expiry_by_default() {
    // With the default config a subscription stays until unsubscribed; the
    // bus logs that expiry is off.
    let bus = ZmqBus::start();
    assert!(!bus.bus.log().contains("expire after"), "{}", bus.bus.log());
}

#[test]
fn sigterm_stops_cleanly_with_subscriptions() {
    let mut bus = ZmqBus::start();
    let _c = bus.subscribe(json!(["stix2/indicator", "stix2/sighting"]), 0);
    let _d = bus.subscribe(json!("stix2/indicator"), 0);
    let st = bus.bus.terminate();
    assert!(st.success(), "{st:?}");
    bus.bus.wait_for("ZeroMQ app plugin stopped");
}

#[test]
fn port_in_use_fails_start_up_with_the_endpoint_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ports = Ports::free();
    ports.pub_port = taken.local_addr().unwrap().port();
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let cfg = config_file(&config(ports, ""));
    let out = run_threatbus(&["-c", cfg.path().to_str().unwrap(), "--plugin-dir", dir.path().to_str().unwrap()], &[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    let want = format!("cannot bind the publisher (XPUB) socket to tcp://127.0.0.1:{}", ports.pub_port);
    assert!(text.contains(&want), "{text}");
}

#[test]
fn a_flood_of_large_garbage_requests_writes_a_bounded_log() {
    let mut bus = ZmqBus::start();
    let garbage = vec![b'x'; 100_000];
    for _ in 0..200 {
        assert_eq!(bus.request_raw(&[&garbage]), r#"{"status": "error"}"#);
    }
    // Every request was answered; the log quotes short excerpts of the
    // first few and is silent about the rest.
    assert_eq!(bus.status(r#"{"action": "heartbeat", "topic": "x"}"#), "error");
    let log = bus.bus.log();
    let lines = log.lines().filter(|l| l.contains("Error handling management message")).count();
    assert!((1..=20).contains(&lines), "{lines} log lines about invalid requests");
    assert!(log.len() < 50_000, "{} bytes of log for 200 requests", log.len());
    assert!(bus.bus.terminate().success());
}

/// A bus (inmem + zmq) started by `prlimit --nofile=<soft:hard>`; keep the
/// config file as long as the bus runs.
fn start_with_open_files_limit(soft_hard: &str) -> (ZmqBus, tempfile::NamedTempFile) {
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let cfg = config_file(&config(Ports::ANY, ""));
    let (bin, limit) = (threatbus_bin(), format!("--nofile={soft_hard}"));
    let args: Vec<&std::ffi::OsStr> = vec![
        limit.as_ref(),
        bin.as_os_str(),
        "-c".as_ref(),
        cfg.path().as_os_str(),
        "--plugin-dir".as_ref(),
        dir.path().as_os_str(),
    ];
    let bus = Bus::spawn_bin(std::path::Path::new("/usr/bin/prlimit"), &args, &[]);
    (ZmqBus::from_started(bus, dir), cfg)
}

/// Raises this process's soft limit of open files to `want` (or fails
/// saying why), for tests that open many connections.
fn raise_own_fd_limit(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the local struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert!(lim.rlim_max >= want, "this test needs a hard limit of at least {want} open files, not {}", lim.rlim_max);
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: setrlimit reads the local struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
}

#[test]
fn a_connection_flood_at_the_usual_soft_limit_is_logged_and_does_not_wedge_management() {
    raise_own_fd_limit(4096);
    // The bus starts as a shell would start it: soft limit 1024, hard 8192.
    let (mut bus, _cfg) = start_with_open_files_limit("1024:8192");
    bus.bus.wait_for("open files limit raised from 1024 to 8192");
    // 1,100 idle TCP connections to the management port.
    let flood: Vec<std::net::TcpStream> = (0..1_100)
        .map(|i| {
            std::net::TcpStream::connect(("127.0.0.1", bus.ports.manage))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    // The flood is logged, and an app still gets its answers.
    bus.bus.wait_for("1000 connections open on the management port");
    let a = bus.subscribe(serde_json::json!("stix2/indicator"), 0);
    assert_eq!(bus.status(&format!(r#"{{"action": "heartbeat", "topic": "{}"}}"#, a.p2p)), "success");
    println!("{} idle connections open; management answered", flood.len());
    drop(flood);
    assert!(bus.bus.terminate().success());
}

#[test]
fn running_out_of_descriptors_is_logged_and_recovers() {
    // Soft and hard limit 128: the bus cannot raise it.
    let (mut bus, _cfg) = start_with_open_files_limit("128:128");
    bus.bus.wait_for("open files limit: 128");
    let flood: Vec<std::net::TcpStream> =
        (0..200).map(|_| std::net::TcpStream::connect(("127.0.0.1", bus.ports.manage)).unwrap()).collect();
    bus.bus.wait_for("cannot accept a connection on the management port: Too many open files");
    // Once the flood is gone, management answers again.
    drop(flood);
    let a = bus.subscribe(serde_json::json!("stix2/indicator"), 0);
    assert_eq!(bus.status(&format!(r#"{{"action": "heartbeat", "topic": "{}"}}"#, a.p2p)), "success");
    assert!(bus.bus.terminate().success());
}
