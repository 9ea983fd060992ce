//! The Prometheus endpoint, the stats line and the `watch` / `publish`
//! subcommands of the real `threatbus` binary with the real inmem and zmq
//! plugins: exact counts after a known traffic pattern, the exposition
//! checked by `promtool` and scraped by a real Prometheus server, hostile
//! HTTP clients, and one indicator carried end to end by the subcommands.

mod metrics_support;
mod zmq_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use metrics_support::*;
use serde_json::json;
use threatbus_integration_tests::*;
use zmq_support::*;

const TAG: u32 = 0x0000_3e71;

/// A bus with inmem, zmq and `/metrics` on a port the OS picks.
fn bus_with_metrics(zmq_extra: &str, env: &[(&str, &str)]) -> (ZmqBus, String) {
    let config = format!("{}metrics:\n  port: 0\n", config(Ports::ANY, zmq_extra));
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let mut bus = ZmqBus::from_started(Bus::start_with_env(&config, dir.path(), env), dir);
    let addr = metrics_addr(&mut bus.bus);
    (bus, addr)
}

fn subscribe_without_reading(bus: &ZmqBus, topic: &str) -> String {
    let reply = bus.request(&json!({"action": "subscribe", "topic": topic, "snapshot": 0}).to_string());
    assert_eq!(reply["status"], "success", "{reply}");
    reply["topic"].as_str().expect("p2p topic").to_string()
}

