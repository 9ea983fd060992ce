//! No plugin code runs to list, inspect or skip a plugin: the host reads a
//! plugin's manifest from the file. The fixture `ctorapp` has an ELF
//! constructor that leaves a marker file whenever anything loads it.

mod host_support;

use std::path::{Path, PathBuf};

use host_support::*;
use serde_json::json;
use threatbus_integration_tests::*;

const CTOR_APP: &str = "threatbus_test_ctor_app";

/// A plugin directory with inmem, testapp and ctorapp, and the marker path.
fn setup() -> (PluginDir, tempfile::TempDir, PathBuf) {
    let dir = standard_dir();
    dir.add(CTOR_APP);
    let scratch = tempfile::tempdir().expect("tempdir");
    let marker = scratch.path().join("constructor-ran");
    (dir, scratch, marker)
}

fn env(marker: &Path) -> [(&'static str, &str); 1] {
    [("CTOR_FIXTURE_MARKER", marker.to_str().expect("utf-8 path"))]
}

#[test]
fn list_and_inspect_do_not_load_the_plugin() {
    let (dir, _scratch, marker) = setup();
    let out = run_threatbus(&["plugins", "list", "--plugin-dir", dir.path().to_str().unwrap()], &env(&marker));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(line_with(&text, "libthreatbus_test_ctor_app.so").starts_with("ok"), "{text}");
    assert!(!marker.exists(), "`plugins list` ran the plugin's constructor");

    let file = dir.path().join("libthreatbus_test_ctor_app.so");
    let out = run_threatbus(&["plugins", "inspect", file.to_str().unwrap()], &env(&marker));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(line_with(&text, "name:").ends_with("ctorapp"), "{text}");
    assert!(!marker.exists(), "`plugins inspect` ran the plugin's constructor");
    println!("list and inspect read ctorapp's manifest; its constructor never ran");
}

#[test]
fn run_loads_only_configured_plugins() {
    let (dir, _scratch, marker) = setup();
    let cfg = config_file(&config(json!({})));
    let args = ["-c", cfg.path().to_str().unwrap(), "--plugin-dir", dir.path().to_str().unwrap()];
    let mut bus = Bus::spawn_args(&args.map(std::ffi::OsStr::new), &env(&marker));
    bus.wait_for("Threat Bus running: backbones [inmem], apps []");
    assert!(bus.log().contains("Ignoring installed, but unconfigured app 'ctorapp'"), "{}", bus.log());
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
    assert!(!marker.exists(), "an unconfigured plugin's constructor ran");

    // The control: configured, the library is loaded and its constructor runs.
    let cfg = config_file(&config(json!({ "ctorapp": {} })));
    let args = ["-c", cfg.path().to_str().unwrap(), "--plugin-dir", dir.path().to_str().unwrap()];
    let mut bus = Bus::spawn_args(&args.map(std::ffi::OsStr::new), &env(&marker));
    bus.wait_for("ctorapp started");
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
    assert!(marker.exists(), "the fixture's constructor did not run when the plugin was configured");
    println!("ctorapp's constructor ran only when the config named it");
}
