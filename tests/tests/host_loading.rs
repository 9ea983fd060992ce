//! Loading plugins from the plugin directory: the good ones are used, every
//! broken one is rejected with its own message, and a configured broken
//! one stops start-up naming the file and the fix.

mod host_support;

use std::os::unix::fs::PermissionsExt;

use host_support::*;
use serde_json::json;
use threatbus_integration_tests::*;

#[test]
fn inmem_loads_from_plugin_dir_and_unconfigured_app_is_ignored() {
    let dir = standard_dir();
    let mut bus = Bus::start(&config(json!({})), dir.path());
    bus.wait_for("Threat Bus running: backbones [inmem], apps []");
    let log = bus.log();
    assert!(log.contains("In-memory backbone started."), "{log}");
    assert!(log.contains("Ignoring installed, but unconfigured app 'testapp'"), "{log}");
    assert!(!log.contains("testapp started"), "an unconfigured plugin was started:\n{log}");
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
}

/// Every broken file in one directory: each gets its own log line, the
/// configured good plugins run and route messages, and the bus exits 0.
#[test]
fn broken_files_are_rejected_and_the_bus_keeps_working() {
    let dir = standard_dir();
    let dup = dir.add_as(TESTAPP, "libthreatbus_test_app_dup.so");
    let not_a_plugin = dir.add(NOT_A_PLUGIN);
    let broken = broken_fixtures();
    for (file, bytes, _) in &broken {
        dir.add_bytes(bytes, file);
    }
    let writable = dir.add_as(TESTAPP, "group-writable.so");
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o664)).expect("chmod");

    let out = dir.path().join("out.jsonl");
    let ind = indicator(1);
    let apps = json!({ "testapp": { "subscribe": ["stix2/indicator"], "output": out, "publish": [publish(&ind)] } });
    let mut bus = Bus::start(&config(apps), dir.path());
    bus.wait_for("Threat Bus running: backbones [inmem], apps [testapp]");
    let got = wait_output(&bus, &out, 1);
    assert_eq!(got[0].json, ind);

    let log = bus.log();
    for (file, _, words) in &broken {
        let path = dir.path().join(file);
        let line = line_with(&log, &path.display().to_string());
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_contains_all(line, &words, &log);
    }
    let line = line_with(&log, &not_a_plugin.display().to_string());
    assert_contains_all(
        line,
        &["is not a threatbus plugin", "no THREATBUS_PLUGIN_MANIFEST symbol", "export_plugin!"],
        &log,
    );
    let line = line_with(&log, &writable.display().to_string());
    assert_contains_all(line, &["refusing to load plugin", "writable by group/others", "0664", "chmod go-w"], &log);
    let line = line_with(&log, "provided by both");
    assert_contains_all(
        line,
        &[
            "'testapp'",
            &dir.path().join("libthreatbus_test_app.so").display().to_string(),
            &format!("ignoring {}", dup.display()),
        ],
        &log,
    );
    // One line per rejected file, at warning level.
    let rejected = broken.len() + 3;
    let warnings =
        log.lines().filter(|l| l.contains("WARNING") && l.contains(&dir.path().display().to_string())).count();
    assert_eq!(warnings, rejected, "expected one warning per rejected file:\n{log}");

    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
}

/// A configured plugin whose only file is broken stops start-up; the output
/// names the file and how to fix it.
#[test]
fn configured_broken_plugin_stops_startup_naming_file_and_fix() {
    let apps = json!({ "testapp": {} });
    let mut cases = broken_fixtures();
    cases.retain(|(file, _, _)| *file != "x.so"); // its name is unknown; see missing_plugin test
    for (file, bytes, words) in cases {
        let dir = PluginDir::with(&[INMEM]);
        let path = dir.add_bytes(&bytes, file);
        let out = run_to_exit(&config(apps.clone()), dir.path(), &[]);
        let text = output_text(&out);
        assert!(!out.status.success(), "{file}: host started anyway:\n{text}");
        let line = line_with(&text, &path.display().to_string());
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_contains_all(line, &words, &text);
        // The fatal line names the plugin, the rejected file and its fix.
        let fatal = line_with(&text, "threatbus: ");
        let mut expected = vec!["'testapp'"];
        let path_text = path.display().to_string();
        expected.push(&path_text);
        expected.extend(words.iter().copied());
        assert_contains_all(fatal, &expected, &text);
    }
}

