//! The tenzir plugin in the real bus (inmem, zmq, tenzir `.so`s) against a
//! real Tenzir 6.20 node: indicators from a zmq app land in the lookup
//! table and removals take them out; historical events come back as RETRO
//! sightings (capped), new events as LIVE sightings; transform_context and
//! sink change what is reported; a killed node is survived.

mod tenzir_support;
mod zmq_support;

use std::collections::HashMap;

use serde_json::{json, Value};
use tenzir_support::*;
use zmq_support::*;

const TAG: u32 = 0x7e42_0000;

/// A zmq app that publishes indicators and one that receives sightings.
fn apps(bus: &ZmqBus) -> (Publisher, Client) {
    let sightings = bus.subscribe(json!("stix2/sighting"), 0);
    let p = bus.publisher();
    p.sync(&[&sightings]);
    (p, sightings)
}

/// Imports `event` (a TQL record) until the live lookup, which starts in
/// the background, reports it: the first LIVE sighting.
fn first_live_sighting(node: &Node, c: &Client, event: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        assert!(std::time::Instant::now() < deadline, "no LIVE sighting");
        node.run(&format!("from {event}\nimport"));
        if let Some(d) = c.try_recv(std::time::Duration::from_secs(2)) {
            let v = d.value();
            if v["x_threatbus_match_type"] == "LIVE" {
                return v;
            }
            assert!(d.is_warmup() || d.kind != "sighting", "not a LIVE sighting: {v}");
        }
    }
}

/// The next sighting that is not a warm-up's.
fn next_sighting(c: &Client) -> Value {
    loop {
        let d = c.recv_real();
        let v = d.value();
        if d.kind == "sighting" && v["sighting_of_ref"].as_str().is_some_and(|r| r.contains(&format!("{TAG:08x}"))) {
            return v;
        }
    }
}

#[test]
fn indicators_land_in_the_lookup_table_and_removals_take_them_out() {
    let node = Node::start();
    let mut bus = start_bus(&node, "snapshot: 0\nretro_match: false\n");
    let (p, _c) = apps(&bus);
    let patterns = [
        "[ipv4-addr:value = '6.6.6.6']",
        "[ipv6-addr:value = '2001:db8::1']",
        "[ipv4-addr:value = '10.0.0.0/8']",
        "[domain-name:value = 'evil.example']",
        "[url:value = 'http://evil.example/x']",
        "[file:hashes.MD5 = 'ab000000000000000000000000000000']",
        "[mac-addr:value = '00:11:22:33:44:55']",
    ];
    for (n, pat) in patterns.iter().enumerate() {
        p.indicator(&indicator(TAG, n as u64, pat, false));
    }
    p.indicator(&indicator(TAG, 3, patterns[3], true));
    bus.bus.wait_for("removing indicators: 1 done");
    let id = |n| indicator_id(TAG, n);
    let ours: Vec<(String, String)> =
        node.table("threatbus").into_iter().filter(|(_, i)| i.contains(&format!("{TAG:08x}"))).collect();
    let mut want = vec![
        ("6.6.6.6".to_string(), id(0)),
        ("2001:db8::1".to_string(), id(1)),
        ("10.0.0.0/8".to_string(), id(2)),
        ("http://evil.example/x".to_string(), id(4)),
        ("ab000000000000000000000000000000".to_string(), id(5)),
    ];
    want.sort();
    assert_eq!(ours, want);
    // The warm-up indicators of the zmq app are in the table too; the MAC
    // address was not matchable.
    assert!(bus.bus.terminate().success());
    assert!(bus.bus.log().contains("not matchable"), "{}", bus.bus.log());
    assert!(bus.bus.log().contains("mac-addr:value is not supported"), "{}", bus.bus.log());
}

