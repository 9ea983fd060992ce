//! The misp plugin in the real bus (inmem, zmq, misp `.so`s) against
//! doubles of MISP's ZeroMQ publisher and REST API: real MISP attributes
//! (PyMISP's fixtures) in, indicators out to a zmq app; sightings from a
//! zmq app to MISP; snapshots from MISP to the requesting app only; a
//! failing, slow or unreachable MISP never stops intake.

mod http_double;
mod misp_support;
mod zmq_support;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, SecondsFormat};
use http_double::Answer;
use misp_support::*;
use serde_json::{json, Value};
use threatbus_integration_tests::*;
use zmq_support::*;

const END_TAG: u32 = 0x3e4d_0000;
const TAG: u32 = 0x3150_0000;

fn utc(ts: &str) -> String {
    let secs: i64 = ts.parse().expect("timestamp");
    DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The pattern start of each type the plugin maps, and whether the value
/// appears as one literal (point types).
fn expected_prefix(kind: &str, value: &str) -> Option<String> {
    let lit = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    Some(match kind {
        "domain" | "hostname" => format!("[domain-name:value = {}]", lit(value)),
        "ip-dst" | "ip-src" if value.contains(':') => format!("[ipv6-addr:value = {}]", lit(value)),
        "ip-dst" | "ip-src" => format!("[ipv4-addr:value = {}]", lit(value)),
        "url" => format!("[url:value = {}]", lit(value)),
        "md5" => format!("[file:hashes.MD5 = {}]", lit(value)),
        "sha1" => format!("[file:hashes.'SHA-1' = {}]", lit(value)),
        "sha256" => format!("[file:hashes.'SHA-256' = {}]", lit(value)),
        "sha512" => format!("[file:hashes.'SHA-512' = {}]", lit(value)),
        // The host validates SSDEEP hashes as stix2 does: no whitespace.
        "ssdeep" if value.contains(char::is_whitespace) => return None,
        "ssdeep" => format!("[file:hashes.SSDEEP = {}]", lit(value)),
        "filename" => format!("[file:name = {}]", lit(value)),
        "filename|md5" | "filename|sha256" => {
            let (name, hash) = value.split_once('|').unwrap();
            let algo = if kind.ends_with("md5") { "MD5" } else { "'SHA-256'" };
            format!("[file:name = {} AND file:hashes.{algo} = {}]", lit(name), lit(hash))
        }
        "regkey|value" => {
            let (key, data) = value.split_once('|').unwrap();
            format!("[windows-registry-key:key = {} AND windows-registry-key:values[*].data = {}]", lit(key), lit(data))
        }
        _ => return None,
    })
}

#[test]
fn pymisp_fixture_attributes_over_zeromq_become_indicators() {
    let misp = MispZmq::bind();
    let mut bus = start_bus(&format!("zmq:\n  host: 127.0.0.1\n  port: {}", misp.port), &[]);
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    misp.sync(&[&c]);

    // What MISP publishes besides attributes, and broken attributes.
    misp.send("misp_json_self", r#"{"status": "mispzmq.py still alive.", "uptime": 10}"#);
    misp.send("misp_json_event", r#"{"Event": {"id": "1"}}"#);
    misp.send("misp_json_attributes", &domain_notification(&uuid(TAG, 1), "prefix.example", "add", true).to_string());
    misp.send_raw(b"misp_json_attribute {\"Attribute\": ");
    misp.send_raw(b"misp_json_attribute [1, 2]");
    misp.send_raw(b"misp_json_attribute \xff\xfe");
    misp.attribute(&domain_notification(&uuid(TAG, 2), "publish.example", "publish", true));
    let fixtures = fixture_notifications();
    assert!(fixtures.len() > 600, "{} fixture attributes", fixtures.len());
    for n in &fixtures {
        misp.attribute(n);
    }
    let end = uuid(END_TAG, 1);
    misp.attribute(&domain_notification(&end, "end.example", "add", true));
    let got = recv_until_skipping_sync(&c, &format!("indicator--{end}"));

    let mut by_id: HashMap<String, Value> = HashMap::new();
    for d in &got[..got.len() - 1] {
        assert_eq!(d.kind, "indicator", "{d:?}");
        let v = d.value();
        assert!(by_id.insert(v["id"].as_str().unwrap().to_string(), v.clone()).is_none(), "twice: {v}");
    }
    let mut expected = 0;
    for n in &fixtures {
        let a = &n["Attribute"];
        let (kind, value, id) =
            (a["type"].as_str().unwrap(), a["value"].as_str().unwrap(), a["uuid"].as_str().unwrap());
        let want = expected_prefix(kind, value).filter(|_| a["to_ids"] == true);
        let have = by_id.get(&format!("indicator--{id}"));
        match (want, have) {
            (Some(pattern), Some(ind)) => {
                expected += 1;
                assert_eq!(ind["pattern"], pattern, "{kind} {value}");
                assert_eq!(ind["created"], utc(a["timestamp"].as_str().unwrap()), "{ind}");
                assert_eq!(ind["modified"], ind["created"]);
                assert_eq!(ind["pattern_type"], "stix");
                assert!(ind.get("x_threatbus_update").is_none(), "{ind}");
            }
            (None, None) => {}
            (want, have) => panic!("{kind} {value} (to_ids {}): expected {want:?}, got {have:?}", a["to_ids"]),
        }
    }
    assert_eq!(by_id.len(), expected, "indicators that are not from the fixtures");
    assert!(expected > 300, "only {expected} indicators");
    // Every broken attribute was logged and skipped; the heartbeat, the
    // event and the look-alike topic were never looked at.
    bus.bus.wait_for_count("Skipping a MISP attribute from ZeroMQ", 5);
    let log = bus.bus.log();
    assert!(log.contains("unknown action 'publish'"), "{log}");
    assert!(!log.contains("prefix.example"), "a look-alike topic was consumed");
    let status = bus.bus.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn filters_and_removals() {
    let misp = MispZmq::bind();
    let mut bus = start_bus(
        &format!(
            "zmq:\n  host: 127.0.0.1\n  port: {}\nfilter:\n  - orgs: [1, \"7\"]\n    tags: [\"TLP:AMBER\"]\n  - types: [url]",
            misp.port
        ),
        &[],
    );
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    misp.sync(&[&c]);
    let id = |n| uuid(TAG, n);
    let mut other_org = domain_notification(&id(1), "org5.example", "add", true);
    other_org["Event"]["orgc_id"] = json!(5);
    let mut untagged = domain_notification(&id(2), "untagged.example", "add", true);
    untagged["Attribute"]["Tag"] = json!([]);
    let mut numeric_org = domain_notification(&id(3), "org7.example", "add", true);
    numeric_org["Event"]["orgc_id"] = json!(7);
    let mut url = domain_notification(&id(4), "", "add", true);
    url["Attribute"]["type"] = json!("url");
    url["Attribute"]["value"] = json!("http://evil.example/x");
    url["Event"]["orgc_id"] = json!("99");
    let mut hard_delete = domain_notification(&id(7), "deleted.example", "delete", true);
    hard_delete.as_object_mut().unwrap().remove("Event");
    let mut flagged = domain_notification(&id(8), "flagged.example", "edit", true);
    flagged["Attribute"]["deleted"] = json!(true);
    for n in [
        other_org,
        untagged,
        numeric_org,
        url,
        domain_notification(&id(5), "plain.example", "add", true),
        domain_notification(&id(5), "plain.example", "edit", false),
        domain_notification(&id(6), "soft.example", "soft-delete", true),
        hard_delete,
        flagged,
        domain_notification(&id(9), "not-for-ids.example", "add", false),
    ] {
        misp.attribute(&n);
    }
    let end = uuid(END_TAG, 2);
    misp.attribute(&domain_notification(&end, "end.example", "add", true));
    let got: Vec<(String, Value)> = recv_until_skipping_sync(&c, &format!("indicator--{end}"))
        .iter()
        .map(|d| (d.id(), d.value().get("x_threatbus_update").cloned().unwrap_or(Value::Null)))
        .collect();
    let ind = |n| format!("indicator--{}", id(n));
    assert_eq!(
        got,
        vec![
            (ind(3), Value::Null),
            (ind(4), Value::Null),
            (ind(5), Value::Null),
            (ind(5), json!("REMOVE")),
            (ind(6), json!("REMOVE")),
            (ind(7), json!("REMOVE")),
            (ind(8), json!("REMOVE")),
            (format!("indicator--{end}"), Value::Null),
        ]
    );
    bus.bus.terminate();
}

/// A STIX sighting of `indicator--<of>` as a zmq app publishes it.
fn sighting(n: u64, of: &str, created: &str) -> String {
    json!({
        "type": "sighting", "spec_version": "2.1", "id": format!("sighting--{}", uuid(TAG, n)),
        "created": created, "modified": created, "sighting_of_ref": format!("indicator--{of}"),
        "x_threatbus_source": "zeek"
    })
    .to_string()
}

fn api_yaml(rest: &MispRest, extra: &str) -> String {
    format!("api:\n  host: {}\n  ssl: true\n  key: test-key\n{extra}", rest.url())
}

#[test]
fn sightings_reach_misp_and_snapshots_reach_only_the_requester() {
    let rest = MispRest::start("test-key");
    let ids: Vec<String> = (1..=5).map(|n| uuid(TAG, 100 + n)).collect();
    rest.set_attributes(ids.iter().map(|u| search_item(u, &format!("{u}.example"))).collect());
    let misp = MispZmq::bind();
    let mut bus = start_bus(
        &format!("zmq:\n  host: 127.0.0.1\n  port: {}\n{}snapshot_page_size: 2", misp.port, api_yaml(&rest, "")),
        &[],
    );
    bus.bus.wait_for("Reporting sightings to MISP 2.4.200");
    let b = bus.subscribe(json!("stix2/indicator"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&b]);

    // A sighting from an app becomes the original's /sightings/add body.
    publisher.sighting(&sighting(1, &ids[0], "2021-05-03T10:00:01.123Z"));
    let reported = loop {
        let all = rest.wait_requests("/sightings/add", 1);
        if let Some(r) = all.iter().find(|r| r.body["id"] == ids[0].as_str()) {
            break r.clone();
        }
        rest.wait_requests("/sightings/add", all.len() + 1);
    };
    assert_eq!(reported.method, "POST");
    assert_eq!(reported.body, json!({"id": ids[0], "source": "zeek", "type": "0", "timestamp": "1620036001"}));
    assert_eq!(reported.header("Authorization"), Some("test-key"));
    assert_eq!(reported.header("Accept"), Some("application/json"));
    assert_eq!(reported.header("Content-Type"), Some("application/json"));
    bus.bus.wait_for("Reported sighting");

    // A snapshot: held at MISP until A is connected, then 5 attributes in
    // pages of 2; the first search fails with a 500 and is repeated
    // (searches change nothing).
    rest.push_answers_for("/attributes/restSearch", &[Answer::Status(500)]);
    rest.hold();
    let a = bus.subscribe(json!("stix2/indicator"), 30);
    rest.wait_held(1);
    publisher.sync(&[&a]);
    rest.release();
    let mut got = HashSet::new();
    while got.len() < 5 {
        let d = a.recv_real();
        assert_eq!(d.kind, "indicator", "{d:?}");
        let v = d.value();
        let u = v["id"].as_str().unwrap().strip_prefix("indicator--").unwrap().to_string();
        assert_eq!(v["pattern"], format!("[domain-name:value = '{u}.example']"));
        assert!(got.insert(u), "twice: {v}");
    }
    assert_eq!(got, ids.iter().cloned().collect());
    let searches = rest.wait_requests("/attributes/restSearch", 4);
    let now = chrono::Utc::now().timestamp() as f64;
    let pages: Vec<&Value> = searches.iter().map(|s| &s.body["page"]).collect();
    assert_eq!(pages, [&json!(1), &json!(1), &json!(2), &json!(3)]);
    for s in &searches {
        assert_eq!(s.body["returnFormat"], "json");
        assert_eq!(s.body["to_ids"], true);
        assert_eq!(s.body["limit"], 2);
        let from = s.body["from"].as_f64().expect("from is a number");
        assert!((from - (now - 30.0 * 86_400.0)).abs() < 3600.0, "from {from}, now {now}");
        assert_eq!(s.header("Authorization"), Some("test-key"));
    }
    // Nobody else got the snapshot: B and A see only the sentinel next.
    let sentinel = indicator_json(END_TAG, 3);
    publisher.indicator(&sentinel);
    // (B, a zmq app, may answer snapshot requests too, so it gets A's.)
    let b_rest: Vec<String> = b
        .recv_until(&indicator_id(END_TAG, 3))
        .iter()
        .filter(|d| d.kind != "snapshotrequest")
        .map(|d| d.id())
        .collect();
    assert_eq!(b_rest, vec![indicator_id(END_TAG, 3)]);
    let a_rest: Vec<String> = a.recv_until(&indicator_id(END_TAG, 3)).iter().map(|d| d.id()).collect();
    assert_eq!(a_rest, vec![indicator_id(END_TAG, 3)]);
    assert_eq!(rest.wait_requests("/attributes/restSearch", 4).len(), 4, "more searches than pages");
    assert!(bus.bus.log().contains("restSearch failed (answered HTTP 500"), "{}", bus.bus.log());
    bus.bus.terminate();
}

/// The /sightings/add requests for one attribute.
fn reports_of(rest: &MispRest, id: &str) -> usize {
    rest.requests().iter().filter(|r| r.path == "/sightings/add" && r.body["id"] == id).count()
}

#[test]
fn failing_slow_and_refusing_misp_never_blocks_intake() {
    let rest = MispRest::start("test-key");
    let ids: Vec<String> = (1..=6).map(|n| uuid(TAG, 200 + n)).collect();
    rest.set_attributes(ids.iter().map(|u| search_item(u, "x.example")).collect());
    let misp = MispZmq::bind();
    let mut bus = start_bus(
        &format!(
            "zmq:\n  host: 127.0.0.1\n  port: {}\n{}",
            misp.port,
            api_yaml(&rest, "  retries: 3\n  retry_max_delay: 0.1\n  timeout: 3")
        ),
        &[],
    );
    bus.bus.wait_for("Reporting sightings to MISP");
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&c]);
    misp.sync(&[&c]);

    // 503 twice (MISP did not process it): retried, then reported.
    rest.push_answers_for(&ids[0], &[Answer::Status(503), Answer::Status(503)]);
    publisher.sighting(&sighting(1, &ids[0], "2021-05-03T10:00:01Z"));
    bus.bus.wait_for("Reported sighting: {\"Sighting\":");
    assert_eq!(reports_of(&rest, &ids[0]), 3);

    // 500 (MISP may have saved it): not repeated, logged.
    rest.push_answers_for(&ids[1], &[Answer::Status(500)]);
    publisher.sighting(&sighting(2, &ids[1], "2021-05-03T10:00:02Z"));
    bus.bus.wait_for("MISP answered HTTP 500");
    // Garbage, a refusal and a wrong key: logged, not repeated.
    rest.push_answers_for(&ids[2], &[Answer::Garbage]);
    publisher.sighting(&sighting(3, &ids[2], "2021-05-03T10:00:03Z"));
    bus.bus.wait_for("MISP answered with garbage");
    publisher.sighting(&sighting(4, &uuid(TAG, 999), "2021-05-03T10:00:04Z"));
    bus.bus.wait_for("MISP refused: Could not add the Sighting");
    rest.push_answers_for(&ids[4], &[Answer::Status(403)]);
    publisher.sighting(&sighting(5, &ids[4], "2021-05-03T10:00:05Z"));
    bus.bus.wait_for("MISP answered HTTP 403");
    for (id, n) in [(&ids[1], 1), (&ids[2], 1), (&ids[4], 1)] {
        assert_eq!(reports_of(&rest, id), n, "{id}");
    }

    // A stalled MISP: the sighting waits, intake and routing go on.
    rest.hold();
    publisher.sighting(&sighting(6, &ids[5], "2021-05-03T10:00:06Z"));
    rest.wait_held(1);
    let during = uuid(END_TAG, 4);
    misp.attribute(&domain_notification(&during, "during.example", "add", true));
    let got = recv_until_skipping_sync(&c, &format!("indicator--{during}"));
    assert_eq!(got.len(), 1, "{got:?}");
    publisher.indicator(&indicator_json(END_TAG, 5));
    c.recv_until(&indicator_id(END_TAG, 5));
    // Longer than api.timeout: given up (not repeated: it may have been
    // saved), logged; the next sighting goes through.
    bus.bus.wait_for("MISP gave no complete answer");
    rest.release();
    publisher.sighting(&sighting(7, &ids[0], "2021-05-03T10:00:07Z"));
    bus.bus.wait_for_count("Reported sighting: {\"Sighting\":", 2);
    assert_eq!(reports_of(&rest, &ids[5]), 1);
    let status = bus.bus.terminate();
    assert!(status.success(), "{status:?}");
    let log = bus.bus.log();
    assert!(log.contains("sightings reported"), "{log}");
}

#[test]
fn unreachable_misp_is_a_warning_and_intake_runs() {
    let closed = free_port();
    let misp = MispZmq::bind();
    let mut bus = start_bus(
        &format!(
            "zmq:\n  host: 127.0.0.1\n  port: {}\napi:\n  host: http://127.0.0.1:{closed}\n  key: k\n  retries: 1\n  retry_max_delay: 0.05",
            misp.port
        ),
        &[],
    );
    bus.bus.wait_for("is not usable yet");
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    misp.sync(&[&c]);
    let publisher = bus.publisher();
    publisher.sync(&[&c]);
    publisher.sighting(&sighting(1, &uuid(TAG, 1), "2021-05-03T10:00:01Z"));
    bus.bus.wait_for("Failed to add sighting to MISP");
    assert!(bus.bus.log().contains("MISP is not reachable"), "{}", bus.bus.log());
    let end = uuid(END_TAG, 6);
    misp.attribute(&domain_notification(&end, "end.example", "add", true));
    assert_eq!(recv_until_skipping_sync(&c, &format!("indicator--{end}")).len(), 1);
    assert!(bus.bus.terminate().success());
}

#[test]
fn api_key_from_a_file_or_the_environment() {
    let rest = MispRest::start("file-key");
    let misp = MispZmq::bind();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("misp.key");
    std::fs::write(&key_file, "file-key\n").unwrap();
    let mut bus = start_bus(
        &format!(
            "zmq:\n  host: 127.0.0.1\n  port: {}\napi:\n  host: {}\n  key_file: {}",
            misp.port,
            rest.url(),
            key_file.display()
        ),
        &[],
    );
    bus.bus.wait_for("Reporting sightings to MISP 2.4.200");
    assert!(!bus.bus.log().contains("file-key"), "the key was logged");
    bus.bus.terminate();

    let rest = MispRest::start("env-key");
    let mut bus = start_bus(
        &format!("zmq:\n  host: 127.0.0.1\n  port: {}\napi:\n  host: {}\n  key: from-the-file", misp.port, rest.url()),
        &[("THREATBUS_PLUGINS__APPS__MISP__API__KEY", "env-key")],
    );
    bus.bus.wait_for("Reporting sightings to MISP 2.4.200");
    assert_eq!(rest.requests()[0].header("Authorization"), Some("env-key"));
    bus.bus.terminate();
}

#[test]
fn without_api_intake_runs_and_the_plugin_says_why_once() {
    let misp = MispZmq::bind();
    let mut bus = start_bus(&format!("zmq:\n  host: 127.0.0.1\n  port: {}", misp.port), &[]);
    let a = bus.subscribe(json!("stix2/indicator"), 7);
    misp.sync(&[&a]);
    let publisher = bus.publisher();
    publisher.sighting(&sighting(1, &uuid(TAG, 1), "2021-05-03T10:00:01Z"));
    let end = uuid(END_TAG, 7);
    misp.attribute(&domain_notification(&end, "end.example", "add", true));
    assert_eq!(recv_until_skipping_sync(&a, &format!("indicator--{end}")).len(), 1);
    assert!(bus.bus.terminate().success());
    assert_eq!(bus.bus.count("no api section, so"), 1, "{}", bus.bus.log());
}

#[test]
fn config_errors_name_the_key() {
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_misp"]);
    for (section, needle) in [
        ("zmq:\n        host: 127.0.0.1\n        prot: 1", "prot"),
        ("kafka:\n        topics: [t]\n        config: {group.id: g}", "bootstrap.servers"),
        ("zmq: {}\n      api:\n        host: https://misp.example\n        ssl: true", "api.key"),
        ("zmq: {}\n      filter:\n        - org: [1]", "org"),
    ] {
        let yaml = format!("plugins:\n  backbones:\n    inmem: {{}}\n  apps:\n    misp:\n      {section}\n");
        let mut bus = Bus::start(&yaml, dir.path());
        let status = bus.wait_exit(WAIT).expect("the bus exits on a bad misp config");
        assert!(!status.success());
        let log = bus.log();
        assert!(log.contains(needle) && log.contains("misp"), "{needle}: {log}");
    }
}

#[test]
fn the_example_configs_misp_section_is_valid() {
    // Uncomment the misp section of config.yaml.example and run it (with
    // the ZeroMQ publisher of a MISP double; its Kafka broker and MISP
    // instance do not exist, which is a warning, not an error).
    let section = example_app_section("misp");
    let misp = MispZmq::bind();
    let section = section.replace("port: 50000", &format!("port: {}", misp.port));
    let yaml = format!("plugins:\n  backbones:\n    inmem: {{}}\n  apps:\n{section}");
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_misp"]);
    let mut bus = Bus::start(&yaml, dir.path());
    bus.wait_for("MISP app plugin started");
    assert!(bus.terminate().success(), "{}", bus.log());
}

#[test]
fn tls_is_verified_unless_configured_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (rest, ca) = MispRest::start_tls("test-key", dir.path());
    let misp = MispZmq::bind();
    let zmq = format!("zmq:\n  host: 127.0.0.1\n  port: {}", misp.port);
    // Default (ssl: true): a certificate nobody trusts is refused.
    let mut bus = start_bus(&format!("{zmq}\napi:\n  host: {}\n  key: test-key\n  retries: 0", rest.url()), &[]);
    bus.bus.wait_for("is not usable yet");
    assert!(rest.requests().is_empty(), "a request went through an untrusted TLS connection");
    bus.bus.terminate();
    // The CA file (here the self-signed certificate itself) is trusted.
    let mut bus =
        start_bus(&format!("{zmq}\napi:\n  host: {}\n  key: test-key\n  ssl: {}", rest.url(), ca.display()), &[]);
    bus.bus.wait_for("Reporting sightings to MISP 2.4.200");
    bus.bus.terminate();
    // ssl: false, as the original's option, turns verification off.
    let mut bus = start_bus(&format!("{zmq}\napi:\n  host: {}\n  key: test-key\n  ssl: false", rest.url()), &[]);
    bus.bus.wait_for("Reporting sightings to MISP 2.4.200");
    bus.bus.terminate();
}