#[test]
fn configured_group_writable_plugin_stops_startup_with_chmod_hint() {
    let dir = PluginDir::with(&[INMEM]);
    let path = dir.add(TESTAPP);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).expect("chmod");
    let out = run_to_exit(&config(json!({ "testapp": {} })), dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "host started with a group-writable plugin:\n{text}");
    let line = line_with(&text, &path.display().to_string());
    assert_contains_all(line, &["writable by group/others", "chmod go-w"], &text);
    assert!(text.contains("'testapp'"), "{text}");
}

#[test]
fn group_writable_plugin_dir_stops_startup_with_chmod_hint() {
    let dir = standard_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let out = run_to_exit(&config(json!({})), dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "host started from a group-writable directory:\n{text}");
    let line = line_with(&text, "writable by group/others");
    assert_contains_all(line, &["plugin directory", &dir.path().display().to_string(), "chmod go-w"], &text);
}

#[test]
fn duplicate_plugin_name_uses_the_first_file() {
    let dir = standard_dir();
    let dup = dir.add_as(TESTAPP, "libthreatbus_test_app_dup.so");
    let mut bus = Bus::start(&config(json!({ "testapp": {} })), dir.path());
    bus.wait_for("Threat Bus running: backbones [inmem], apps [testapp]");
    let log = bus.log();
    let line = line_with(&log, "provided by both");
    assert_contains_all(line, &["'testapp'", &format!("ignoring {}", dup.display())], &log);
    assert_eq!(bus.count("testapp started"), 1, "{log}");
    let st = bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.log());
}

/// A plugin whose manifest is fine but whose library the dynamic loader
/// cannot load (here a needed library that does not exist) stops start-up
/// with the loader's own words, naming the missing library.
#[test]
fn configured_plugin_that_cannot_be_loaded_shows_the_loaders_reason() {
    let dir = PluginDir::with(&[INMEM]);
    let path = dir.add_bytes(&renamed_plugin(TESTAPP, "libgcc_s.so.1", "libgcc_q.so.1"), "libthreatbus_test_app.so");
    // Listing it runs nothing and finds nothing wrong: only loading fails.
    let out = run_threatbus(&["plugins", "list", "--plugin-dir", dir.path().to_str().unwrap()], &[]);
    assert!(line_with(&output_text(&out), &path.display().to_string()).starts_with("ok"), "{}", output_text(&out));
    let out = run_to_exit(&config(json!({ "testapp": {} })), dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "host started anyway:\n{text}");
    let fatal = line_with(&text, "threatbus: ");
    assert_contains_all(
        fatal,
        &["cannot load plugin 'testapp'", "dlopen failed", "libgcc_q.so.1", "No such file or directory", "ldd"],
        &text,
    );
}

#[test]
fn a_symlink_is_judged_by_where_it_leads() {
    // A link in the (safe) plugin directory to a plugin in a directory
    // anyone can write: refused, naming that directory.
    let dir = PluginDir::with(&[INMEM]);
    let open = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let target = open.path().join("libthreatbus_test_app.so");
    std::fs::copy(plugin_lib(TESTAPP), &target).expect("copy");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let link = dir.path().join("testapp-link.so");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let out = run_to_exit(&config(json!({ "testapp": {} })), dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "host loaded a plugin from a world-writable directory:\n{text}");
    let line = line_with(&text, &link.display().to_string());
    assert_contains_all(
        line,
        &["refusing to load plugin", &open.path().display().to_string(), "writable by group/others", "resolves to"],
        &text,
    );

    // The same link into a safe directory: loaded.
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut bus = Bus::start(&config(json!({ "testapp": {} })), dir.path());
    bus.wait_for("Threat Bus running");
    assert!(bus.terminate().success(), "{}", bus.log());
}
