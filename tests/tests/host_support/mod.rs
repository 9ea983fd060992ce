//! Helpers shared by the `host_*` integration tests: STIX objects, config
//! building (JSON is valid YAML), broken plugin fixtures and output files of
//! the `testapp` fixture.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use threatbus_integration_tests::*;

/// Crate lib name of the inmem backbone.
pub const INMEM: &str = "threatbus_backbone_inmem";
/// Crate lib name of the test app fixture (plugin name `testapp`).
pub const TESTAPP: &str = "threatbus_test_app";
/// Crate lib name of the shared library without a manifest.
pub const NOT_A_PLUGIN: &str = "threatbus_test_not_a_plugin";

/// A STIX-2.1 indicator with an id derived from `i`, in the canonical form.
pub fn indicator(i: u32) -> Value {
    json!({
        "type": "indicator",
        "spec_version": "2.1",
        "id": format!("indicator--00000000-0000-4000-8000-{i:012x}"),
        "created": "2021-02-03T04:05:06.000Z",
        "modified": "2021-02-03T04:05:06.000Z",
        "pattern": format!("[ipv4-addr:value = '10.0.{}.{}']", i / 256, i % 256),
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": "2021-02-03T04:05:06Z",
    })
}

/// A STIX-2.1 sighting of [`indicator`]`(i)`.
pub fn sighting(i: u32) -> Value {
    json!({
        "type": "sighting",
        "spec_version": "2.1",
        "id": format!("sighting--00000000-0000-4000-9000-{i:012x}"),
        "created": "2021-02-03T04:05:06.000Z",
        "modified": "2021-02-03T04:05:06.000Z",
        "sighting_of_ref": format!("indicator--00000000-0000-4000-8000-{i:012x}"),
    })
}

/// A `publish` entry of the testapp config.
pub fn publish(obj: &Value) -> Value {
    json!({ "kind": obj["type"], "json": obj.to_string() })
}

/// A whole config with the given app sections and inmem as backbone.
pub fn config(apps: Value) -> String {
    config_with(apps, json!({}))
}

/// Like [`config`] with extra top-level keys (e.g. `logging`, `core`).
pub fn config_with(apps: Value, extra: Value) -> String {
    let mut cfg = json!({ "plugins": { "backbones": { "inmem": {} }, "apps": apps } });
    for (k, v) in extra.as_object().expect("extra is an object") {
        cfg[k] = v.clone();
    }
    serde_json::to_string_pretty(&cfg).expect("config serializes")
}

/// A plugin directory with inmem and the test app.
pub fn standard_dir() -> PluginDir {
    PluginDir::with(&[INMEM, TESTAPP])
}

/// Adds a copy of the test app renamed to `testap2`, so that two apps run.
pub fn add_testap2(dir: &PluginDir) -> PathBuf {
    dir.add_bytes(&renamed_plugin(TESTAPP, "testapp", "testap2"), "libthreatbus_test_ap2.so")
}

/// One line of a testapp output file.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub topic: String,
    pub json: Value,
}

/// Reads a testapp output file (missing file = no lines).
pub fn read_output(path: &Path) -> Vec<Received> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l:?}: {e}"));
            let json = v["json"].as_str().unwrap_or_else(|| panic!("no json in {l:?}"));
            Received {
                topic: v["topic"].as_str().expect("topic").to_string(),
                json: serde_json::from_str(json).unwrap_or_else(|e| panic!("message is not JSON {json:?}: {e}")),
            }
        })
        .collect()
}

/// Waits until the output file has at least `n` lines and returns them.
/// Panics with the bus log after [`WAIT`].
pub fn wait_output(bus: &Bus, path: &Path, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = read_output(path);
        if lines.len() >= n {
            return lines;
        }
        if Instant::now() >= deadline {
            panic!(
                "{} has {} lines, expected {n}: {lines:#?}\nbus output:\n{}",
                path.display(),
                lines.len(),
                bus.log()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Creates a trigger file for a `later` phase of the testapp.
pub fn trigger(path: &Path) {
    std::fs::write(path, b"go").expect("write trigger file");
}

/// The ids of the STIX objects, sorted.
pub fn ids<'a>(objs: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let mut v: Vec<String> = objs.into_iter().map(|o| o["id"].as_str().expect("id").to_string()).collect();
    v.sort();
    v
}

/// The first line of `text` that contains `needle`; panics with `text` otherwise.
pub fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line contains {needle:?} in:\n{text}"))
}

/// Asserts that `line` contains every word of `words`.
pub fn assert_contains_all(line: &str, words: &[&str], context: &str) {
    for w in words {
        assert!(line.contains(w), "{w:?} missing in {line:?}\n--- context:\n{context}");
    }
}

/// stdout and stderr of a finished run, as one string.
pub fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs the host on `config_yaml` with `dir` until it exits by itself.
pub fn run_to_exit(config_yaml: &str, dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let cfg = config_file(config_yaml);
    run_threatbus(
        &["-c", cfg.path().to_str().expect("utf-8 path"), "--plugin-dir", dir.to_str().expect("utf-8 path")],
        env,
    )
}

/// The broken fixtures: (file name, bytes, words its rejection must contain).
pub fn broken_fixtures() -> Vec<(&'static str, Vec<u8>, Vec<String>)> {
    use threatbus_plugin_api::abi::{ABI_MAJOR, ABI_MINOR};
    vec![
        (
            "bad-magic.so",
            patched_plugin(TESTAPP, DeclField::Magic, 0),
            vec!["manifest is corrupt".into(), "bad magic".into(), "rebuild the plugin".into()],
        ),
        (
            "wrong-major.so",
            patched_plugin(TESTAPP, DeclField::AbiMajor, ABI_MAJOR + 1),
            vec![
                "'testapp'".into(),
                format!("built for plugin ABI {}.x", ABI_MAJOR + 1),
                format!("supports ABI {ABI_MAJOR}.x"),
                format!("rebuild it against a plugin-api of ABI {ABI_MAJOR}"),
            ],
        ),
        (
            "newer-minor.so",
            patched_plugin(TESTAPP, DeclField::AbiMinor, ABI_MINOR + 1),
            vec![
                "'testapp'".into(),
                format!("needs plugin ABI >= {ABI_MAJOR}.{}", ABI_MINOR + 1),
                format!("provides {ABI_MAJOR}.{ABI_MINOR}"),
                "upgrade threatbus".into(),
            ],
        ),
        (
            "panic-abort.so",
            patched_plugin(TESTAPP, DeclField::PanicUnwind, 0),
            vec!["'testapp'".into(), "panic=abort".into(), "rebuild with panic = \"unwind\"".into()],
        ),
        (
            "unknown-kind.so",
            patched_plugin(TESTAPP, DeclField::Kind, 7),
            vec!["'testapp'".into(), "unknown kind 7".into()],
        ),
        ("x.so", b"this is not an ELF file\n".to_vec(), vec!["is not a shared library".into()]),
        (
            "truncated-1000.so",
            std::fs::read(plugin_lib(TESTAPP)).expect("read plugin")[..1000].to_vec(),
            vec!["truncated or corrupt".into()],
        ),
        ("truncated-half.so", truncated_half(TESTAPP), vec!["truncated or corrupt".into()]),
    ]
}

/// The first half of a built plugin library.
fn truncated_half(lib: &str) -> Vec<u8> {
    let bytes = std::fs::read(plugin_lib(lib)).expect("read plugin");
    bytes[..bytes.len() / 2].to_vec()
}
