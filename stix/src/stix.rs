//! STIX 2.1 `indicator` and `sighting` objects: validation like
//! `stix2.parse(..., allow_custom=True)` and canonical serialization like
//! `stix2`'s `serialize()`.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

mod flat;

use super::pattern;
use super::pyjson;
use super::timestamp::{Precision, Timestamp};
use super::{DataError, MessageType, Operation, X_THREATBUS_INDICATOR, X_THREATBUS_UPDATE};

// ---------------------------------------------------------------------------
// Property tables
// ---------------------------------------------------------------------------

/// How a spec-defined property is validated.
#[derive(Clone, Copy)]
enum Kind {
    Type,
    SpecVersion,
    Id,
    Timestamp(Precision),
    Str,
    StrList,
    /// A reference whose type must be one of these.
    Ref(&'static [&'static str]),
    /// A list of references whose types must be one of these.
    RefList(&'static [&'static str]),
    /// `sighting_of_ref`: any type that is not a known SCO or SRO.
    SdoRef,
    /// A boolean whose `false` value is the spec default and is omitted.
    BoolDefaultFalse,
    Int {
        min: i64,
        max: i64,
    },
    KillChainPhases,
    ExternalReferences,
    GranularMarkings,
    Extensions,
}

const IDENTITY: &[&str] = &["identity"];
const MARKING: &[&str] = &["marking-definition"];

/// Indicator properties in `stix2`'s spec order.
const INDICATOR_PROPS: [(&str, Kind); 23] = [
    ("type", Kind::Type),
    ("spec_version", Kind::SpecVersion),
    ("id", Kind::Id),
    ("created_by_ref", Kind::Ref(IDENTITY)),
    ("created", Kind::Timestamp(Precision::MillisecondMin)),
    ("modified", Kind::Timestamp(Precision::MillisecondMin)),
    ("name", Kind::Str),
    ("description", Kind::Str),
    ("indicator_types", Kind::StrList),
    ("pattern", Kind::Str),
    ("pattern_type", Kind::Str),
    ("pattern_version", Kind::Str),
    ("valid_from", Kind::Timestamp(Precision::Any)),
    ("valid_until", Kind::Timestamp(Precision::Any)),
    ("kill_chain_phases", Kind::KillChainPhases),
    ("revoked", Kind::BoolDefaultFalse),
    ("labels", Kind::StrList),
    ("confidence", Kind::Int { min: i64::MIN, max: i64::MAX }),
    ("lang", Kind::Str),
    ("external_references", Kind::ExternalReferences),
    ("object_marking_refs", Kind::RefList(MARKING)),
    ("granular_markings", Kind::GranularMarkings),
    ("extensions", Kind::Extensions),
];

fn indicator_index(key: &str) -> Option<usize> {
    Some(match key {
        "type" => 0,
        "spec_version" => 1,
        "id" => 2,
        "created_by_ref" => 3,
        "created" => 4,
        "modified" => 5,
        "name" => 6,
        "description" => 7,
        "indicator_types" => 8,
        "pattern" => 9,
        "pattern_type" => 10,
        "pattern_version" => 11,
        "valid_from" => 12,
        "valid_until" => 13,
        "kill_chain_phases" => 14,
        "revoked" => 15,
        "labels" => 16,
        "confidence" => 17,
        "lang" => 18,
        "external_references" => 19,
        "object_marking_refs" => 20,
        "granular_markings" => 21,
        "extensions" => 22,
        _ => return None,
    })
}

/// Sighting properties in `stix2`'s spec order.
const SIGHTING_PROPS: [(&str, Kind); 23] = [
    ("type", Kind::Type),
    ("spec_version", Kind::SpecVersion),
    ("id", Kind::Id),
    ("created_by_ref", Kind::Ref(IDENTITY)),
    ("created", Kind::Timestamp(Precision::MillisecondMin)),
    ("modified", Kind::Timestamp(Precision::MillisecondMin)),
    ("description", Kind::Str),
    ("first_seen", Kind::Timestamp(Precision::Any)),
    ("last_seen", Kind::Timestamp(Precision::Any)),
    ("count", Kind::Int { min: 0, max: 999_999_999 }),
    ("sighting_of_ref", Kind::SdoRef),
    ("observed_data_refs", Kind::RefList(&["observed-data"])),
    ("where_sighted_refs", Kind::RefList(&["identity", "location"])),
    ("summary", Kind::BoolDefaultFalse),
    ("revoked", Kind::BoolDefaultFalse),
    ("labels", Kind::StrList),
    ("confidence", Kind::Int { min: i64::MIN, max: i64::MAX }),
    ("lang", Kind::Str),
    ("external_references", Kind::ExternalReferences),
    ("object_marking_refs", Kind::RefList(MARKING)),
    ("granular_markings", Kind::GranularMarkings),
    ("extensions", Kind::Extensions),
    // Padding so both tables have the same length; never matched.
    ("", Kind::Extensions),
];

fn sighting_index(key: &str) -> Option<usize> {
    Some(match key {
        "type" => 0,
        "spec_version" => 1,
        "id" => 2,
        "created_by_ref" => 3,
        "created" => 4,
        "modified" => 5,
        "description" => 6,
        "first_seen" => 7,
        "last_seen" => 8,
        "count" => 9,
        "sighting_of_ref" => 10,
        "observed_data_refs" => 11,
        "where_sighted_refs" => 12,
        "summary" => 13,
        "revoked" => 14,
        "labels" => 15,
        "confidence" => 16,
        "lang" => 17,
        "external_references" => 18,
        "object_marking_refs" => 19,
        "granular_markings" => 20,
        "extensions" => 21,
        _ => return None,
    })
}

/// STIX 2.1 cyber-observable types known to `stix2` 3.0 (not valid targets
/// of `sighting_of_ref`).
const SCO_TYPES: &[&str] = &[
    "artifact",
    "autonomous-system",
    "directory",
    "domain-name",
    "email-addr",
    "email-message",
    "file",
    "ipv4-addr",
    "ipv6-addr",
    "mac-addr",
    "mutex",
    "network-traffic",
    "process",
    "software",
    "url",
    "user-account",
    "windows-registry-key",
    "x509-certificate",
];

/// The two STIX object classes Threat Bus handles.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ObjKind {
    Indicator,
    Sighting,
}

impl ObjKind {
    fn message_type(self) -> MessageType {
        match self {
            ObjKind::Indicator => MessageType::Indicator,
            ObjKind::Sighting => MessageType::Sighting,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ObjKind::Indicator => "indicator",
            ObjKind::Sighting => "sighting",
        }
    }

