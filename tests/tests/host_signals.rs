//! Shutdown: SIGTERM, SIGINT and SIGHUP stop the bus cleanly (exit 0, apps
//! before backbones), a plugin that does not stop is abandoned after its
//! share of the stop deadline, and a second signal exits at once.

mod host_support;

use host_support::*;
use serde_json::json;
use threatbus_integration_tests::*;

fn stops_cleanly(sig: i32) {
    let dir = standard_dir();
    let out = dir.path().join("out.jsonl");
    let apps = json!({ "testapp": {
        "subscribe": ["stix2/"],
        "output": out,
        "publish": [publish(&indicator(1))],
    }});
    let mut bus = Bus::start(&config(apps), dir.path());
    bus.wait_for("Threat Bus running: backbones [inmem], apps [testapp]");
    wait_output(&bus, &out, 1);
    bus.signal(sig);
    match bus.wait_exit(WAIT) {
        Some(st) => assert!(st.success(), "{st:?}\n{}", bus.log()),
        None => panic!("bus did not exit after signal {sig}; output:\n{}", bus.log()),
    }
    let log = bus.log();
    assert!(log.contains(&format!("received signal {sig}; shutting down")), "{log}");
    // Apps stop before backbones.
    let app = log.find("testapp stopped").expect("testapp stopped");
    let backbone = log.find("In-memory backbone stopped").expect("inmem stopped");
    assert!(app < backbone, "{log}");
}

#[test]
fn sigterm_stops_cleanly() {
    stops_cleanly(libc::SIGTERM);
}

#[test]
fn sigint_stops_cleanly() {
    stops_cleanly(libc::SIGINT);
}

/// SIGHUP stops the bus cleanly too (it used to kill it with status 129);
/// a service manager restarts it to reload config and plugins.
#[test]
fn sighup_stops_cleanly() {
    stops_cleanly(libc::SIGHUP);
}

/// A plugin whose stop() never returns is abandoned after its share of
/// core.stop_timeout; the backbone still stops.
#[test]
fn hanging_stop_is_abandoned_after_the_deadline() {
    let dir = standard_dir();
    let apps = json!({ "testapp": { "hang_in_stop": true } });
    let mut bus = Bus::start(&config_with(apps, json!({ "core": { "stop_timeout": 0.5 } })), dir.path());
    bus.wait_for("Threat Bus running");
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
    let log = bus.log();
    assert!(log.contains("testapp hangs in stop as configured"), "{log}");
    assert!(log.contains("plugin 'testapp' did not stop within"), "{log}");
    assert!(log.contains("In-memory backbone stopped"), "backbone not stopped after the app deadline:\n{log}");
}

/// A second signal while a plugin hangs in stop() exits at once, long
/// before the (one hour) stop deadline.
#[test]
fn second_signal_exits_at_once() {
    let dir = standard_dir();
    let apps = json!({ "testapp": { "hang_in_stop": true } });
    let mut bus = Bus::start(&config_with(apps, json!({ "core": { "stop_timeout": 3600 } })), dir.path());
    bus.wait_for("Threat Bus running");
    bus.signal(libc::SIGTERM);
    bus.wait_for("testapp hangs in stop as configured");
    bus.signal(libc::SIGINT);
    let st = match bus.wait_exit(WAIT) {
        Some(st) => st,
        None => panic!("bus did not exit after the second signal; output:\n{}", bus.log()),
    };
    assert!(!st.success(), "a forced exit should not report success: {st:?}");
    let log = bus.log();
    assert!(log.contains("second signal"), "{log}");
    assert!(!log.contains("did not stop within"), "{log}");
}
