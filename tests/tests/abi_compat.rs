//! The ABI's minor-version promise, both ways, with real builds:
//! * a plugin built against the frozen ABI 1.0 definitions (not against
//!   threatbus-plugin-api) loads in the current host and carries messages,
//!   and the host's metrics count what it routed;
//! * an app built against the frozen ABI 1.0 definitions sends through the
//!   `inq` handle the current host gives it (inmem's direct queue) and a
//!   current app receives what it sent;
//! * a host of ABI minor + 1 (one entry appended to the host and plugin
//!   tables, the `abi-next` build) loads the normal plugins, reads the
//!   entry they lack as absent, and carries messages;
//! * a plugin of a higher minor than the host is refused with one line
//!   that says to upgrade the host, before any of its code runs.

mod host_support;
mod metrics_support;
mod zmq_support;

use serde_json::json;
use threatbus_integration_tests::*;
use threatbus_plugin_api::abi::{ABI_MAJOR, ABI_MINOR};
use zmq_support::*;

const TAG: u32 = 0x0000_0ab1;

/// Publishes an indicator and a sighting through the bus's zmq app and
/// checks that a subscriber receives both, unchanged.
fn roundtrip(bus: &ZmqBus) {
    let client = bus.subscribe(json!(["stix2/indicator", "stix2/sighting"]), 0);
    let publisher = bus.publisher();
    publisher.sync(&[&client]);
    let indicator = indicator_json(TAG, 1);
    let sighting = sighting_json(TAG, 2, &indicator_id(TAG, 1));
    publisher.indicator(&indicator);
    publisher.sighting(&sighting);
    assert_eq!(client.recv_real().json, indicator);
    assert_eq!(client.recv_real().json, sighting);
}