#[test]
fn historical_events_are_retro_sightings_and_new_ones_live_sightings() {
    let node = Node::start();
    node.run(
        "from {ts: 2021-01-01T00:00:00Z, src_ip: 6.6.6.6, dest_ip: 1.1.1.1, query: \"a.example\"},
              {ts: 2021-01-02T00:00:00Z, src_ip: 2.2.2.2, dest_ip: 6.6.6.6, query: \"b.example\"},
              {ts: 2021-01-03T00:00:00Z, id: {orig_h: 6.6.6.6, resp_h: 3.3.3.3}},
              {ts: 2021-01-04T00:00:00Z, src_ip: 4.4.4.4, dest_ip: 5.5.5.5, query: \"evil.example\"}
         import",
    );
    let mut bus = start_bus(&node, "snapshot: 0\nlive_match: true\nretro_match: true\nretro_match_max_events: 2\n");
    let (p, c) = apps(&bus);
    p.indicator(&indicator(TAG, 1, "[ipv4-addr:value = '6.6.6.6']", false));
    p.indicator(&indicator(TAG, 2, "[domain-name:value = 'evil.example']", false));
    // RETRO: two of the three events with 6.6.6.6 (the cap), the one with
    // evil.example.
    let mut retro: HashMap<String, Vec<Value>> = HashMap::new();
    while retro.values().map(Vec::len).sum::<usize>() < 3 {
        let s = next_sighting(&c);
        assert_eq!(s["x_threatbus_match_type"], "RETRO", "{s}");
        retro.entry(s["sighting_of_ref"].as_str().unwrap().to_string()).or_default().push(s);
    }
    let ip = &retro[&indicator_id(TAG, 1)];
    assert_eq!(ip.len(), 2);
    for s in ip {
        assert_eq!(s["x_threatbus_indicator_value"], "6.6.6.6");
        let ctx = &s["x_threatbus_sighting_context"];
        assert!(ctx.to_string().contains("6.6.6.6"), "{s}");
        assert_eq!(s["last_seen"], ctx["ts"], "{s}");
    }
    let dom = &retro[&indicator_id(TAG, 2)];
    assert_eq!(dom[0]["x_threatbus_sighting_context"]["query"], "evil.example");
    assert_eq!(dom[0]["last_seen"], "2021-01-04T00:00:00Z");
    bus.bus.wait_for(&format!("Historical search for {}: stopped at 2 events", indicator_id(TAG, 1)));

    // LIVE: events imported from now on.
    let live =
        first_live_sighting(&node, &c, "{ts: 2022-02-02T02:02:02Z, src_ip: 7.7.7.7, dest_ip: 6.6.6.6, note: \"live\"}");
    assert_eq!(live["sighting_of_ref"], indicator_id(TAG, 1));
    assert_eq!(live["last_seen"], "2022-02-02T02:02:02Z");
    assert_eq!(live["x_threatbus_sighting_context"]["note"], "live");
    assert!(live["x_threatbus_sighting_context"].get("threatbus_match").is_none(), "{live}");
    assert!(bus.bus.terminate().success());
}

#[test]
fn transform_context_and_sink_change_what_is_reported() {
    let node = Node::start();
    node.run("from {ts: 2021-01-01T00:00:00Z, src_ip: 6.6.6.6}\nimport");
    let transform = r#"python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'ioc': '%ioc', 'type': '%matchtype', 'src': d['src_ip']}))""#;
    let mut bus = start_bus(&node, &format!("snapshot: 0\ntransform_context: '{}'\n", transform.replace('\'', "''")));
    let (p, c) = apps(&bus);
    p.indicator(&indicator(TAG, 1, "[ipv4-addr:value = '6.6.6.6']", false));
    let s = next_sighting(&c);
    assert_eq!(s["x_threatbus_sighting_context"], json!({"ioc": "6.6.6.6", "type": "RETRO", "src": "6.6.6.6"}));
    assert!(bus.bus.terminate().success());

    // A failing transform drops the sighting, with a log line.
    let mut bus = start_bus(&node, "snapshot: 0\ntransform_context: 'sh -c \"echo broken >&2; exit 3\"'\n");
    let (p, _c) = apps(&bus);
    p.indicator(&indicator(TAG, 2, "[ipv4-addr:value = '6.6.6.6']", false));
    bus.bus.wait_for("transform_context failed: sh exited with exit status: 3: broken");
    assert!(bus.bus.terminate().success());

    // sink: STDOUT prints the context instead of reporting a sighting.
    let mut bus = start_bus(&node, "snapshot: 0\nsink: STDOUT\n");
    let (p, c) = apps(&bus);
    p.indicator(&indicator(TAG, 3, "[ipv4-addr:value = '6.6.6.6']", false));
    bus.bus.wait_for("{\"src_ip\":\"6.6.6.6\",\"ts\":\"2021-01-01T00:00:00Z\"}");
    p.sighting(&sighting_json(TAG + 1, 1, &indicator_id(TAG + 1, 1)));
    let d = c.recv_real();
    assert_eq!(d.id(), sighting_id(TAG + 1, 1), "a sighting was reported despite the sink: {d:?}");
    assert!(bus.bus.terminate().success());
}

#[test]
fn a_killed_node_is_survived() {
    let node = Node::start();
    let mut bus = start_bus(&node, "snapshot: 0\nlive_match: true\nretro_match: false\n");
    let (p, c) = apps(&bus);
    p.indicator(&indicator(TAG, 1, "[ipv4-addr:value = '6.6.6.6']", false));
    node.wait_in_table("threatbus", &indicator_id(TAG, 1));
    bus.bus.wait_for("Live matching in Tenzir at");
    let mut node = node;
    node.kill();
    // The node is gone: the update fails and is retried, the live lookup
    // ends and is restarted, and the bus delivers to apps meanwhile.
    p.indicator(&indicator(TAG, 2, "[ipv4-addr:value = '8.8.8.8']", false));
    bus.bus.wait_for("adding indicators failed");
    bus.bus.wait_for(&format!("Live matching in Tenzir at {} ended", node.endpoint()));
    let ind = bus.subscribe(json!("stix2/indicator"), 0);
    p.sync(&[&ind]);
    p.indicator(&indicator(TAG + 2, 1, "[domain-name:value = 'flowing.example']", false));
    assert_eq!(ind.recv_until(&indicator_id(TAG + 2, 1)).last().unwrap().id(), indicator_id(TAG + 2, 1));
    // The node is back: the update goes through, live matching resumes.
    let node = node.restart();
    bus.bus.wait_for("is back: adding indicators done");
    let live = first_live_sighting(&node, &c, "{ts: 2022-02-02T02:02:02Z, src_ip: 8.8.8.8}");
    assert_eq!(live["sighting_of_ref"], indicator_id(TAG, 2));
    assert!(bus.bus.terminate().success());
}

#[test]
fn the_example_configs_tenzir_section_is_valid() {
    let node = Node::start();
    let example =
        std::fs::read_to_string(threatbus_integration_tests::workspace_root().join("config.yaml.example")).unwrap();
    let start = example.find("    # tenzir:").expect("a tenzir section in config.yaml.example");
    let section: String = example[start..]
        .lines()
        .take_while(|l| l.starts_with("    #"))
        .map(|l| format!("{}\n", &l[6..]))
        .filter(|l| !l.trim_start().starts_with("tenzir:"))
        .map(|l| l.strip_prefix("  ").unwrap_or(&l).to_string())
        .collect();
    let section = section
        .replace("endpoint: \"127.0.0.1:5158\"", "")
        .replace("tenzir_binary: tenzir", "")
        .replace("snapshot: 30", "snapshot: 0");
    let mut bus = start_bus(&node, &section);
    bus.bus.wait_for("Live matching in Tenzir at");
    assert!(bus.bus.terminate().success(), "{}", bus.bus.log());
}