    fn index(self, key: &str) -> Option<usize> {
        match self {
            ObjKind::Indicator => indicator_index(key),
            ObjKind::Sighting => sighting_index(key),
        }
    }

    fn props(self) -> &'static [(&'static str, Kind); 23] {
        match self {
            ObjKind::Indicator => &INDICATOR_PROPS,
            ObjKind::Sighting => &SIGHTING_PROPS,
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            ObjKind::Indicator => &INDICATOR_REQUIRED,
            ObjKind::Sighting => &SIGHTING_REQUIRED,
        }
    }

    /// The bits of [`required`](Self::required) in a mask of present spec
    /// properties.
    fn required_mask(self) -> u32 {
        match self {
            ObjKind::Indicator => const { prop_mask(&INDICATOR_PROPS, &INDICATOR_REQUIRED) },
            ObjKind::Sighting => const { prop_mask(&SIGHTING_PROPS, &SIGHTING_REQUIRED) },
        }
    }

    /// The spec indices of the timestamps that must be in order: `valid_from`
    /// and `valid_until`, or `first_seen` and `last_seen`.
    fn ordered_stamps(self) -> (usize, usize) {
        match self {
            ObjKind::Indicator => {
                const { (prop_index(&INDICATOR_PROPS, "valid_from"), prop_index(&INDICATOR_PROPS, "valid_until")) }
            }
            ObjKind::Sighting => {
                const { (prop_index(&SIGHTING_PROPS, "first_seen"), prop_index(&SIGHTING_PROPS, "last_seen")) }
            }
        }
    }

    /// Keeps `ts`, the value of spec property `i`, if that is one of the
    /// [`ordered_stamps`](Self::ordered_stamps).
    fn keep_ordered_stamp(self, stamps: &mut [Option<Timestamp>; 2], i: usize, ts: Option<Timestamp>) {
        let (first, second) = self.ordered_stamps();
        if i == first {
            stamps[0] = ts;
        } else if i == second {
            stamps[1] = ts;
        }
    }

    /// Whether the mask of present spec properties has every required one.
    fn has_required(self, present: u32) -> bool {
        present & self.required_mask() == self.required_mask()
    }

    /// The bit of a spec property in a mask of present properties (0 for a
    /// name the kind does not have).
    fn bit(self, name: &str) -> u32 {
        self.index(name).map_or(0, |i| 1 << i)
    }
}

const INDICATOR_REQUIRED: [&str; 7] = ["type", "id", "created", "modified", "pattern", "pattern_type", "valid_from"];
const SIGHTING_REQUIRED: [&str; 5] = ["type", "id", "created", "modified", "sighting_of_ref"];

/// The index of the spec property `name` (a `const fn`, so that callers
/// evaluate it at compile time, where a name not in `props` fails the
/// build).
const fn prop_index(props: &[(&str, Kind); 23], name: &str) -> usize {
    let mask = prop_mask(props, &[name]);
    assert!(mask != 0, "not a spec property");
    mask.trailing_zeros() as usize
}

/// Whether `key` may name a custom property: it begins with a lowercase
/// letter a-z (and is no spec property, which callers check).
fn is_custom_property_name(key: &str) -> bool {
    key.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

/// Validates a pattern of type `stix` with the grammar its indicator's
/// `pattern_version` names; a missing or empty `pattern_version` means
/// "2.1". Returns whether `pattern_version` must be set to "2.1".
fn check_stix_pattern(pattern_text: &str, pattern_version: Option<&str>) -> Result<bool, DataError> {
    let given = pattern_version.filter(|v| !v.is_empty());
    if !pattern::is_plain_equality(pattern_text) {
        let version = pattern::PatternVersion::from_pattern_version(given.unwrap_or("2.1"));
        pattern::validate_version(pattern_text, version).map_err(DataError::invalid_pattern)?;
    }
    Ok(given.is_none())
}

/// The mask of the spec properties `names` (a `const fn`, so that callers
/// can evaluate it at compile time).
const fn prop_mask(props: &[(&str, Kind); 23], names: &[&str]) -> u32 {
    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    let mut mask = 0;
    let mut n = 0;
    while n < names.len() {
        let mut i = 0;
        while i < props.len() {
            if same(props[i].0, names[n]) {
                mask |= 1 << i;
            }
            i += 1;
        }
        n += 1;
    }
    mask
}

// ---------------------------------------------------------------------------
// Validation helpers
// ---------------------------------------------------------------------------

/// Checks the canonical 8-4-4-4-12 hex layout and the RFC 4122 variant
/// (the version nibble is not checked, as in `stix2`).
fn is_rfc4122_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            return false;
        }
    }
    matches!(b[19], b'8' | b'9' | b'a' | b'b' | b'A' | b'B')
}

/// Splits a STIX identifier into (type, uuid) if well-formed.
fn split_id(id: &str) -> Option<(&str, &str)> {
    let (ty, uuid) = id.split_once("--")?;
    (!ty.is_empty() && is_rfc4122_uuid(uuid)).then_some((ty, uuid))
}

fn invalid(kind: ObjKind, prop: &str, why: impl std::fmt::Display) -> DataError {
    DataError::invalid_property(format!("{}: invalid value for '{prop}': {why}", kind.name()))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn expect_str<'v>(kind: ObjKind, prop: &str, v: &'v Value) -> Result<&'v str, DataError> {
    v.as_str().ok_or_else(|| invalid(kind, prop, format_args!("expected a string, found {}", type_name(v))))
}

fn check_ref(kind: ObjKind, prop: &str, v: &Value, allowed: Option<&[&str]>) -> Result<(), DataError> {
    check_ref_str(kind, prop, expect_str(kind, prop, v)?, allowed)
}