#[test]
fn frozen_abi_1_0_plugin_runs_in_the_current_host() {
    let dir = PluginDir::with(&["threatbus_app_zmq"]);
    dir.add_file(&frozen_abi_1_0_backbone(), "libthreatbus_frozen_abi_1_0_backbone.so");
    let out = run_threatbus(&["plugins", "list", "--plugin-dir", dir.path().to_str().unwrap()], &[]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listed.lines().find(|l| l.contains("frozen-inmem")).unwrap_or_else(|| panic!("not listed:\n{listed}"));
    assert!(line.starts_with("ok") && line.contains("(ABI 1.0)"), "{listed}");

    let config = format!("{}metrics:\n  port: 0\n", config_with_backbone("frozen-inmem", Ports::ANY, ""));
    let mut bus = ZmqBus::from_started(Bus::start(&config, dir.path()), dir);
    bus.bus.wait_for(&format!("frozen ABI 1.0 backbone started in a host of ABI {ABI_MAJOR}.{ABI_MINOR}"));
    let addr = metrics_support::metrics_addr(&mut bus.bus);
    roundtrip(&bus);
    // The host counts what the 1.0 backbone routed: it sees every queue
    // the backbone was handed and every message put into one.
    let scrape = metrics_support::scrape_until(&addr, "the 1.0 backbone's deliveries", |s| {
        s.count("threatbus_messages_delivered_total", &[("plugin", "zmq"), ("topic", "stix2/sighting")]) >= 1
    });
    let frozen = [("plugin", "frozen-inmem"), ("kind", "backbone"), ("abi", "1.0")];
    assert_eq!(scrape.value("threatbus_plugin_info", &frozen), Some(1.0), "{}", scrape.text);
    assert_eq!(
        scrape.value("threatbus_plugin_state", &[("plugin", "frozen-inmem"), ("state", "running")]),
        Some(1.0),
        "{}",
        scrape.text
    );
    let status = bus.bus.terminate();
    assert!(status.success(), "{status}\n{}", bus.bus.log());
    let log = bus.bus.log();
    assert!(log.contains("frozen ABI 1.0 backbone stopped"), "{log}");
    assert!(log.contains("frozen ABI 1.0 backbone destroyed"), "destroy runs after a successful stop:\n{log}");
    println!("an ABI 1.0 plugin (frozen definitions) carried an indicator and a sighting in the ABI {ABI_MAJOR}.{ABI_MINOR} host");
}

#[test]
fn frozen_abi_1_0_app_sends_through_the_direct_inbound_queue() {
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_test_app"]);
    dir.add_file(&frozen_abi_1_0_app(), "libthreatbus_frozen_abi_1_0_app.so");
    let out = dir.path().join("out.jsonl");
    // Apps start in name order: testapp subscribes before z-frozen-app sends.
    let config = json!({ "plugins": {
        "backbones": { "inmem": {} },
        "apps": { "testapp": { "subscribe": ["stix2/"], "output": out }, "z-frozen-app": {} },
    }});
    let mut bus = Bus::start(&serde_json::to_string(&config).unwrap(), dir.path());
    bus.wait_for("Threat Bus running");
    let log = bus.log();
    assert!(log.contains("backbone 'inmem' routes the apps' messages on the apps' own threads"), "{log}");
    assert!(
        log.contains(&format!(
            "frozen ABI 1.0 app in a host of ABI {ABI_MAJOR}.{ABI_MINOR}: indicator send status 0, sighting send status 0"
        )),
        "{log}"
    );
    // Both were routed before the send returned, so they are in testapp's
    // queue; its writer thread puts them into the output file.
    let got = host_support::wait_output(&bus, &out, 2);
    assert_eq!(
        host_support::ids(got.iter().map(|r| &r.json)),
        ["indicator--5d1f2a0e-6f33-4c8e-a0a1-10e0f0a1b100", "sighting--5d1f2a0e-6f33-4c8e-a0a1-10e0f0a1b101"],
        "{got:#?}"
    );
    let status = bus.terminate();
    assert!(status.success(), "{status}\n{}", bus.log());
    println!("an ABI 1.0 app (frozen definitions) sent an indicator and a sighting through inmem's direct queue in the ABI {ABI_MAJOR}.{ABI_MINOR} host");
}

#[test]
fn newer_host_loads_current_plugins_and_reads_the_new_entry_as_absent() {
    let next = abi_next_artifacts();
    let host = next.join("threatbus");
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let out = run_host(&host, &["plugins", "list", "--plugin-dir", dir.path().to_str().unwrap()], &[]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let api = threatbus_plugin_api::abi::API_VERSION;
    assert!(listed.contains(&format!("(host plugin-api {api}, ABI {ABI_MAJOR}.{})", ABI_MINOR + 1)), "{listed}");
    let current = format!("(ABI {ABI_MAJOR}.{ABI_MINOR})");
    assert_eq!(listed.lines().filter(|l| l.starts_with("ok") && l.contains(&current)).count(), 2, "{listed}");

    let config = config(Ports::ANY, "");
    let mut bus = ZmqBus::from_started(Bus::start_bin(&host, &config, dir.path()), dir);
    roundtrip(&bus);
    let log = bus.bus.log();
    for plugin in ["inmem", "zmq"] {
        let absent = format!(
            "plugin '{plugin}' predates ABI {ABI_MAJOR}.{}: its table has no 'next_plugin_entry' entry",
            ABI_MINOR + 1
        );
        assert!(log.contains(&absent), "{absent:?} missing:\n{log}");
    }
    let status = bus.bus.terminate();
    assert!(status.success(), "{status}\n{}", bus.bus.log());
    println!(
        "the ABI {ABI_MAJOR}.{} host ran the ABI {ABI_MAJOR}.{ABI_MINOR} inmem and zmq plugins and saw their tables lack the new entry",
        ABI_MINOR + 1
    );
}

#[test]
fn plugin_of_a_higher_minor_is_refused_before_it_runs() {
    let next = abi_next_artifacts();
    let dir = PluginDir::with(&["threatbus_backbone_inmem"]);
    let newer = dir.add_file(&next.join("libthreatbus_test_app.so"), "libthreatbus_test_app.so");
    let needs = format!("needs plugin ABI >= {ABI_MAJOR}.{} but threatbus", ABI_MINOR + 1);
    let provides = format!("provides {ABI_MAJOR}.{ABI_MINOR}; upgrade threatbus");
    let says = |l: &str| l.contains(&needs) && l.contains(&provides);
    let out = run_threatbus(&["plugins", "inspect", newer.to_str().unwrap()], &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.lines().any(|l| l.starts_with("status:") && says(l)), "{needs:?} … {provides:?} missing:\n{text}");

    let config = "plugins:\n  backbones:\n    inmem: {}\n  apps:\n    testapp: {}\n";
    let cfg = config_file(config);
    let out = run_threatbus(&["-c", cfg.path().to_str().unwrap(), "--plugin-dir", dir.path().to_str().unwrap()], &[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    let line = text.lines().find(|l| l.contains("config enables 'testapp'")).unwrap_or_else(|| panic!("{text}"));
    assert!(says(line), "{line}");
    println!(
        "a plugin of ABI {ABI_MAJOR}.{} was refused by the ABI {ABI_MAJOR}.{ABI_MINOR} host: {line}",
        ABI_MINOR + 1
    );
}
