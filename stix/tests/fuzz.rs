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

/// A STIX pattern, with both grammars.
fn stix_pattern(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = threatbus_stix::pattern::validate(text);
    let _ = threatbus_stix::pattern::parse_version(text, threatbus_stix::pattern::PatternVersion::V2_0);
}

#[test]
fn fuzz_stix_objects() {
    run_target("stix-object", stix_object);
}

#[test]
fn fuzz_stix_patterns() {
    run_target("stix-pattern", stix_pattern);
}