fn check_ref_str(kind: ObjKind, prop: &str, s: &str, allowed: Option<&[&str]>) -> Result<(), DataError> {
    let Some((ty, _)) = split_id(s) else {
        return Err(invalid(
            kind,
            prop,
            format_args!("'{s}' is not a STIX identifier '<object-type>--<RFC 4122 UUID>'"),
        ));
    };
    match allowed {
        Some(types) => {
            if !types.contains(&ty) {
                return Err(invalid(kind, prop, format_args!("'{s}' must reference one of: {}", types.join(", "))));
            }
        }
        None => {
            if SCO_TYPES.contains(&ty) || ty == "relationship" || ty == "sighting" {
                return Err(invalid(
                    kind,
                    prop,
                    format_args!(
                        "'{s}' must reference a STIX domain object, not a cyber observable or relationship ('{ty}')"
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Kind {
    /// Whether a value of this kind is one string.
    fn is_string(self) -> bool {
        matches!(
            self,
            Kind::Type | Kind::SpecVersion | Kind::Id | Kind::Timestamp(_) | Kind::Str | Kind::Ref(_) | Kind::SdoRef
        )
    }
}

/// Validates the string value `s` of a spec property of a string kind
/// ([`Kind::is_string`]); returns its timestamp if it is one.
fn check_str_property(kind: ObjKind, prop: &str, k: Kind, s: &str) -> Result<Option<Timestamp>, DataError> {
    match k {
        Kind::Type if s != kind.name() => {
            return Err(invalid(kind, prop, format_args!("expected '{}', found '{s}'", kind.name())));
        }
        Kind::SpecVersion if s != "2.1" => {
            return Err(invalid(kind, prop, format_args!("expected '2.1', found '{s}'")));
        }
        Kind::Id => {
            let ok = s.strip_prefix(kind.name()).and_then(|r| r.strip_prefix("--")).is_some_and(is_rfc4122_uuid);
            if !ok {
                return Err(DataError::invalid_property(format!(
                    "{}: invalid id '{s}': expected '{}--<RFC 4122 UUID>'",
                    kind.name(),
                    kind.name()
                )));
            }
        }
        Kind::Timestamp(_) => {
            let Some(ts) = Timestamp::parse(s) else {
                return Err(invalid(
                    kind,
                    prop,
                    format_args!("'{s}' is not a timestamp of the form YYYY-MM-DDTHH:MM:SS[.fraction]Z"),
                ));
            };
            return Ok(Some(ts));
        }
        Kind::Ref(types) => check_ref_str(kind, prop, s, Some(types))?,
        Kind::SdoRef => check_ref_str(kind, prop, s, None)?,
        // The checks passed, Kind::Str is any string; the other kinds are
        // not strings.
        _ => {}
    }
    Ok(None)
}

/// Validates one spec property in place; returns its timestamp if it is one.
fn check_property(kind: ObjKind, prop: &str, k: Kind, v: &mut Value) -> Result<Option<Timestamp>, DataError> {
    if k.is_string() {
        let s = expect_str(kind, prop, v)?;
        let ts = check_str_property(kind, prop, k, s)?;
        if let (Kind::Timestamp(precision), Some(ts)) = (k, ts) {
            if !Timestamp::is_formatted(s, precision) {
                *v = Value::String(ts.format(precision).as_str().to_string());
            }
        }
        return Ok(ts);
    }
    match k {
        Kind::StrList => {
            if v.is_string() {
                // stix2's ListProperty wraps a single string into a list.
                let s = std::mem::take(v);
                *v = Value::Array(vec![s]);
            }
            let ok = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            if !ok {
                return Err(invalid(kind, prop, "expected a list of strings"));
            }
        }
        Kind::RefList(types) => {
            if v.is_string() {
                let s = std::mem::take(v);
                *v = Value::Array(vec![s]);
            }
            let Some(items) = v.as_array() else {
                return Err(invalid(kind, prop, "expected a list of identifiers"));
            };
            for item in items {
                check_ref(kind, prop, item, Some(types))?;
            }
        }
        Kind::BoolDefaultFalse => {
            if !v.is_boolean() {
                return Err(invalid(kind, prop, format_args!("expected a boolean, found {}", type_name(v))));
            }
        }
        Kind::Int { min, max } => {
            let Some(n) = v.as_i64() else {
                return Err(invalid(kind, prop, format_args!("expected an integer, found {v}")));
            };
            if n < min || n > max {
                return Err(invalid(kind, prop, format_args!("{n} is not within {min}..={max}")));
            }
        }
        Kind::KillChainPhases => {
            let ok = v.as_array().is_some_and(|a| {
                a.iter().all(|p| {
                    p.get("kill_chain_name").is_some_and(Value::is_string)
                        && p.get("phase_name").is_some_and(Value::is_string)
                })
            });
            if !ok {
                return Err(invalid(
                    kind,
                    prop,
                    "expected a list of objects with string 'kill_chain_name' and 'phase_name'",
                ));
            }
        }
        Kind::ExternalReferences => {
            let Some(items) = v.as_array_mut() else {
                return Err(invalid(kind, prop, format_args!("expected a list of objects, found {}", type_name(v))));
            };
            for item in items {
                check_external_reference(item).map_err(|why| invalid(kind, prop, why))?;
            }
        }
        Kind::GranularMarkings => {
            // Checked in `check_granular_markings` (needs the whole object).
        }
        Kind::Extensions => {
            let Some(exts) = v.as_object() else {
                return Err(invalid(kind, prop, format_args!("expected an object, found {}", type_name(v))));
            };
            for (name, ext) in exts {
                if !ext.is_object() {
                    return Err(invalid(kind, prop, format_args!("extension '{name}' must be an object")));
                }
                if let Some(uuid) = name.strip_prefix("extension-definition--") {
                    if !is_rfc4122_uuid(uuid) {
                        return Err(invalid(
                            kind,
                            prop,
                            format_args!("'{name}' is not 'extension-definition--<RFC 4122 UUID>'"),
                        ));
                    }
                }
            }
        }
        // Checked above.
        Kind::Type | Kind::SpecVersion | Kind::Id | Kind::Timestamp(_) | Kind::Str | Kind::Ref(_) | Kind::SdoRef => {}
    }
    Ok(None)
}

/// The properties of an external reference in `stix2`'s order; custom
/// properties follow, sorted by name.
const EXTERNAL_REFERENCE_PROPS: [&str; 5] = ["source_name", "description", "url", "hashes", "external_id"];

/// The hash algorithms of the STIX 2.1 `hash-algorithm-ov` vocabulary: the
/// name `stix2` recognises (upper case, without hyphens), the spec name it
/// writes, and the length of a valid value (`None`: SSDEEP's own syntax).
const HASH_ALGORITHMS: [(&str, &str, Option<usize>); 8] = [
    ("MD5", "MD5", Some(32)),
    ("SHA1", "SHA-1", Some(40)),
    ("SHA256", "SHA-256", Some(64)),
    ("SHA512", "SHA-512", Some(128)),
    ("SHA3256", "SHA3-256", Some(64)),
    ("SHA3512", "SHA3-512", Some(128)),
    ("SSDEEP", "SSDEEP", None),
    ("TLSH", "TLSH", Some(70)),
];

/// Validates one item of `external_references` as `stix2` does, and
/// normalises it the way `stix2` re-serializes it: `null` and `[]` values
/// dropped, hash names spelled as in the vocabulary (`sha256` → `SHA-256`).
///
/// `source_name` is required, and at least one of `description`, `url` and
/// `external_id`; those are strings. `hashes` is a non-empty object whose
/// keys name algorithms of `hash-algorithm-ov` (case and hyphens ignored,
/// as `stix2` does) and whose values are valid hashes of that algorithm.
fn check_external_reference(item: &mut Value) -> Result<(), String> {
    let Some(reference) = item.as_object_mut() else {
        return Err(format!("expected an external reference object, found {}", type_name(item)));
    };
    reference.retain(|_, v| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty)));
    for key in EXTERNAL_REFERENCE_PROPS {
        if key == "hashes" {
            continue;
        }
        if let Some(v) = reference.get(key) {
            if !v.is_string() {
                return Err(format!("external reference '{key}': expected a string, found {}", type_name(v)));
            }
        }
    }
    if !reference.contains_key("source_name") {
        return Err("external reference without 'source_name'".to_string());
    }
    if !["description", "url", "external_id"].iter().any(|k| reference.contains_key(*k)) {
        return Err("external reference needs at least one of 'description', 'url' and 'external_id'".to_string());
    }
    if let Some(hashes) = reference.get_mut("hashes") {
        *hashes = Value::Object(normalise_hashes(hashes)?);
    }
    Ok(())
}

/// Checks the `hashes` of an external reference; returns them keyed by
/// their vocabulary names.
fn normalise_hashes(hashes: &Value) -> Result<Map<String, Value>, String> {
    let Some(hashes) = hashes.as_object() else {
        return Err(format!("external reference 'hashes': expected an object, found {}", type_name(hashes)));
    };
    if hashes.is_empty() {
        return Err("external reference 'hashes' must not be empty".to_string());
    }
    let mut normalised = Map::new();
    for (name, value) in hashes {
        let key_ok = name.len() <= 250 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let recognised: String = name.chars().filter(|&c| c != '-').collect::<String>().to_ascii_uppercase();
        let algorithm = HASH_ALGORITHMS.iter().find(|(id, _, _)| *id == recognised);
        let (Some(&(_, spec_name, length)), true) = (algorithm, key_ok) else {
            return Err(format!("external reference hash algorithm '{name}' is not in hash-algorithm-ov"));
        };
        let Some(hash) = value.as_str() else {
            return Err(format!("external reference {spec_name} hash: expected a string, found {}", type_name(value)));
        };
        let valid = match length {
            Some(n) => hash.len() == n && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            None => {
                (1..=128).contains(&hash.len())
                    && hash.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b':' | b'.'))
            }
        };
        if !valid {
            return Err(format!("'{hash}' is not a valid {spec_name} hash"));
        }
        normalised.insert(spec_name.to_string(), value.clone());
    }
    Ok(normalised)
}

/// `stix2`'s selector syntax:
/// `^([a-z0-9_-]{3,250}(\.(\[\d+\]|[a-z0-9_-]{1,250}))*|id)$`.
fn selector_syntax_ok(selector: &str) -> bool {
    fn name_ok(p: &str, min: usize) -> bool {
        (min..=250).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    }
    if selector == "id" {
        return true;
    }
    let mut parts = selector.split('.');
    if !parts.next().is_some_and(|p| name_ok(p, 3)) {
        return false;
    }
    parts.all(|p| {
        name_ok(p, 1)
            || p.strip_prefix('[')
                .and_then(|p| p.strip_suffix(']'))
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Whether a granular-marking selector (`"description"`, `"labels.[1]"`,
/// `"x_custom.key"`) matches a non-empty value, as `stix2.markings.utils`
/// walks objects: into JSON objects and list items that are JSON objects,
/// but not into the items of `external_references`, `kill_chain_phases` and
/// `granular_markings` (STIX sub-objects there); a list item's index is the
/// index of its first equal item.
fn selector_resolves(map: &Map<String, Value>, selector: &str) -> bool {
    if !selector_syntax_ok(selector) {
        return false;
    }
    let mut parts = selector.split('.');
    let Some(first) = parts.next() else { return false };
    let Some(mut cur) = map.get(first) else {
        return false;
    };
    let opaque_items = matches!(first, "external_references" | "kill_chain_phases" | "granular_markings");
    let mut descend = true;
    for part in parts {
        if !descend {
            return false;
        }
        let next = match part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
            Some(idx) => {
                let Some(items) = cur.as_array() else { return false };
                let Some(i) = idx.parse::<usize>().ok() else { return false };
                let Some(item) = items.get(i) else { return false };
                if items.iter().position(|x| x == item) != Some(i) {
                    return false;
                }
                descend = item.is_object() && !opaque_items;
                Some(item)
            }
            None => cur.as_object().and_then(|o| o.get(part)),
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    super::pyjson::truthy(cur)
}

/// `granular_markings`: objects with a non-empty `selectors` list of
/// selectors that match the object, and `marking_ref` (a marking-definition
/// id) and/or `lang`.
fn check_granular_markings(kind: ObjKind, map: &Map<String, Value>, markings: &Value) -> Result<(), DataError> {
    const PROP: &str = "granular_markings";
    let Some(items) = markings.as_array() else {
        return Err(invalid(kind, PROP, "expected a list of objects"));
    };
    for m in items {
        let Some(m) = m.as_object() else {
            return Err(invalid(kind, PROP, "expected a list of objects"));
        };
        let selectors = m.get("selectors").and_then(Value::as_array).filter(|s| !s.is_empty());
        let Some(selectors) = selectors else {
            return Err(invalid(kind, PROP, "each marking needs a non-empty 'selectors' list"));
        };
        for sel in selectors {
            let ok = sel.as_str().is_some_and(|sel| selector_resolves(map, sel));
            if !ok {
                return Err(invalid(kind, PROP, format_args!("selector {sel} does not match a property")));
            }
        }
        let marking_ref = m.get("marking_ref");
        let lang = m.get("lang");
        if let Some(r) = marking_ref {
            check_ref(kind, PROP, r, Some(MARKING))?;
        }
        if let Some(l) = lang {
            expect_str(kind, PROP, l)?;
        }
        if marking_ref.is_none() && lang.is_none() {
            return Err(invalid(kind, PROP, "each marking needs 'marking_ref' or 'lang'"));
        }
    }
    Ok(())
}

/// Checks the order of the timestamps of [`ObjKind::ordered_stamps`]:
/// `valid_until` after `valid_from`, `last_seen` not before `first_seen`.
fn check_stamp_order(kind: ObjKind, stamps: [Option<Timestamp>; 2]) -> Result<(), DataError> {
    let [Some(first), Some(second)] = stamps else { return Ok(()) };
    match kind {
        ObjKind::Indicator if second <= first => {
            Err(DataError::invalid_property("indicator: 'valid_until' must be later than 'valid_from'".to_string()))
        }
        ObjKind::Sighting if second < first => Err(DataError::invalid_property(
            "sighting: 'last_seen' must be later than or equal to 'first_seen'".to_string(),
        )),
        _ => Ok(()),
    }
}

/// Validates and normalises a STIX object in place (see [`Indicator`] for
/// the rules). `map["type"]` must already equal `kind.name()`.
pub(crate) fn validate_object(kind: ObjKind, map: &mut Map<String, Value>) -> Result<(), DataError> {
    for value in map.values() {
        pyjson::check_numbers(value)
            .map_err(|why| DataError::invalid_property(format!("{}: unsupported number: {why}", kind.name())))?;
    }
    let props = kind.props();
    let mut stamps: [Option<Timestamp>; 2] = [None, None];
    // Bit i set: spec property i is a boolean at its default `false`, which
    // stix2 omits.
    let mut at_default: u32 = 0;
    let mut has_empty = false;
    // Bit i set: spec property i is present with a non-empty value.
    let mut present: u32 = 0;
    for (key, value) in map.iter_mut() {
        let index = kind.index(key);
        // Custom property names are checked even for values stix2 drops.
        if index.is_none() && !is_custom_property_name(key) {
            return Err(DataError::invalid_property(format!(
                "{}: invalid custom property name '{key}': must begin with a lowercase letter a-z",
                kind.name()
            )));
        }
        // stix2 drops properties whose value is None or [] (but chokes on a
        // null spec_version).
        if value.is_null() || value.as_array().is_some_and(Vec::is_empty) {
            if key == "spec_version" {
                return Err(invalid(kind, key, format_args!("expected '2.1', found {value}")));
            }
            has_empty = true;
            continue;
        }
        let Some(i) = index else { continue };
        present |= 1 << i;
        let (name, k) = props[i];
        let ts = check_property(kind, name, k, value)?;
        kind.keep_ordered_stamp(&mut stamps, i, ts);
        if matches!(k, Kind::BoolDefaultFalse) && value == &Value::Bool(false) {
            at_default |= 1 << i;
        }
    }
    if has_empty {
        map.retain(|_, v| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty)));
    }
    let has = |name: &str| present & kind.bit(name) != 0;
    if !kind.has_required(present) {
        if let Some(req) = kind.required().iter().find(|req| !has(req)) {
            return Err(DataError::missing_property(format!("{}: missing required property '{req}'", kind.name())));
        }
    }
    if !has("spec_version") {
        map.insert("spec_version".to_string(), Value::String("2.1".to_string()));
    }
    if has("granular_markings") {
        if let Some(markings) = map.get("granular_markings") {
            check_granular_markings(kind, map, markings)?;
        }
    }
    while at_default != 0 {
        map.remove(props[at_default.trailing_zeros() as usize].0);
        at_default &= at_default - 1;
    }
    check_stamp_order(kind, stamps)?;
    match kind {
        ObjKind::Indicator => {
            let is_stix = map.get("pattern_type").and_then(Value::as_str) == Some("stix");
            if is_stix {
                let pattern_text = map.get("pattern").and_then(Value::as_str).unwrap_or("");
                // A null pattern_version was dropped above.
                let pattern_version = map.get("pattern_version").and_then(Value::as_str);
                if check_stix_pattern(pattern_text, pattern_version)? {
                    map.insert("pattern_version".to_string(), Value::String("2.1".to_string()));
                }
            }
        }
        ObjKind::Sighting => {
            // A nested indicator (vast-threatbus retro matches) is normalised
            // best-effort, like the Python envelope decoder does.
            if let Some(Value::Object(inner)) = map.get_mut(X_THREATBUS_INDICATOR) {
                if inner.get("type").and_then(Value::as_str) == Some("indicator") {
                    let mut copy = inner.clone();
                    if validate_object(ObjKind::Indicator, &mut copy).is_ok() {
                        *inner = copy;
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Canonical serialization
// ---------------------------------------------------------------------------

/// Serializes a STIX object map in `stix2` order: spec properties in spec
/// order, then custom properties sorted by name.
pub(crate) struct Canonical<'a> {
    pub(crate) kind: ObjKind,
    pub(crate) map: &'a Map<String, Value>,
}

/// A property value; a nested STIX indicator under `x_threatbus_indicator`
/// is written in canonical indicator order.
struct PropValue<'a> {
    key: &'a str,
    value: &'a Value,
}

impl Serialize for PropValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.key == X_THREATBUS_INDICATOR {
            if let Value::Object(inner) = self.value {
                if inner.get("type").and_then(Value::as_str) == Some("indicator") {
                    return Canonical { kind: ObjKind::Indicator, map: inner }.serialize(s);
                }
            }
        }
        if self.key == "external_references" {
            if let Value::Array(items) = self.value {
                return s.collect_seq(items.iter().map(ExternalReference));
            }
        }
        self.value.serialize(s)
    }
}

/// An item of `external_references`, written in `stix2`'s property order.
struct ExternalReference<'a>(&'a Value);

impl ExternalReference<'_> {
    /// The entries in `stix2`'s order: known properties, then custom ones.
    fn entries(map: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
        let known = EXTERNAL_REFERENCE_PROPS.iter().filter_map(|k| map.get_key_value(*k));
        let custom = map.iter().filter(|(k, _)| !EXTERNAL_REFERENCE_PROPS.contains(&k.as_str()));
        known.chain(custom)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let Value::Object(map) = self.0 else {
            return pyjson::write_value(out, self.0);
        };
        out.push(b'{');
        for (i, (k, v)) in Self::entries(map).enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            pyjson::write_str(out, k);
            out.extend_from_slice(b": ");
            pyjson::write_value(out, v);
        }
        out.push(b'}');
    }
}

impl Serialize for ExternalReference<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => s.collect_map(Self::entries(map)),
            other => other.serialize(s),
        }
    }
}

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut slots: [Option<(&String, &Value)>; 23] = [None; 23];
        for (k, v) in self.map {
            if let Some(i) = self.kind.index(k) {
                slots[i] = Some((k, v));
            }
        }
        let mut m = s.serialize_map(Some(self.map.len()))?;
        for (k, v) in slots.iter().flatten() {
            m.serialize_entry(k, &PropValue { key: k, value: v })?;
        }
        for (k, v) in self.map {
            if self.kind.index(k).is_none() {
                m.serialize_entry(k, &PropValue { key: k, value: v })?;
            }
        }
        m.end()
    }
}

