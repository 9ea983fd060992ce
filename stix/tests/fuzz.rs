//! Fuzzing of the STIX decoders the host runs on every message from a
//! peer (see `threatbus-fuzz`).

use threatbus_fuzz::run_target;

/// A STIX object as the host validates it. Properties: the host's fast
/// path (`canonicalize_stix2`) answers exactly as the general one
/// (`parse_stix2` + `to_json`); the canonical JSON parses again and is its
/// own canonical form.
pub fn stix_object(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let general = threatbus_stix::parse_stix2(text).map(|o| (o.message_type(), o.to_json()));
    assert_eq!(
        threatbus_stix::canonicalize_stix2(text).map_err(|e| e.to_string()),
        general.map_err(|e| e.to_string()),
        "fast and general path differ for {text}"
    );
    if let Ok(obj) = threatbus_stix::parse_stix2(text) {
        let canonical = obj.to_json();
        let again = threatbus_stix::parse_stix2(&canonical)
            .unwrap_or_else(|e| panic!("canonical form does not parse: {e}: {canonical}"));
        assert_eq!(again.to_json(), canonical, "canonical form is not stable");
    }
}

/// A STIX pattern, with both grammars. Property: a pattern the validator's
/// shortcut takes (`is_plain_equality`) is valid in both versions.
fn stix_pattern(data: &[u8]) {
    use threatbus_stix::pattern::{self, PatternVersion};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let v21 = pattern::validate(text);
    let _ = pattern::parse_version(text, PatternVersion::V2_0);
    if pattern::is_plain_equality(text) {
        assert!(v21.is_ok(), "taken as a plain equality but invalid in 2.1: {text}");
        let v20 = pattern::validate_version(text, PatternVersion::V2_0);
        assert!(v20.is_ok(), "taken as a plain equality but invalid in 2.0: {text}");
    }
}

#[test]
fn fuzz_stix_objects() {
    run_target("stix-object", stix_object);
}

#[test]
fn fuzz_stix_patterns() {
    run_target("stix-pattern", stix_pattern);
}
