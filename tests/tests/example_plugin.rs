//! The example plugin for third parties (`examples/echo-app`) runs in the
//! real host: it publishes its configured indicator through the host's
//! validator, receives it back through inmem, and stops with its count;
//! its own counter shows on `/metrics`; a misspelt config key stops
//! start-up naming the key.

mod host_support;
mod metrics_support;

use host_support::*;
use serde_json::json;
use threatbus_integration_tests::*;

const ECHO: &str = "threatbus_example_echo_app";
const CANONICAL: &str = r#"{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[domain-name:value = 'example.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}"#;

#[test]
fn echo_publishes_receives_and_stops() {
    let dir = PluginDir::with(&[INMEM, ECHO]);
    // Compact and reordered: the host's validator canonicalizes it.
    let announce = r#"{"valid_from":"2021-04-20T07:38:22.530Z","pattern_type":"stix","pattern":"[domain-name:value = 'example.com']","modified":"2021-04-20T07:38:22.530Z","created":"2021-04-20T07:38:22.53Z","id":"indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb","type":"indicator"}"#;
    let apps = json!({ "echo": { "topics": ["stix2/indicator"], "announce": announce } });
    let mut bus = Bus::start(&config_with(apps, json!({ "metrics": { "port": 0 } })), dir.path());
    bus.wait_for(&format!("echo #1: stix2/indicator {CANONICAL}"));
    let addr = metrics_support::metrics_addr(&mut bus);
    let s = metrics_support::Scrape::take(&addr);
    assert_eq!(s.value("threatbus_echo_received_total", &[("plugin", "echo")]), Some(1.0), "{}", s.text);
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
    assert!(bus.log().contains("echo stopped after 1 messages (0 dropped)"), "{}", bus.log());
}

#[test]
fn echo_rejects_an_unknown_key() {
    let dir = PluginDir::with(&[INMEM, ECHO]);
    let out = run_to_exit(&config(json!({ "echo": { "topcis": ["stix2/"] } })), dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("invalid config for plugin 'echo': unknown key `topcis`"), "{text}");
}