impl Canonical<'_> {
    /// Writes the canonical JSON (same bytes as serializing `self` with
    /// [`pyjson::PyFormatter`], without going through serde).
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let mut slots: [Option<(&String, &Value)>; 23] = [None; 23];
        let mut n_spec = 0;
        for (k, v) in self.map {
            if let Some(i) = self.kind.index(k) {
                slots[i] = Some((k, v));
                n_spec += 1;
            }
        }
        out.push(b'{');
        let mut first = true;
        let mut entry = |out: &mut Vec<u8>, k: &str, v: &Value, spec: bool| {
            write_key(out, &mut first, k, spec);
            match v {
                Value::Object(inner)
                    if k == X_THREATBUS_INDICATOR && inner.get("type").and_then(Value::as_str) == Some("indicator") =>
                {
                    Canonical { kind: ObjKind::Indicator, map: inner }.write(out)
                }
                Value::Array(items) if k == "external_references" => {
                    out.push(b'[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.extend_from_slice(b", ");
                        }
                        ExternalReference(item).write(out);
                    }
                    out.push(b']');
                }
                _ => pyjson::write_value(out, v),
            }
        };
        for (k, v) in slots.iter().flatten() {
            entry(out, k, v, true);
        }
        if n_spec < self.map.len() {
            for (k, v) in self.map {
                if self.kind.index(k).is_none() {
                    entry(out, k, v, false);
                }
            }
        }
        out.push(b'}');
    }
}