#[test]
fn exact_counts_after_a_known_traffic_pattern() {
    // A subscriber whose queue holds 5 and that never reads: of 20
    // indicators, 5 are delivered into its queue and 15 dropped.
    let (bus, addr) = bus_with_metrics("subscriber_queue_size: 5\nconnect_grace: 600", &[]);
    let p2p = subscribe_without_reading(&bus, "stix2/indicator");
    let publisher = XPublisher::connect(zctx(), bus.ports.sub_port);
    for n in 0..20 {
        publisher.send(&format!("stix2/indicator {}", indicator_json(TAG, n)));
    }
    let of = indicator_id(TAG, 0);
    for n in 0..2 {
        publisher.send(&format!("stix2/sighting {}", sighting_json(TAG, n, &of)));
    }
    let valid = indicator_json(TAG, 99);
    publisher.send("stix2/indicator not json");
    publisher
        .send(&format!("stix2/indicator {}", valid.replace(&format!(r#""id": "{}", "#, indicator_id(TAG, 99)), "")));
    publisher
        .send(&format!("stix2/indicator {}", valid.replace("[ipv4-addr:value = '10.0.0.99']", "[ipv4-addr:value = ")));

    let zmq = ("plugin", "zmq");
    let (ind, sig) = (("topic", "stix2/indicator"), ("topic", "stix2/sighting"));
    let s = scrape_until(&addr, "25 received and 20 indicators delivered or dropped", |s| {
        s.count("threatbus_messages_received_total", &[zmq, ind]) == 23
            && s.count("threatbus_messages_received_total", &[zmq, sig]) == 2
            && s.count("threatbus_messages_delivered_total", &[zmq, ind])
                + s.count("threatbus_messages_dropped_total", &[zmq, ind])
                == 20
    });
    let invalid = |reason| s.count("threatbus_messages_invalid_total", &[zmq, ("reason", reason)]);
    assert_eq!(
        (invalid("invalid_json"), invalid("missing_property"), invalid("invalid_pattern")),
        (1, 1, 1),
        "{}",
        s.text
    );
    assert_eq!(s.count("threatbus_messages_accepted_total", &[zmq, ind]), 20, "{}", s.text);
    assert_eq!(s.count("threatbus_messages_accepted_total", &[zmq, sig]), 2, "{}", s.text);
    assert_eq!(s.count("threatbus_messages_delivered_total", &[zmq, ind]), 5, "{}", s.text);
    assert_eq!(s.count("threatbus_messages_delivered_total", &[zmq, sig]), 0, "not subscribed:\n{}", s.text);
    assert_eq!(s.count("threatbus_messages_dropped_total", &[zmq, ind, ("reason", "queue_full")]), 15, "{}", s.text);
    assert_eq!(s.value("threatbus_subscriptions", &[zmq, ind]), Some(1.0), "{}", s.text);
    assert_eq!(s.value("threatbus_queued_messages", &[zmq]), Some(5.0), "{}", s.text);
    assert_eq!(s.value("threatbus_zmq_subscriptions", &[zmq]), Some(1.0), "the plugin's own gauge:\n{}", s.text);
    assert_eq!(s.value("threatbus_plugin_state", &[zmq, ("state", "running")]), Some(1.0), "{}", s.text);
    let abi = format!("{}.{}", threatbus_plugin_api::abi::ABI_MAJOR, threatbus_plugin_api::abi::ABI_MINOR);
    assert_eq!(s.value("threatbus_plugin_info", &[zmq, ("kind", "app"), ("abi", &abi)]), Some(1.0), "{}", s.text);
    assert_eq!(s.value("threatbus_build_info", &[("abi", &abi)]), Some(1.0), "{}", s.text);
    promtool_check(&s.text);

    // Unsubscribing discards what its queue held: the zmq plugin counts it.
    let reply = bus.request(&json!({"action": "unsubscribe", "topic": p2p}).to_string());
    assert_eq!(reply["status"], "success", "{reply}");
    let s = scrape_until(&addr, "the 5 queued indicators discarded", |s| {
        s.count("threatbus_zmq_messages_discarded_total", &[zmq]) == 5
    });
    assert_eq!(s.value("threatbus_subscriptions", &[zmq, ind]), None, "{}", s.text);
    assert_eq!(s.value("threatbus_zmq_subscriptions", &[zmq]), Some(0.0), "{}", s.text);
    println!(
        "20 indicators, 2 sightings, 3 invalid frames and a subscriber holding 5: /metrics showed 25 received, \
         3 invalid by reason, 22 accepted, 5 delivered, 15 dropped, then 5 discarded at unsubscribe; promtool accepted it"
    );
}

/// A real Prometheus server, killed on drop.
struct Prometheus {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    addr: String,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: threatbus\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus) must be installed: .ci/run and tests/run.sh install it");
        Prometheus { child, _dir: dir, addr }
    }

    /// The value of the first result of an instant query, if any.
    fn query(&self, q: &str) -> Option<String> {
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(WAIT)).ok()?;
        let encoded: String = q
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        write!(s, "GET /api/v1/query?query={encoded} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr)
            .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let body = raw.split_once("\r\n\r\n")?.1;
        let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
        v["data"]["result"][0]["value"][1].as_str().map(str::to_string)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_bus_and_answers_a_query() {
    let (bus, addr) = bus_with_metrics("", &[]);
    let publisher = XPublisher::connect(zctx(), bus.ports.sub_port);
    for n in 0..3 {
        publisher.send(&format!("stix2/indicator {}", indicator_json(TAG, n)));
    }
    scrape_until(&addr, "3 accepted", |s| {
        s.count("threatbus_messages_accepted_total", &[("plugin", "zmq"), ("topic", "stix2/indicator")]) == 3
    });
    let prometheus = Prometheus::start(&addr);
    let query = r#"threatbus_messages_accepted_total{plugin="zmq",topic="stix2/indicator"}"#;
    let deadline = Instant::now() + 2 * WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        last = prometheus.query(query);
        if last.as_deref() == Some("3") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(last.as_deref(), Some("3"), "Prometheus at {} never answered {query} with 3", prometheus.addr);
    assert_eq!(prometheus.query(r#"up{job="threatbus"}"#).as_deref(), Some("1"));
    println!("a real Prometheus scraped {addr} and answered {query} = 3 over its HTTP API");
}

#[test]
fn the_stats_line_reports_what_flowed() {
    let (bus, _addr) = bus_with_metrics("", &[("THREATBUS_LOGGING__STATS_INTERVAL", "1")]);
    let mut bus = bus;
    let publisher = XPublisher::connect(zctx(), bus.ports.sub_port);
    for n in 0..3 {
        publisher.send(&format!("stix2/indicator {}", indicator_json(TAG, n)));
    }
    publisher.send("stix2/indicator {}");
    bus.bus.wait_for("stats: received 4 (");
    let log = bus.bus.log();
    let line = log.lines().find(|l| l.contains("stats: received 4 (")).expect("waited for it");
    for part in ["invalid 1 (", "accepted 3 (", "delivered 0 (", "dropped 0 (", "subscriptions 0"] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
    println!("stats line: {line}");
}

#[test]
fn the_endpoint_survives_hostile_clients() {
    let (_bus, addr) = bus_with_metrics("", &[]);
    // More idle connections than the server keeps: the oldest are closed.
    let idle: Vec<TcpStream> = (0..80).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ").unwrap();
    assert_eq!(get(&addr, "/nothing").0, 404);
    assert_eq!(http(&addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0, 405);
    assert_eq!(http(&addr, "\x16\x03\x01 garbage\r\n\r\n").0, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(16 * 1024));
    assert_eq!(http(&addr, &huge).0, 431);
    let s = Scrape::take(&addr);
    assert!(s.value("threatbus_inq_messages", &[]).is_some(), "{}", s.text);
    drop(idle);
    let head = http(&addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(head, (200, String::new()), "HEAD answers without a body");
    println!("with 80 idle and one slow connection open, 404/405/400/431 came back and a scrape still worked");
}

#[test]
fn a_metrics_port_in_use_fails_start_up_naming_the_keys() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = format!("{}metrics:\n  port: {port}\n", config(Ports::ANY, ""));
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let mut bus = Bus::start(&config, dir.path());
    let status = bus.wait_exit(WAIT).unwrap_or_else(|| panic!("still running:\n{}", bus.log()));
    assert!(!status.success());
    let log = bus.log();
    assert!(log.contains(&format!("cannot listen on 127.0.0.1:{port} (metrics.host, metrics.port)")), "{log}");
    println!("port {port} in use: start-up failed naming metrics.host and metrics.port");
}

/// Reads a child's stream line by line on a thread of its own.
fn lines_of(stream: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn watch_and_publish_carry_an_indicator_and_a_sighting_end_to_end() {
    let mut bus = ZmqBus::start();
    let manage = format!("127.0.0.1:{}", bus.ports.manage);
    let mut watch = threatbus_command(&["watch", "--manage", &manage, "--count", "2"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("threatbus watch");
    let out = lines_of(watch.stdout.take().unwrap());
    let err = lines_of(watch.stderr.take().unwrap());
    let first = err.recv_timeout(WAIT).expect("watch says what it subscribed to");
    assert!(first.contains("subscribed to stix2/"), "{first}");

    let indicator = indicator_json(TAG, 7);
    let sighting = sighting_json(TAG, 8, &indicator_id(TAG, 7));
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), format!("{indicator}\n\n{sighting}\n")).unwrap();
    let sub = format!("127.0.0.1:{}", bus.ports.sub_port);
    let published = threatbus_command(&["publish", input.path().to_str().unwrap(), "--sub", &sub], &[])
        .output()
        .expect("threatbus publish");
    let said = String::from_utf8_lossy(&published.stderr);
    assert!(published.status.success() && said.contains("sent 2 messages"), "{said}");

    let got: Vec<String> = (0..2).map(|_| out.recv_timeout(WAIT).expect("watch prints each message")).collect();
    assert_eq!(got, [indicator, sighting]);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(st) = watch.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "watch did not exit after --count 2");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    bus.bus.wait_for("Received unsubscription from topic");
    println!(
        "threatbus publish sent an indicator and a sighting; threatbus watch printed both unchanged and unsubscribed"
    );
}

#[test]
fn publish_refuses_invalid_lines_and_says_so() {
    let bus = ZmqBus::start();
    let sub = format!("127.0.0.1:{}", bus.ports.sub_port);
    let input = tempfile::NamedTempFile::new().unwrap();
    let snapshot_request = r#"{"type": "snapshotrequest", "snapshot_type": 1, "snapshot_id": "x", "snapshot": 1}"#;
    std::fs::write(input.path(), format!("{}\nnot json\n{snapshot_request}\n", indicator_json(TAG, 1))).unwrap();
    let out = threatbus_command(&["publish", input.path().to_str().unwrap(), "--sub", &sub], &[]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("line 2: not sent: invalid JSON"), "{said}");
    assert!(said.contains("line 3: not sent"), "{said}");
    assert!(said.contains("sent 1 messages") && said.contains("2 invalid lines"), "{said}");
    println!("publish sent the valid line and named the two invalid ones: {said}");
}

#[test]
fn watch_asks_for_a_snapshot_in_days() {
    let mut bus = ZmqBus::start();
    let manage = format!("127.0.0.1:{}", bus.ports.manage);
    let out = threatbus_command(
        &["watch", "--manage", &manage, "--topic", "stix2/indicator", "--snapshot", "2", "--count", "0"],
        &[],
    )
    .output()
    .expect("threatbus watch");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    bus.bus.wait_for("for message type indicator and time delta 172800s");
    bus.bus.wait_for("Received unsubscription from topic");
    println!("watch --snapshot 2 made the bus request a snapshot of 2 days (172800 s), then unsubscribed");
}
