//! The cif3 plugin in the real bus (inmem, zmq, cif3 `.so`s) against a
//! double of CIF v3's REST API: indicators from a zmq app reach CIF with
//! the original's headers and zlib bodies; unusable ones do not; a failing
//! CIF is retried, then given up on, while the bus keeps flowing; a CIF
//! that is down at start is waited for; the queue to CIF is bounded.

mod cif3_support;
mod http_double;
mod zmq_support;

use cif3_support::*;
use http_double::*;
use serde_json::{json, Value};
use threatbus_integration_tests::*;
use zmq_support::*;

const TAG: u32 = 0xc1f3_0000;

fn cif3_yaml(url: &str, extra: &str) -> String {
    format!("api:\n  host: {url}\n  token: secret-token\n  ssl: true\n{extra}tags: [test, Malicious]\ntlp: AMBER\n")
}

/// A marker indicator (a domain) and its value.
fn marker(n: u64) -> (String, String) {
    let value = format!("m{n}.marker.example");
    (stix_indicator(TAG + 1, n, &format!("[domain-name:value = '{value}']")), value)
}

/// Connects a zmq app's publisher and subscriber and lets everything sent
/// to warm up reach CIF: afterwards the cif3 plugin's queue is empty.
fn connected_app(bus: &ZmqBus, cif: &HttpDouble, n: u64) -> (Publisher, Client) {
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    let p = bus.publisher();
    p.sync(&[&c]);
    let (m, value) = marker(n);
    p.indicator(&m);
    cif.wait_request(|r| r.body["indicator"] == value.as_str());
    (p, c)
}