/// Writes the separator before an entry of a JSON object (none before the
/// first) and its key. `spec`: `key` is a spec property name (`[a-z_]+`),
/// which needs no escaping.
fn write_key(out: &mut Vec<u8>, first: &mut bool, key: &str, spec: bool) {
    if !std::mem::take(first) {
        out.extend_from_slice(b", ");
    }
    if spec {
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.push(b'"');
    } else {
        pyjson::write_str(out, key);
    }
    out.extend_from_slice(b": ");
}

fn canonical_json(kind: ObjKind, map: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(384);
    Canonical { kind, map }.write(&mut out);
    pyjson::into_string(out)
}

fn new_id(kind: ObjKind) -> String {
    format!("{}--{}", kind.name(), uuid::Uuid::new_v4())
}

fn parse_object(kind: ObjKind, json: &str) -> Result<Map<String, Value>, DataError> {
    let value: Value = serde_json::from_str(json).map_err(DataError::json)?;
    object_from_value(kind, value)
}

fn object_from_value(kind: ObjKind, value: Value) -> Result<Map<String, Value>, DataError> {
    let Value::Object(mut map) = value else {
        return Err(DataError::invalid_property(format!(
            "{}: expected a JSON object, found {}",
            kind.name(),
            type_name(&value)
        )));
    };
    match map.get("type") {
        None => return Err(DataError::missing_property(format!("{}: missing required property 'type'", kind.name()))),
        Some(Value::String(t)) if t == kind.name() => {}
        Some(other) => {
            return Err(DataError::unsupported_type(format!(
                "expected a STIX object of type '{}', found type {other}",
                kind.name()
            )))
        }
    }
    validate_object(kind, &mut map)?;
    Ok(map)
}

