//! Misbehaving plugins: init errors and init panics stop start-up; a panic
//! later (plugin thread, snapshot) is contained and the bus keeps going.

mod host_support;

use host_support::*;
use serde_json::json;
use threatbus_integration_tests::*;

#[test]
fn init_error_stops_startup() {
    let dir = standard_dir();
    let out =
        run_to_exit(&config(json!({ "testapp": { "fail_init": "the frobnicator is missing" } })), dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    let line = line_with(&text, "threatbus: ");
    assert_contains_all(line, &["plugin 'testapp' failed to initialize", "the frobnicator is missing"], &text);
}

#[test]
fn init_panic_stops_startup() {
    let dir = standard_dir();
    let out = run_to_exit(&config(json!({ "testapp": { "panic_init": true } })), dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    let line = line_with(&text, "threatbus: ");
    assert_contains_all(
        line,
        &["plugin 'testapp' panicked during initialization", "testapp panics in init as configured"],
        &text,
    );
}

#[test]
fn invalid_plugin_config_stops_startup_naming_plugin_and_key() {
    let dir = standard_dir();
    let out = run_to_exit(&config(json!({ "testapp": { "subscribe": ["stix2/"], "bogus_key": 1 } })), dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    let line = line_with(&text, "threatbus: ");
    assert_contains_all(line, &["invalid config for plugin 'testapp'", "bogus_key"], &text);
}

/// testapp's thread panics; testap2 keeps publishing and receiving through
/// the bus afterwards, and SIGTERM still exits 0.
#[test]
fn thread_panic_is_contained() {
    let dir = standard_dir();
    add_testap2(&dir);
    let (out, go) = (dir.path().join("out2.jsonl"), dir.path().join("go"));
    let msgs: Vec<_> = (0..5).map(indicator).collect();
    let apps = json!({
        "testapp": { "panic_in_thread_when_file": dir.path().join("panic") },
        "testap2": {
            "subscribe": ["stix2/indicator"],
            "output": out,
            "later": [{ "when_file": go, "publish": msgs.iter().map(publish).collect::<Vec<_>>() }],
        },
    });
    let mut bus = Bus::start(&config(apps), dir.path());
    bus.wait_for("Threat Bus running: backbones [inmem], apps [testap2, testapp]");
    trigger(&dir.path().join("panic"));
    bus.wait_for("plugin 'testapp' failed and is no longer called");
    assert!(bus.log().contains("testapp thread panics as configured"), "{}", bus.log());
    trigger(&go);
    let got = wait_output(&bus, &out, msgs.len());
    assert_eq!(ids(got.iter().map(|r| &r.json)), ids(&msgs));
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
    assert!(!bus.log().contains("plugin 'testap2' failed"), "{}", bus.log());
}

/// A thread that panics while the plugin is still starting is reported too.
///
/// Ignored: the host loses a failure reported before `start_plugin` has
/// registered the plugin (`Bus::report_failure` finds no plugin of that
/// name), so this fails whenever the panic wins the race.
#[test]
fn thread_panic_during_init_is_contained() {
    let dir = standard_dir();
    let apps = json!({ "testapp": { "panic_in_thread_after_ms": 0 } });
    let mut bus = Bus::start(&config(apps), dir.path());
    bus.wait_for("Threat Bus running");
    bus.wait_for("testapp thread panics as configured");
    bus.wait_for("plugin 'testapp' failed");
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
}

/// testapp panics while serving the snapshot that testap2 requested; the
/// bus marks it failed, keeps routing for testap2 and exits 0 on SIGTERM.
#[test]
fn snapshot_panic_is_contained() {
    let dir = standard_dir();
    add_testap2(&dir);
    let (live, snap) = (dir.path().join("live.jsonl"), dir.path().join("snap.jsonl"));
    let (go1, go2) = (dir.path().join("go1"), dir.path().join("go2"));
    let msgs: Vec<_> = (0..3).map(indicator).collect();
    let apps = json!({
        "testapp": { "panic_in_snapshot": true },
        "testap2": {
            "subscribe": ["stix2/indicator"],
            "output": live,
            "later": [
                { "when_file": go1, "subscribers": [{ "topics": ["stix2/indicator"], "snapshot_secs": 3600, "output": snap }] },
                { "when_file": go2, "publish": msgs.iter().map(publish).collect::<Vec<_>>() },
            ],
        },
    });
    let mut bus = Bus::start(&config(apps), dir.path());
    bus.wait_for("Threat Bus running");
    trigger(&go1);
    bus.wait_for("plugin 'testapp' failed and is no longer called");
    assert!(bus.log().contains("testapp panics in snapshot as configured"), "{}", bus.log());
    trigger(&go2);
    for f in [&live, &snap] {
        let got = wait_output(&bus, f, msgs.len());
        assert_eq!(ids(got.iter().map(|r| &r.json)), ids(&msgs), "{}", f.display());
    }
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
}

/// When the only backbone fails, no message can be routed: the bus says
/// why and exits with status 1 (so that systemd restarts it) instead of
/// accepting messages it cannot deliver.
#[test]
fn bus_exits_non_zero_when_every_backbone_failed() {
    let dir = PluginDir::with(&["threatbus_test_backbone", TESTAPP]);
    let cfg = json!({
        "plugins": {
            "backbones": { "testbone": { "panic_on_message": true } },
            "apps": { "testapp": { "publish": [publish(&indicator(1))] } },
        },
        "core": { "stop_timeout": 2 },
    });
    let out = run_to_exit(&serde_json::to_string(&cfg).unwrap(), dir.path(), &[]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("plugin 'testbone' failed and is no longer called"), "{text}");
    assert!(text.contains("every backbone has failed, so no message can be routed"), "{text}");
}

/// A backbone's direct inbound queue runs on the sending app's thread: a
/// panic there is caught at the boundary, fails that backbone (the app's
/// send is refused), and with no backbone left the bus exits with status 1.
#[test]
fn a_panic_in_a_direct_route_fails_the_backbone_not_the_app() {
    let dir = PluginDir::with(&["threatbus_test_backbone", TESTAPP]);
    let go = dir.path().join("go");
    let cfg = json!({
        "plugins": {
            "backbones": { "testbone": { "panic_on_direct": true } },
            "apps": { "testapp": { "later": [{ "when_file": go, "publish": [publish(&indicator(1))] }] } },
        },
        "core": { "stop_timeout": 2 },
    });
    let mut bus = Bus::start(&serde_json::to_string(&cfg).unwrap(), dir.path());
    bus.wait_for("Threat Bus running");
    trigger(&go);
    let status = bus.wait_exit(WAIT).unwrap_or_else(|| panic!("the bus did not exit:\n{}", bus.log()));
    let text = bus.log();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("testbone offered a direct inbound queue; taken: true"), "{text}");
    assert!(text.contains("backbone 'testbone' routes the apps' messages on the apps' own threads"), "{text}");
    assert!(
        text.contains("plugin 'testbone' failed and is no longer called: its direct inbound route panicked"),
        "{text}"
    );
    assert!(text.contains("publishing failed: queue closed"), "the app's send was refused:\n{text}");
    assert!(!text.contains("plugin 'testapp' failed"), "the app is not blamed:\n{text}");
    assert!(text.contains("every backbone has failed, so no message can be routed"), "{text}");
    println!("a panic in testbone's direct route failed testbone, not the sending app; the bus exited with 1");
}
