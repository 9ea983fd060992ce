//! Configuration errors, environment overrides and logging.

mod host_support;

use host_support::*;
use serde_json::json;
use threatbus_integration_tests::*;

fn fails_with(config_yaml: &str, dir: &PluginDir, words: &[&str]) -> String {
    let out = run_to_exit(config_yaml, dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "host accepted the config:\n{config_yaml}\n{text}");
    let line = line_with(&text, "threatbus: ");
    assert_contains_all(line, words, &text);
    text
}

#[test]
fn unknown_keys_are_named() {
    let dir = standard_dir();
    fails_with(&config_with(json!({}), json!({ "logging": { "consol": true } })), &dir, &["logging", "consol"]);
    fails_with(&config_with(json!({}), json!({ "extra_section": 1 })), &dir, &["extra_section"]);
    fails_with("plugins:\n  backbones:\n    inmem: {}\n  apps: {}\n  frontends: {}\n", &dir, &["plugins", "frontends"]);
}

#[test]
fn invalid_value_is_named() {
    let dir = standard_dir();
    fails_with(
        &config_with(json!({}), json!({ "logging": { "console_verbosity": "LOUD" } })),
        &dir,
        &["logging.console_verbosity", "LOUD"],
    );
}

#[test]
fn missing_plugin_names_plugin_dir_and_fix() {
    let dir = standard_dir();
    dir.add(NOT_A_PLUGIN);
    let text = fails_with(
        &config(json!({ "nosuchapp": {} })),
        &dir,
        &[
            "'nosuchapp'",
            &dir.path().display().to_string(),
            "found: inmem, testapp",
            "install it",
            "remove plugins.apps.nosuchapp",
        ],
    );
    assert!(text.contains("is not a threatbus plugin"), "{text}");
}

#[test]
fn plugin_in_the_wrong_section_is_named() {
    let dir = standard_dir();
    // A backbone under apps.
    fails_with(
        "plugins:\n  backbones: {}\n  apps:\n    inmem: {}\n",
        &dir,
        &["'inmem'", "plugins.apps", "backbone plugin", "move its section to plugins.backbones"],
    );
    // An app under backbones.
    fails_with(
        "plugins:\n  backbones:\n    inmem: {}\n    testapp: {}\n  apps: {}\n",
        &dir,
        &["'testapp'", "plugins.backbones", "app plugin", "move its section to plugins.apps"],
    );
}

#[test]
fn missing_config_file_is_an_error() {
    let dir = standard_dir();
    let out = run_threatbus(&["-c", "/nonexistent/threatbus.yaml", "--plugin-dir", dir.path().to_str().unwrap()], &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("/nonexistent/threatbus.yaml"), "{text}");
}

/// `THREATBUS_LOGGING__CONSOLE_VERBOSITY=DEBUG` turns on debug output, also
/// inside plugins; without it there is none.
#[test]
fn env_override_sets_log_level() {
    let dir = standard_dir();
    let cfg = config(json!({ "testapp": {} }));
    let mut bus = Bus::start(&cfg, dir.path());
    bus.wait_for("Threat Bus running");
    assert!(!bus.log().lines().any(|l| l.contains(" DEBUG ")), "debug output at the default level:\n{}", bus.log());
    assert!(bus.terminate().success(), "{}", bus.log());

    let mut bus = Bus::start_with_env(&cfg, dir.path(), &[("THREATBUS_LOGGING__CONSOLE_VERBOSITY", "DEBUG")]);
    bus.wait_for("Threat Bus running");
    let log = bus.log();
    let line = line_with(&log, "testapp debug logging is on");
    assert_contains_all(line, &["DEBUG", "[threatbus::plugin::testapp]"], &log);
    assert!(bus.terminate().success(), "{}", bus.log());
}

/// Environment overrides reach plugin sections too.
#[test]
fn env_override_reaches_plugin_config() {
    let dir = standard_dir();
    let out = run_to_exit(
        &config(json!({ "testapp": {} })),
        dir.path(),
        &[("THREATBUS_PLUGINS__APPS__TESTAPP__FAIL_INIT", "set from the environment")],
    );
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("plugin 'testapp' failed to initialize: set from the environment"), "{text}");
}

/// `logging.file` writes to `logging.filename` at `file_verbosity`,
/// independently of the console level.
#[test]
fn logs_to_file() {
    let dir = standard_dir();
    let logdir = tempfile::tempdir().expect("tempdir");
    let logfile = logdir.path().join("threatbus.log");
    let logging = json!({
        "console": true,
        "console_verbosity": "WARNING",
        "file": true,
        "file_verbosity": "DEBUG",
        "filename": logfile,
    });
    let mut bus = Bus::start(&config_with(json!({ "testapp": {} }), json!({ "logging": logging })), dir.path());
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&logfile).unwrap_or_default().contains("Threat Bus running") {
        assert!(std::time::Instant::now() < deadline, "log file has no start-up line:\n{}", bus.log());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(bus.terminate().success(), "{}", bus.log());
    let text = std::fs::read_to_string(&logfile).expect("log file");
    assert!(text.contains("INFO     [threatbus::plugin::testapp] testapp started"), "{text}");
    assert!(text.contains("DEBUG    [threatbus::plugin::testapp] testapp debug logging is on"), "{text}");
    assert!(text.contains("Stopping Threat Bus..."), "{text}");
    assert!(!text.contains('\x1b'), "escape codes in the log file:\n{text}");
    let console = bus.log();
    assert!(!console.contains("Threat Bus running"), "INFO on a WARNING console:\n{console}");
}

#[test]
fn unwritable_log_file_is_an_error() {
    let dir = standard_dir();
    let logging = json!({ "file": true, "filename": "/nonexistent/dir/threatbus.log" });
    let out = run_to_exit(&config_with(json!({}), json!({ "logging": logging })), dir.path(), &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("/nonexistent/dir/threatbus.log"), "{text}");
}