// ---------------------------------------------------------------------------
// Indicator
// ---------------------------------------------------------------------------

/// A validated STIX 2.1 Indicator.
///
/// Holds the object as a JSON map. Parsing validates like
/// `stix2.parse(json, allow_custom=True)` and normalises the object the way
/// `stix2` would re-serialize it:
/// * required: `type`, `id`, `created`, `modified`, `pattern`,
///   `pattern_type`, `valid_from`; `spec_version` defaults to `"2.1"` (and
///   must be `"2.1"` if given);
/// * `id` must be `indicator--<RFC 4122 UUID>`; references must be STIX
///   identifiers of the allowed types;
/// * timestamps must be UTC (`...Z`) and are re-formatted as `stix2` prints
///   them;
/// * `valid_until` must be later than `valid_from`;
/// * if `pattern_type` is `"stix"`, `pattern_version` defaults to `"2.1"` and
///   the pattern must pass [`pattern::validate_version`] with the grammar of
///   that version (2.1 for `"2.1"`, 2.0 for any other value, as `stix2`
///   does); other pattern types are not checked;
/// * properties whose value is `null` or `[]`, and `revoked: false`, are
///   dropped; a single string given for a list of strings is wrapped in a
///   list;
/// * custom property names must begin with a lowercase letter.
///
/// [`to_json`](Self::to_json) emits the canonical form (see
/// [`Stix2Object::to_json`](super::Stix2Object::to_json)).
#[derive(Debug, Clone, PartialEq)]
pub struct Indicator {
    map: Map<String, Value>,
}

impl Indicator {
    /// Parses and validates a JSON indicator.
    pub fn parse(json: &str) -> Result<Self, DataError> {
        Ok(Indicator { map: parse_object(ObjKind::Indicator, json)? })
    }

    /// Validates an indicator given as a JSON value.
    pub fn from_value(value: Value) -> Result<Self, DataError> {
        Ok(Indicator { map: object_from_value(ObjKind::Indicator, value)? })
    }

    /// Creates a new indicator like `stix2.Indicator(pattern=...,
    /// pattern_type=...)`: a fresh `indicator--<uuid4>` id, `created`,
    /// `modified` and `valid_from` set to now, `spec_version` `"2.1"`, and
    /// `pattern_version` `"2.1"` if `pattern_type` is `"stix"` (in which case
    /// the pattern is validated).
    pub fn new(pattern: &str, pattern_type: &str) -> Result<Self, DataError> {
        let now = Timestamp::now();
        let mut map = Map::new();
        map.insert("type".into(), "indicator".into());
        map.insert("spec_version".into(), "2.1".into());
        map.insert("id".into(), new_id(ObjKind::Indicator).into());
        map.insert("created".into(), now.format(Precision::MillisecondMin).as_str().into());
        map.insert("modified".into(), now.format(Precision::MillisecondMin).as_str().into());
        map.insert("pattern".into(), pattern.into());
        map.insert("pattern_type".into(), pattern_type.into());
        map.insert("valid_from".into(), now.format(Precision::Any).as_str().into());
        validate_object(ObjKind::Indicator, &mut map)?;
        Ok(Indicator { map })
    }

