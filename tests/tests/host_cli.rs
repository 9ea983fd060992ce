//! `threatbus plugins list` and `threatbus plugins inspect`.

mod host_support;

use std::os::unix::fs::PermissionsExt;

use host_support::*;
use threatbus_integration_tests::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn plugins_list_shows_ok_and_rejected_files_with_reasons() {
    let dir = standard_dir();
    let not_a_plugin = dir.add(NOT_A_PLUGIN);
    let major = dir.add_bytes(
        &patched_plugin(TESTAPP, DeclField::AbiMajor, threatbus_plugin_api::abi::ABI_MAJOR + 1),
        "wrong-major.so",
    );
    let writable = dir.add_as(TESTAPP, "group-writable.so");
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o664)).expect("chmod");
    dir.add_bytes(b"garbage", "x.so");
    dir.add_bytes(b"not a library", "README.txt");

    let out = run_threatbus(&["plugins", "list", "--plugin-dir", dir.path().to_str().unwrap()], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(text.contains(&format!("plugin directory: {}", dir.path().display())), "{text}");

    let inmem = line_with(&text, "libthreatbus_backbone_inmem.so");
    let current = format!("(ABI {}.{})", threatbus_plugin_api::abi::ABI_MAJOR, threatbus_plugin_api::abi::ABI_MINOR);
    assert_contains_all(inmem, &["ok", "inmem", "backbone", "version 1.0.0", &current], &text);
    assert!(inmem.starts_with("ok"), "{text}");
    let app = line_with(&text, "libthreatbus_test_app.so");
    assert!(app.starts_with("ok"), "{text}");
    assert_contains_all(app, &["testapp", "app", "version 0.1.0"], &text);

    let lines: Vec<&str> = text.lines().collect();
    let reason_of = |path: &std::path::Path| -> String {
        let i = lines
            .iter()
            .position(|l| l.contains(&path.display().to_string()))
            .unwrap_or_else(|| panic!("{} not listed:\n{text}", path.display()));
        assert!(lines[i].starts_with("rejected"), "{text}");
        lines[i + 1].trim().to_string()
    };
    let r = reason_of(&not_a_plugin);
    assert_contains_all(&r, &["reason:", "is not a threatbus plugin"], &text);
    let r = reason_of(&major);
    assert_contains_all(&r, &["reason:", "built for plugin ABI 2.x"], &text);
    // The manifest of a rejected plugin is still shown when readable.
    let wrong = format!("(ABI {}.{})", threatbus_plugin_api::abi::ABI_MAJOR + 1, threatbus_plugin_api::abi::ABI_MINOR);
    assert_contains_all(line_with(&text, "wrong-major.so"), &["testapp", &wrong], &text);
    let r = reason_of(&writable);
    assert_contains_all(&r, &["reason:", "writable by group/others", "chmod"], &text);
    let r = reason_of(&dir.path().join("x.so"));
    assert_contains_all(&r, &["reason:", "is not a shared library"], &text);
    assert!(!text.contains("README.txt"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("ok")).count(), 2, "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("rejected")).count(), 4, "{text}");
}

#[test]
fn plugins_list_takes_the_dir_from_the_environment() {
    let dir = PluginDir::with(&[INMEM]);
    let out = run_threatbus(&["plugins", "list"], &[("THREATBUS_PLUGIN_DIR", dir.path().to_str().unwrap())]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(line_with(&text, "libthreatbus_backbone_inmem.so").starts_with("ok"), "{text}");
}

#[test]
fn plugins_list_of_empty_dir() {
    let dir = PluginDir::with(&[]);
    let out = run_threatbus(&["plugins", "list", "--plugin-dir", dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(stdout(&out).contains("no plugins found"), "{}", output_text(&out));
}

#[test]
fn plugins_inspect_good_file() {
    let dir = standard_dir();
    let path = dir.path().join("libthreatbus_test_app.so");
    let out = run_threatbus(&["plugins", "inspect", path.to_str().unwrap()], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(line_with(&text, "name:").ends_with("testapp"), "{text}");
    assert!(line_with(&text, "kind:").ends_with("app"), "{text}");
    assert!(line_with(&text, "version:").ends_with("0.1.0"), "{text}");
    assert!(line_with(&text, "status:").contains("ok"), "{text}");
}

#[test]
fn plugins_inspect_bad_files() {
    let dir = standard_dir();
    let minor = dir.add_bytes(
        &patched_plugin(TESTAPP, DeclField::AbiMinor, threatbus_plugin_api::abi::ABI_MINOR + 1),
        "newer-minor.so",
    );
    let out = run_threatbus(&["plugins", "inspect", minor.to_str().unwrap()], &[]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(line_with(&text, "name:").ends_with("testapp"), "{text}");
    assert_contains_all(line_with(&text, "status:"), &["rejected", "upgrade threatbus"], &text);

    let not_a_plugin = dir.add(NOT_A_PLUGIN);
    let out = run_threatbus(&["plugins", "inspect", not_a_plugin.to_str().unwrap()], &[]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(!text.contains("name:"), "{text}");
    assert_contains_all(line_with(&text, "status:"), &["rejected", "is not a threatbus plugin"], &text);

    let out = run_threatbus(&["plugins", "inspect", dir.path().join("missing.so").to_str().unwrap()], &[]);
    assert!(!out.status.success(), "{}", output_text(&out));
}