#[test]
fn indicators_from_a_zmq_app_reach_cif_and_unusable_ones_do_not() {
    let cif = cif_double("secret-token");
    let mut bus = start_bus(&cif3_yaml(&cif.url(), ""), &[]);
    bus.bus.wait_for("answers; submitting indicators");
    let (p, _c) = connected_app(&bus, &cif, 1);
    let cases = mapping_cases();
    for (n, (pattern, _)) in cases.iter().enumerate() {
        p.indicator(&stix_indicator(TAG, n as u64, pattern));
    }
    // A removal is never submitted (CIF takes additions only).
    let mut removal: Value =
        serde_json::from_str(&stix_indicator(TAG, 99, "[domain-name:value = 'removed.example']")).unwrap();
    removal["x_threatbus_update"] = json!("REMOVE");
    p.indicator(&removal.to_string());
    let (end, end_value) = marker(2);
    p.indicator(&end);
    let got = submitted_between(&cif, "m1.marker.example", &end_value);
    let values: Vec<&str> = got.iter().map(|b| b["indicator"].as_str().unwrap()).collect();
    assert_eq!(
        values,
        [
            "evil.example.com",
            "6.6.6.6",
            "10.1.2.3",
            "10.0.0.0/8",
            "2001:db8::1",
            "http://Evil.example.com/Path",
            "https://evil.example.com/a",
            "bad@evil.example.com",
            "ab000000000000000000000000000000",
            &"c".repeat(40),
            &"d".repeat(64),
            "5e1f2787-fcfc-4718-a58a-00b4c0a82f06.example",
        ]
    );
    assert_eq!(values.len(), cases.iter().filter(|c| c.1).count());
    let itypes: Vec<&str> = got.iter().map(|b| b["itype"].as_str().unwrap()).collect();
    assert_eq!(
        itypes,
        ["fqdn", "ipv4", "ipv4", "ipv4", "ipv6", "url", "url", "email", "md5", "sha1", "sha256", "fqdn"]
    );
    for b in &got {
        assert_eq!(b["tlp"], "amber");
        assert_eq!(b["group"], "everyone");
        assert_eq!(b["tags"], json!(["test", "Malicious"]));
        assert_eq!(b["confidence"], 7.5);
        assert_eq!(b["count"], 1);
        assert_eq!(b["lasttime"], "2021-03-22T10:00:00.123000Z");
    }
    // The original's headers; the body is zlib data.
    let r = cif.wait_request(|r| r.body["indicator"] == "6.6.6.6");
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("Authorization"), Some("Token token=secret-token"));
    assert_eq!(r.header("Accept"), Some("application/vnd.cif.v3+json"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Content-Encoding"), Some("deflate"));
    assert_eq!(r.raw[0], 0x78, "not a zlib stream");
    let uuid = r.body["uuid"].as_str().expect("uuid");
    assert_eq!(uuid.len(), 36);
    let ping = cif.wait_request(|r| r.path == "/ping");
    assert_eq!(ping.header("Authorization"), Some("Token token=secret-token"));
    assert!(bus.bus.terminate().success());
    assert!(!bus.bus.log().contains("secret-token"), "the token was logged");
}

#[test]
fn a_failing_cif_is_retried_then_given_up_while_the_bus_flows() {
    let cif = cif_double("secret-token");
    let mut bus = start_bus(&cif3_yaml(&cif.url(), "  retries: 2\n  retry_max_delay: 0.05\n  timeout: 3\n"), &[]);
    let (p, c) = connected_app(&bus, &cif, 1);
    let count = |value: &str| cif.requests().iter().filter(|r| r.body["indicator"] == value).count();

    // 429 and 500: retried, then accepted.
    cif.push_answers_for("/indicators", &[Answer::Status(429), Answer::Status(500)]);
    p.indicator(&stix_indicator(TAG, 1, "[domain-name:value = 'retried.example']"));
    bus.bus.wait_for("Added indicator to CIF: {\"indicator\": \"retried.example\"");
    assert_eq!(count("retried.example"), 3);

    // Three 503s: given up after two retries, with a log line.
    cif.push_answers_for("/indicators", &[Answer::Status(503), Answer::Status(503), Answer::Status(503)]);
    p.indicator(&stix_indicator(TAG, 2, "[domain-name:value = 'given-up.example']"));
    bus.bus.wait_for("Error adding indicator to CIF, giving up on it: CIF answered HTTP 503");
    assert_eq!(count("given-up.example"), 3);

    // A 4xx is not repeated.
    cif.push_answers_for("/indicators", &[Answer::Status(422)]);
    p.indicator(&stix_indicator(TAG, 3, "[domain-name:value = 'refused.example']"));
    bus.bus.wait_for("CIF answered HTTP 422");
    assert_eq!(count("refused.example"), 1);

    // A stalled CIF: the bus delivers to other apps meanwhile.
    cif.hold();
    p.indicator(&stix_indicator(TAG, 4, "[domain-name:value = 'stalled.example']"));
    cif.wait_held(1);
    p.indicator(&indicator_json(TAG + 2, 1));
    let got: Vec<String> = c.recv_until(&indicator_id(TAG + 2, 1)).iter().map(|d| d.id()).collect();
    assert_eq!(got.last(), Some(&indicator_id(TAG + 2, 1)));
    cif.release();
    let (m, value) = marker(3);
    p.indicator(&m);
    cif.wait_request(|r| r.body["indicator"] == value.as_str());
    assert!(bus.bus.terminate().success());
}

#[test]
fn cif_down_at_start_is_waited_for() {
    let port = free_port();
    let mut bus = start_bus(&cif3_yaml(&format!("http://127.0.0.1:{port}"), ""), &[]);
    bus.bus.wait_for("Cannot reach CIF v3 at");
    // The bus runs meanwhile.
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    let p = bus.publisher();
    p.sync(&[&c]);
    p.indicator(&stix_indicator(TAG, 1, "[domain-name:value = 'queued.example']"));
    c.recv_until(&indicator_id(TAG, 1));
    // CIF comes up: the queued indicator is submitted.
    let cif = cif_double_on("secret-token", port);
    cif.wait_request(|r| r.body["indicator"] == "queued.example");
    assert!(bus.bus.terminate().success());
}

#[test]
fn the_queue_to_cif_is_bounded_and_drops_are_counted() {
    let cif = cif_double("secret-token");
    let mut bus = start_bus(
        &cif3_yaml(&cif.url(), "  timeout: 60\n").replace("tlp: AMBER\n", "tlp: AMBER\nqueue_size: 2\n"),
        &[],
    );
    let (p, c) = connected_app(&bus, &cif, 1);
    // One indicator in flight (held at CIF), then ten more: two wait in
    // the queue, eight are dropped; a zmq app receives all of them.
    cif.hold();
    p.indicator(&stix_indicator(TAG, 0, "[domain-name:value = 'd0.example']"));
    cif.wait_held(1);
    for n in 1..=10 {
        p.indicator(&stix_indicator(TAG, n, &format!("[domain-name:value = 'd{n}.example']")));
    }
    let got: Vec<Delivery> =
        c.recv_until(&indicator_id(TAG, 10)).into_iter().filter(|d| d.id().contains(&format!("{TAG:08x}"))).collect();
    assert_eq!(got.len(), 11);
    cif.release();
    cif.wait_request(|r| r.body["indicator"] == "d2.example");
    let status = bus.bus.terminate();
    assert!(status.success());
    assert!(
        bus.bus.log().contains("8 indicators were dropped in all because CIF did not keep up"),
        "{}",
        bus.bus.log()
    );
    let submitted: Vec<String> = cif
        .requests()
        .iter()
        .filter_map(|r| {
            r.body["indicator"].as_str().filter(|v| v.starts_with('d') && v.ends_with(".example")).map(String::from)
        })
        .collect();
    assert_eq!(submitted, ["d0.example", "d1.example", "d2.example"]);
}

#[test]
fn token_from_a_file_or_the_environment() {
    let cif = cif_double("file-token");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cif.token");
    std::fs::write(&file, "file-token\n").unwrap();
    let yaml = format!("api:\n  host: {}\n  token_file: {}\ntags: [t]\n", cif.url(), file.display());
    let mut bus = start_bus(&yaml, &[]);
    bus.bus.wait_for("answers; submitting indicators");
    bus.bus.terminate();

    let cif = cif_double("env-token");
    let yaml = format!("api:\n  host: {}\n  token: config-token\ntags: [t]\n", cif.url());
    let mut bus = start_bus(&yaml, &[("THREATBUS_PLUGINS__APPS__CIF3__API__TOKEN", "env-token")]);
    bus.bus.wait_for("answers; submitting indicators");
    assert!(!bus.bus.log().contains("env-token"));
    bus.bus.terminate();
}

#[test]
fn the_example_configs_cif3_section_is_valid() {
    let section = example_app_section("cif3");
    let yaml = format!("plugins:\n  backbones:\n    inmem: {{}}\n  apps:\n{section}");
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_cif3"]);
    let mut bus = Bus::start(&yaml, dir.path());
    bus.wait_for("CIF3 plugin started");
    assert!(bus.terminate().success(), "{}", bus.log());
}