    /// The `id` (`indicator--<uuid>`).
    pub fn id(&self) -> &str {
        self.str_prop("id")
    }

    /// The `pattern`.
    pub fn pattern(&self) -> &str {
        self.str_prop("pattern")
    }

    /// The `pattern_type` (`stix`, `suricata`, `snort`, `sigma`, ...).
    pub fn pattern_type(&self) -> &str {
        self.str_prop("pattern_type")
    }

    /// The Threat Bus update operation (`x_threatbus_update`): `None` for a
    /// new indicator, `Some(Edit)` or `Some(Remove)` otherwise. Unknown values
    /// are treated as absent.
    pub fn update(&self) -> Option<Operation> {
        match self.map.get(X_THREATBUS_UPDATE)?.as_str()? {
            "EDIT" => Some(Operation::Edit),
            "REMOVE" => Some(Operation::Remove),
            _ => None,
        }
    }

    /// Sets a custom property (e.g. [`X_THREATBUS_UPDATE`]). A `null` or
    /// empty-list value removes the property (as `stix2` drops those). Spec
    /// property names and names not starting with a lowercase letter are
    /// refused with a logged warning, since they would bypass validation.
    pub fn set_custom(&mut self, key: &str, value: Value) {
        set_custom(ObjKind::Indicator, &mut self.map, key, value);
    }

    /// Any property's value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// The validated property map (sorted by key, not in canonical order).
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// Canonical JSON, byte-compatible with python `stix2`'s `serialize()`.
    pub fn to_json(&self) -> String {
        canonical_json(ObjKind::Indicator, &self.map)
    }

    /// The object as a JSON value (keys sorted, not in canonical order; use
    /// [`to_json`](Self::to_json) for wire output).
    pub fn to_value(&self) -> Value {
        Value::Object(self.map.clone())
    }

    fn str_prop(&self, key: &str) -> &str {
        self.map.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

impl Serialize for Indicator {
    /// Serializes in canonical property order.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Canonical { kind: ObjKind::Indicator, map: &self.map }.serialize(s)
    }
}

fn set_custom(kind: ObjKind, map: &mut Map<String, Value>, key: &str, value: Value) {
    if kind.index(key).is_some() || !is_custom_property_name(key) {
        log::warn!(
            "refusing to set '{key}' as a custom property of a STIX {}: not a valid custom property name",
            kind.name()
        );
        return;
    }
    if value.is_null() || value.as_array().is_some_and(Vec::is_empty) {
        map.remove(key);
    } else {
        map.insert(key.to_string(), value);
    }
}

// ---------------------------------------------------------------------------
// Sighting
// ---------------------------------------------------------------------------

/// A validated STIX 2.1 Sighting.
///
/// Validation and normalisation follow the same rules as [`Indicator`], with
/// required properties `type`, `id`, `created`, `modified`,
/// `sighting_of_ref`; `sighting_of_ref` must reference a STIX domain object
/// (any type except the STIX cyber observables such as `ipv4-addr` and the
/// relationship types `relationship` / `sighting`, as `stix2` with
/// `allow_custom=True`); `count` must be in `0..=999999999`; `last_seen` must
/// not be earlier than `first_seen`; `summary: false` is dropped too.
///
/// A nested STIX indicator in `x_threatbus_indicator` is normalised
/// best-effort and emitted in canonical indicator order; other nested objects
/// (e.g. `x_threatbus_sighting_context`) are emitted with their keys sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    map: Map<String, Value>,
}

impl Sighting {
    /// Parses and validates a JSON sighting.
    pub fn parse(json: &str) -> Result<Self, DataError> {
        Ok(Sighting { map: parse_object(ObjKind::Sighting, json)? })
    }

    /// Validates a sighting given as a JSON value.
    pub fn from_value(value: Value) -> Result<Self, DataError> {
        Ok(Sighting { map: object_from_value(ObjKind::Sighting, value)? })
    }

    /// Creates a new sighting of `sighting_of_ref` like
    /// `stix2.Sighting(sighting_of_ref=...)`: a fresh `sighting--<uuid4>` id,
    /// `created` and `modified` set to now, `spec_version` `"2.1"`.
    pub fn new(sighting_of_ref: &str) -> Result<Self, DataError> {
        let now = Timestamp::now().format(Precision::MillisecondMin);
        let mut map = Map::new();
        map.insert("type".into(), "sighting".into());
        map.insert("spec_version".into(), "2.1".into());
        map.insert("id".into(), new_id(ObjKind::Sighting).into());
        map.insert("created".into(), now.as_str().into());
        map.insert("modified".into(), now.as_str().into());
        map.insert("sighting_of_ref".into(), sighting_of_ref.into());
        validate_object(ObjKind::Sighting, &mut map)?;
        Ok(Sighting { map })
    }

    /// The `id` (`sighting--<uuid>`).
    pub fn id(&self) -> &str {
        self.map.get("id").and_then(Value::as_str).unwrap_or("")
    }

    /// The id of the sighted object (usually an indicator).
    pub fn sighting_of_ref(&self) -> &str {
        self.map.get("sighting_of_ref").and_then(Value::as_str).unwrap_or("")
    }

    /// Sets `last_seen` (printed with microsecond precision at most,
    /// fractional seconds only if non-zero).
    pub fn set_last_seen(&mut self, last_seen: chrono::DateTime<chrono::Utc>) {
        let ts = Timestamp::from_datetime(last_seen).format(Precision::Any);
        self.map.insert("last_seen".into(), ts.as_str().into());
    }

    /// Sets a custom property (e.g. [`X_THREATBUS_SIGHTING_CONTEXT`]); see
    /// [`Indicator::set_custom`].
    ///
    /// [`X_THREATBUS_SIGHTING_CONTEXT`]: super::X_THREATBUS_SIGHTING_CONTEXT
    pub fn set_custom(&mut self, key: &str, value: Value) {
        set_custom(ObjKind::Sighting, &mut self.map, key, value);
    }

    /// Any property's value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// The validated property map (sorted by key, not in canonical order).
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// Canonical JSON, byte-compatible with python `stix2`'s `serialize()`.
    pub fn to_json(&self) -> String {
        canonical_json(ObjKind::Sighting, &self.map)
    }

    /// The object as a JSON value (keys sorted, not in canonical order; use
    /// [`to_json`](Self::to_json) for wire output).
    pub fn to_value(&self) -> Value {
        Value::Object(self.map.clone())
    }
}

impl Serialize for Sighting {
    /// Serializes in canonical property order.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Canonical { kind: ObjKind::Sighting, map: &self.map }.serialize(s)
    }
}

// ---------------------------------------------------------------------------
// Stix2Object
// ---------------------------------------------------------------------------

/// A STIX 2.1 object Threat Bus transports: an indicator or a sighting.
#[derive(Debug, Clone, PartialEq)]
pub enum Stix2Object {
    /// An `indicator`.
    Indicator(Indicator),
    /// A `sighting`.
    Sighting(Sighting),
}

impl Stix2Object {
    /// Validates a STIX object given as a JSON value (see [`parse_stix2`]).
    pub fn from_value(value: Value) -> Result<Self, DataError> {
        let Value::Object(mut map) = value else {
            return Err(DataError::invalid_property(format!(
                "invalid STIX object: expected a JSON object, found {}",
                type_name(&value)
            )));
        };
        let kind = match map.get("type") {
            None => {
                return Err(DataError::missing_property(
                    "invalid STIX object: missing required property 'type'".to_string(),
                ))
            }
            Some(Value::String(t)) if t == "indicator" => ObjKind::Indicator,
            Some(Value::String(t)) if t == "sighting" => ObjKind::Sighting,
            Some(Value::String(t)) => {
                return Err(DataError::unsupported_type(format!(
                    "unsupported STIX object type '{t}': expected 'indicator' or 'sighting'"
                )))
            }
            Some(other) => {
                return Err(DataError::unsupported_type(format!(
                    "invalid STIX object: 'type' must be a string, found {other}"
                )))
            }
        };
        validate_object(kind, &mut map)?;
        Ok(match kind {
            ObjKind::Indicator => Stix2Object::Indicator(Indicator { map }),
            ObjKind::Sighting => Stix2Object::Sighting(Sighting { map }),
        })
    }

    /// The Threat Bus message type (`Indicator` or `Sighting`).
    pub fn message_type(&self) -> MessageType {
        match self {
            Stix2Object::Indicator(_) => MessageType::Indicator,
            Stix2Object::Sighting(_) => MessageType::Sighting,
        }
    }

    /// The Threat Bus topic: `"stix2/" + type`.
    pub fn topic(&self) -> &'static str {
        self.message_type().topic()
    }

    /// The object's `id`.
    pub fn id(&self) -> &str {
        match self {
            Stix2Object::Indicator(i) => i.id(),
            Stix2Object::Sighting(s) => s.id(),
        }
    }

    /// Canonical JSON, byte-compatible with python `stix2`'s `serialize()`:
    /// `", "` / `": "` separators, non-ASCII escaped, spec properties in the
    /// `stix2` class order, then custom properties sorted by name. Nested
    /// objects of custom properties are emitted with sorted keys (the map
    /// type does not keep insertion order), except a nested STIX indicator in
    /// `x_threatbus_indicator`, which is emitted in canonical order.
    pub fn to_json(&self) -> String {
        match self {
            Stix2Object::Indicator(i) => i.to_json(),
            Stix2Object::Sighting(s) => s.to_json(),
        }
    }

    /// The indicator, if this is one.
    pub fn as_indicator(&self) -> Option<&Indicator> {
        match self {
            Stix2Object::Indicator(i) => Some(i),
            Stix2Object::Sighting(_) => None,
        }
    }

    /// The sighting, if this is one.
    pub fn as_sighting(&self) -> Option<&Sighting> {
        match self {
            Stix2Object::Sighting(s) => Some(s),
            Stix2Object::Indicator(_) => None,
        }
    }

    pub(crate) fn canonical(&self) -> Canonical<'_> {
        match self {
            Stix2Object::Indicator(i) => Canonical { kind: ObjKind::Indicator, map: &i.map },
            Stix2Object::Sighting(s) => Canonical { kind: ObjKind::Sighting, map: &s.map },
        }
    }
}

impl Serialize for Stix2Object {
    /// Serializes in canonical property order.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.canonical().serialize(s)
    }
}

impl From<Indicator> for Stix2Object {
    fn from(i: Indicator) -> Self {
        Stix2Object::Indicator(i)
    }
}

impl From<Sighting> for Stix2Object {
    fn from(s: Sighting) -> Self {
        Stix2Object::Sighting(s)
    }
}

/// Validates a STIX 2.1 indicator or sighting given as JSON (see
/// [`parse_stix2`]) and returns its type and canonical JSON (see
/// [`Stix2Object::to_json`]): the same result as `parse_stix2` followed by
/// `to_json`, faster for flat objects of strings (most indicators), which
/// are checked and written without building a JSON tree.
pub fn canonicalize_stix2(json: &str) -> Result<(MessageType, String), DataError> {
    if let Some((kind, canonical)) = flat::canonical(json) {
        return Ok((kind.message_type(), canonical));
    }
    let obj = parse_stix2(json)?;
    Ok((obj.message_type(), obj.to_json()))
}

/// Parses and validates a STIX 2.1 indicator or sighting from JSON, like
/// `stix2.parse(json, allow_custom=True)` restricted to the two types Threat
/// Bus transports. Any other `type` is an error naming the type.
pub fn parse_stix2(json: &str) -> Result<Stix2Object, DataError> {
    let value: Value = serde_json::from_str(json).map_err(DataError::json)?;
    Stix2Object::from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_tables_match_index_functions() {
        for (i, (name, _)) in INDICATOR_PROPS.iter().enumerate() {
            assert_eq!(indicator_index(name), Some(i), "{name}");
        }
        for (i, (name, _)) in SIGHTING_PROPS.iter().enumerate().take(22) {
            assert_eq!(sighting_index(name), Some(i), "{name}");
        }
        assert_eq!(sighting_index(""), None);
    }

    #[test]
    fn uuid_layout_and_variant() {
        assert!(is_rfc4122_uuid("42d31a5b-2da0-4bdd-9823-1723a98fc2fb"));
        assert!(is_rfc4122_uuid("42D31A5B-2DA0-1BDD-B823-1723A98FC2FB"));
        assert!(!is_rfc4122_uuid("42d31a5b-2da0-4bdd-c823-1723a98fc2fb"));
        assert!(!is_rfc4122_uuid("42d31a5b-2da0-4bdd-7823-1723a98fc2fb"));
        assert!(!is_rfc4122_uuid("42d31a5b2da04bdd98231723a98fc2fb"));
        assert!(!is_rfc4122_uuid("42d31a5b-2da0-4bdd-9823-1723a98fc2fg"));
        assert!(!is_rfc4122_uuid("42d31a5b-2da0-4bdd-9823-1723a98fc2fbb"));
    }
}
