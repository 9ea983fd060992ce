//! The fast path of validation for the common shape of a STIX object: one
//! flat JSON object whose values are all strings (an indicator with its
//! pattern and timestamps, a sighting without lists or counts).
//!
//! It borrows the strings from the input and writes the canonical JSON
//! straight from them, without building a `serde_json::Value` tree, using
//! the same property checks as the general path. It only ever answers with
//! a success: whatever it does not handle, or finds wrong, is left to the
//! general path ([`super::parse_stix2`]), which then gives the one
//! authoritative answer and error message. So both paths agree by
//! construction on every error, and on every success by the tests that
//! compare their output.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::{
    check_stamp_order, check_stix_pattern, check_str_property, is_custom_property_name, prop_index, Kind, ObjKind,
    INDICATOR_PROPS, SIGHTING_PROPS,
};
use crate::pyjson;
use crate::timestamp::{Timestamp, TimestampBuf};

/// Validates `json` and returns its canonical JSON, if it is a flat object
/// of strings that passes every check; `None` for anything else (invalid
/// or not of that shape).
pub(super) fn canonical(json: &str) -> Option<(ObjKind, String)> {
    let mut entries = Vec::with_capacity(16);
    if scan_plain_object(json, &mut entries).is_none() {
        entries = serde_json::from_str::<FlatStrings<'_>>(json).ok()?.0;
    }
    let kind = match entries.iter().find(|(key, _)| key.text == "type").map(|(_, value)| &*value.text) {
        Some("indicator") => ObjKind::Indicator,
        Some("sighting") => ObjKind::Sighting,
        _ => return None,
    };
    let props = kind.props();
    let mut slots: [Option<Slot<'_>>; 23] = [const { None }; 23];
    let mut custom: Vec<(&JsonStr<'_>, &JsonStr<'_>)> = Vec::new();
    let mut stamps: [Option<Timestamp>; 2] = [None, None];
    let mut present: u32 = 0;
    for (json_key, json_value) in &entries {
        let (key, value) = (&*json_key.text, &*json_value.text);
        let Some(i) = kind.index(key) else {
            if !is_custom_property_name(key) {
                return None;
            }
            custom.push((json_key, json_value));
            continue;
        };
        let (name, k) = props[i];
        if !k.is_string() || present & (1 << i) != 0 {
            // A list, number, ... given as a string, or a repeated key.
            return None;
        }
        present |= 1 << i;
        let ts = check_str_property(kind, name, k, value).ok()?;
        slots[i] = Some(match (k, ts) {
            (Kind::Timestamp(precision), Some(ts)) if !Timestamp::is_formatted(value, precision) => {
                Slot::Stamp(ts.format(precision))
            }
            _ => Slot::Text(json_value.as_ref()),
        });
        kind.keep_ordered_stamp(&mut stamps, i, ts);
    }
    if !kind.has_required(present) {
        return None;
    }
    check_stamp_order(kind, stamps).ok()?;
    custom.sort_unstable_by(|a, b| a.0.text.cmp(&b.0.text));
    if custom.windows(2).any(|pair| pair[0].0.text == pair[1].0.text) {
        return None;
    }
    const SPEC_VERSION: usize = prop_index(&INDICATOR_PROPS, "spec_version");
    const _: () = assert!(prop_index(&SIGHTING_PROPS, "spec_version") == SPEC_VERSION);
    slots[SPEC_VERSION].get_or_insert(Slot::Text(VERSION_2_1));
    if kind == ObjKind::Indicator {
        const PATTERN: usize = prop_index(&INDICATOR_PROPS, "pattern");
        const PATTERN_TYPE: usize = prop_index(&INDICATOR_PROPS, "pattern_type");
        const PATTERN_VERSION: usize = prop_index(&INDICATOR_PROPS, "pattern_version");
        if slots[PATTERN_TYPE].as_ref().map(Slot::as_str) == Some("stix") {
            let text = slots[PATTERN].as_ref().map_or("", Slot::as_str);
            let version = slots[PATTERN_VERSION].as_ref().map(Slot::as_str);
            if check_stix_pattern(text, version).ok()? {
                slots[PATTERN_VERSION] = Some(Slot::Text(VERSION_2_1));
            }
        }
    }
    // Written as a `String` from `&str` pieces: no UTF-8 check at the end.
    let mut out = String::with_capacity(json.len() + 32);
    out.push('{');
    for (slot, (name, _)) in slots.iter().zip(props) {
        if let Some(value) = slot {
            // Spec property names are `[a-z_]+`.
            write_entry_key(&mut out, TextRef { text: name, verbatim: true });
            match value {
                Slot::Text(text) => text.write(&mut out),
                // Digits and punctuation only.
                Slot::Stamp(buf) => write_verbatim(&mut out, buf.as_str()),
            }
        }
    }
    for (key, value) in custom {
        write_entry_key(&mut out, key.as_ref());
        value.write(&mut out);
    }
    out.push('}');
    Some((kind, out))
}

/// Writes the separator before an entry (none before the first) and its
/// key, in Python's `json.dumps` style.
fn write_entry_key(out: &mut String, key: TextRef<'_>) {
    if out.len() > 1 {
        out.push_str(", ");
    }
    key.write(out);
    out.push_str(": ");
}

/// Reads a JSON object whose keys and values are all strings without
/// escapes into `entries`, borrowing them from `json`. `None` for anything
/// else (escapes, other values, invalid JSON), which serde_json then reads;
/// whatever this accepts, serde_json reads into the same entries.
fn scan_plain_object<'a>(json: &'a str, entries: &mut Vec<(JsonStr<'a>, JsonStr<'a>)>) -> Option<()> {
    let b = json.as_bytes();
    let mut i = skip_whitespace(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_whitespace(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let (key, after) = plain_string(json, i)?;
            i = skip_whitespace(b, after);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let (value, after) = plain_string(json, skip_whitespace(b, i + 1))?;
            entries.push((key, value));
            i = skip_whitespace(b, after);
            match b.get(i) {
                Some(b',') => i = skip_whitespace(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_whitespace(b, i) == b.len()).then_some(())
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
fn skip_whitespace(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The JSON string starting at `at` (its opening quote) without its quotes,
/// and the index after its closing quote; `None` if there is none there,
/// or it has an escape or a control character.
#[inline]
fn plain_string(json: &str, at: usize) -> Option<(JsonStr<'_>, usize)> {
    let b = json.as_bytes();
    if b.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let mut i = start;
    // Bytes that Python's `json.dumps` escapes although JSON has them
    // verbatim, marked in 8-byte words.
    let mut escaped_in_output = 0;
    // 8 bytes at a time, up to the word with the first quote, backslash or
    // control character.
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
        let special = pyjson::json_special_bytes(w);
        let output_escapes = pyjson::non_ascii_or_del_bytes(w);
        if special == 0 {
            escaped_in_output |= output_escapes;
            i += 8;
            continue;
        }
        let bits_before = special.trailing_zeros() & !7;
        // The bytes before the special one (none when it is the first).
        escaped_in_output |= output_escapes & ((1u64 << bits_before) - 1);
        i += (bits_before / 8) as usize;
        break;
    }
    loop {
        match *b.get(i)? {
            // A quote is ASCII, so `i` is on a character boundary.
            b'"' => {
                let text = Cow::Borrowed(&json[start..i]);
                return Some((JsonStr { text, verbatim: escaped_in_output == 0 }, i + 1));
            }
            b'\\' | 0..=0x1f => return None,
            other => {
                if !pyjson::is_verbatim(other) {
                    escaped_in_output = 1;
                }
                i += 1;
            }
        }
    }
}

/// The JSON string of `s` when it needs no escaping: quotes around it.
fn write_verbatim(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(s);
    out.push('"');
}

/// The value of a spec property: the input's string, or a timestamp
/// re-formatted as `stix2` prints it.
enum Slot<'a> {
    Text(TextRef<'a>),
    Stamp(TimestampBuf),
}

impl Slot<'_> {
    fn as_str(&self) -> &str {
        match self {
            Slot::Text(t) => t.text,
            Slot::Stamp(buf) => buf.as_str(),
        }
    }
}

/// A string of the input, or a constant, to be written to the output.
#[derive(Clone, Copy)]
struct TextRef<'a> {
    text: &'a str,
    /// Printable ASCII without `"` and `\`: written as it is.
    verbatim: bool,
}

impl TextRef<'_> {
    fn write(&self, out: &mut String) {
        if self.verbatim {
            write_verbatim(out, self.text);
        } else {
            let mut escaped = Vec::with_capacity(self.text.len() + 8);
            pyjson::write_str(&mut escaped, self.text);
            out.push_str(&pyjson::into_string(escaped));
        }
    }
}

/// The value "2.1" of `spec_version` and `pattern_version`.
const VERSION_2_1: TextRef<'static> = TextRef { text: "2.1", verbatim: true };

/// A JSON string, borrowed from the input unless it had escapes.
struct JsonStr<'a> {
    text: Cow<'a, str>,
    /// Known to be printable ASCII without `"` and `\` (false: unknown).
    verbatim: bool,
}

impl JsonStr<'_> {
    fn as_ref(&self) -> TextRef<'_> {
        TextRef { text: &self.text, verbatim: self.verbatim }
    }

    fn write(&self, out: &mut String) {
        self.as_ref().write(out);
    }
}

impl<'de> Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = JsonStr<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr { text: Cow::Borrowed(s), verbatim: false })
            }

            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(JsonStr { text: Cow::Owned(s.to_owned()), verbatim: false })
            }
        }
        d.deserialize_str(StrVisitor)
    }
}

/// The entries of a JSON object whose values are all strings, in input
/// order; any other JSON fails to deserialize.
struct FlatStrings<'a>(Vec<(JsonStr<'a>, JsonStr<'a>)>);

impl<'de> Deserialize<'de> for FlatStrings<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = FlatStrings<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(16);
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(FlatStrings(entries))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;
    use crate::{canonicalize_stix2, parse_stix2};

    /// The general path's answer: (type, canonical JSON) or the error text.
    fn general(json: &str) -> Result<(crate::MessageType, String), String> {
        parse_stix2(json).map(|o| (o.message_type(), o.to_json())).map_err(|e| e.to_string())
    }

    /// Builds a JSON object from `(key, raw JSON value)` pairs in order.
    fn object(entries: &[(&str, &str)]) -> String {
        let body: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        format!("{{{}}}", body.join(", "))
    }

    fn indicator() -> Vec<(&'static str, &'static str)> {
        vec![
            ("type", r#""indicator""#),
            ("spec_version", r#""2.1""#),
            ("id", r#""indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc""#),
            ("created", r#""2021-04-20T07:38:22.530Z""#),
            ("modified", r#""2021-04-20T07:38:22.530Z""#),
            ("pattern", r#""[domain-name:value = 'evil.example.com']""#),
            ("pattern_type", r#""stix""#),
            ("pattern_version", r#""2.1""#),
            ("valid_from", r#""2021-04-20T07:38:22.53Z""#),
        ]
    }

    fn sighting() -> Vec<(&'static str, &'static str)> {
        vec![
            ("type", r#""sighting""#),
            ("id", r#""sighting--8e3e2d8a-1a7c-4c3e-9a8f-1e2d3c4b5a69""#),
            ("created", r#""2021-04-20T07:38:22Z""#),
            ("modified", r#""2021-04-20T07:38:22.1Z""#),
            ("sighting_of_ref", r#""indicator--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc""#),
        ]
    }

    /// Variants of a base object: each replaces, adds or removes one entry.
    fn variants(
        base: &[(&'static str, &'static str)],
        changes: &[(&'static str, Option<&'static str>)],
    ) -> Vec<String> {
        let mut out = vec![object(base)];
        for &(key, value) in changes {
            let mut entries: Vec<(&str, &str)> = base.to_vec();
            match (entries.iter().position(|(k, _)| *k == key), value) {
                (Some(at), Some(v)) => entries[at].1 = v,
                (Some(at), None) => {
                    entries.remove(at);
                }
                (None, Some(v)) => entries.push((key, v)),
                (None, None) => {}
            }
            out.push(object(&entries));
            // The same with the changed entry first (key order must not matter).
            if let (Some(v), Some(at)) = (value, entries.iter().position(|(k, _)| *k == key)) {
                entries.remove(at);
                entries.insert(0, (key, v));
                out.push(object(&entries));
            }
        }
        out
    }

    const TIMESTAMPS: [&str; 12] = [
        r#""2021-04-20T07:38:22Z""#,
        r#""2021-04-20t07:38:22z""#,
        r#""2021-04-20T07:38:22.5Z""#,
        r#""2021-04-20T07:38:22.500Z""#,
        r#""2021-04-20T07:38:22.5300Z""#,
        r#""2021-04-20T07:38:22.123456Z""#,
        r#""2021-04-20T07:38:22.1234567Z""#,
        r#""2021-04-20T07:38:22.000Z""#,
        r#""2099-01-01T00:00:00Z""#,
        r#""2021-02-30T07:38:22Z""#,
        r#""2021-04-20 07:38:22Z""#,
        r#""2021-04-20T07:38:22+01:00""#,
    ];

    fn cases() -> Vec<String> {
        let mut changes: Vec<(&'static str, Option<&'static str>)> = Vec::new();
        for key in ["created", "modified", "valid_from", "valid_until"] {
            changes.extend(TIMESTAMPS.iter().map(|t| (key, Some(*t))));
        }
        for key in ["type", "spec_version", "id", "created", "modified", "pattern", "pattern_type", "valid_from"] {
            changes.push((key, None));
        }
        changes.extend([
            ("type", Some(r#""malware""#)),
            ("type", Some("1")),
            ("spec_version", Some(r#""2.0""#)),
            ("spec_version", Some("null")),
            ("id", Some(r#""indicator--df0f9a0e-c3b6-4f53-c0cf-5e9c454ee0cc""#)),
            ("id", Some(r#""sighting--df0f9a0e-c3b6-4f53-b0cf-5e9c454ee0cc""#)),
            ("pattern_version", None),
            ("pattern_version", Some(r#""""#)),
            ("pattern_version", Some(r#""2.0""#)),
            ("pattern_version", Some("null")),
            ("pattern_type", Some(r#""snort""#)),
            ("pattern", Some(r#""[domain-name:value = 'x'""#)),
            ("pattern", Some(r#""[file:hashes.MD5 = 'abc']""#)),
            ("pattern", Some(r#""[ipv4-addr:value = '10.0.0.1'] AND [url:value = 'http:\/\/a\u00e9\"b']""#)),
            ("name", Some(r#""caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \t""#)),
            ("name", Some(r#""""#)),
            ("description", Some(r#""line\nbreak \u007f""#)),
            ("created_by_ref", Some(r#""identity--8e3e2d8a-1a7c-4c3e-9a8f-1e2d3c4b5a69""#)),
            ("created_by_ref", Some(r#""malware--8e3e2d8a-1a7c-4c3e-9a8f-1e2d3c4b5a69""#)),
            ("labels", Some(r#""one""#)),
            ("labels", Some(r#"["one"]"#)),
            ("indicator_types", Some(r#""malicious-activity""#)),
            ("revoked", Some("false")),
            ("revoked", Some("true")),
            ("confidence", Some("50")),
            ("x_threatbus_update", Some(r#""REMOVE""#)),
            ("x_threatbus_update", Some(r#""ADD""#)),
            ("x_custom", Some("1")),
            ("x_\\u00e9", Some(r#""v""#)),
            ("a", Some(r#""first custom""#)),
            ("X_upper", Some(r#""v""#)),
            ("_under", Some(r#""v""#)),
            ("", Some(r#""v""#)),
            ("first_seen", Some(r#""2021-04-20T07:38:22Z""#)),
            ("last_seen", Some(r#""2021-04-19T07:38:22Z""#)),
            ("last_seen", Some(r#""2021-04-20T07:38:22Z""#)),
            ("sighting_of_ref", Some(r#""file--8e3e2d8a-1a7c-4c3e-9a8f-1e2d3c4b5a69""#)),
            ("sighting_of_ref", Some(r#""not-an-id""#)),
            ("count", Some("3")),
            ("summary", Some("false")),
            ("description", Some(r#""\ud800""#)),
        ]);
        let mut all = variants(&indicator(), &changes);
        all.extend(variants(&sighting(), &changes));
        let dup = object(&[indicator(), vec![("pattern_type", r#""snort""#)]].concat());
        let dup_custom = object(&[indicator(), vec![("x_a", r#""1""#), ("x_a", r#""2""#)]].concat());
        let dup_type = object(&[vec![("type", r#""sighting""#)], indicator()].concat());
        let customs = [("x_b", r#""2""#), ("x_threatbus_update", r#""REMOVE""#), ("x_a", r#""1""#), ("a", r#""0""#)];
        let several_custom = object(&[indicator(), customs.to_vec()].concat());
        let customs_first = object(&[customs.to_vec(), sighting()].concat());
        all.extend([dup, dup_custom, dup_type, several_custom, customs_first]);
        all.extend(
            ["", "{", "[]", "\"indicator\"", "null", "{}", r#"{"type": "indicator"} x"#, r#" {"type": "indicator"}"#]
                .map(String::from),
        );
        all
    }

    #[test]
    fn agrees_with_the_general_path() {
        let mut fast = 0;
        for json in cases() {
            let expected = general(&json);
            assert_eq!(
                canonicalize_stix2(&json).map_err(|e| e.to_string()),
                expected,
                "canonicalize_stix2 and parse_stix2 + to_json differ for {json}"
            );
            if let Some((kind, text)) = canonical(&json) {
                fast += 1;
                assert_eq!(Ok((kind.message_type(), text)), expected, "the fast path differs for {json}");
            }
        }
        // The fast path took part: most valid cases are flat objects of strings.
        assert!(fast > 100, "only {fast} cases took the fast path");
    }

    /// The entries serde_json reads, as plain pairs.
    fn serde_entries(json: &str) -> Option<Vec<(String, String)>> {
        let super::FlatStrings(entries) = serde_json::from_str(json).ok()?;
        Some(entries.into_iter().map(|(k, v)| (k.text.into_owned(), v.text.into_owned())).collect())
    }

    #[test]
    fn the_scanner_reads_what_serde_json_reads() {
        let plain = [
            r#"{"type": "indicator", "id": "x"}"#,
            "{\"\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}x\": \"0123456\u{e9}89abcdef\"}",
            "{}",
            " \t\r\n{ \n\"a\"\t:\r\"b\" ,\"\":\"\" } \n",
            r#"{"a":"b","a":"c"}"#,
            "{\"name\": \"caf\u{e9} \u{1f600} \u{7f} /\"}",
            r#"{"long": "0123456789abcdef0123456789abcdef0123456789"}"#,
        ];
        let other = [
            r#"{"a": "b\"c"}"#,
            r#"{"a": "\u00e9"}"#,
            r#"{"a\/": "b"}"#,
            "{\"a\": \"b\u{1}\"}",
            "{\"a\": \"tab\there\"}",
            r#"{"a": "b",}"#,
            r#"{"a": "b"} x"#,
            r#"{"a": "b"}}"#,
            r#"{"a" "b"}"#,
            r#"{"a": 1}"#,
            r#"{"a": ["b"]}"#,
            r#"{"a": "b""#,
            r#"{"a": "0123456789abcdef"#,
            r#"["a", "b"]"#,
            "",
            "{",
            "\u{a0}{}",
        ];
        for json in plain.iter().chain(&other) {
            let mut scanned = Vec::new();
            let read = super::scan_plain_object(json, &mut scanned);
            for string in scanned.iter().flat_map(|(k, v)| [k, v]) {
                let printable = string.text.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
                assert_eq!(string.verbatim, printable, "verbatim flag of {:?} in {json:?}", string.text);
            }
            let found = read.map(|()| {
                scanned.into_iter().map(|(k, v)| (k.text.into_owned(), v.text.into_owned())).collect::<Vec<_>>()
            });
            if plain.contains(json) {
                assert!(found.is_some(), "the scanner reads {json:?}");
            } else {
                assert!(found.is_none(), "the scanner leaves {json:?} to serde_json");
            }
            if found.is_some() {
                assert_eq!(found, serde_entries(json), "the scanner and serde_json differ on {json:?}");
            }
        }
    }

    /// A special byte at every position of the 8-byte words the scanner
    /// reads: it must end the string, bail out or clear the verbatim flag
    /// exactly as the byte-by-byte rules say.
    #[test]
    fn the_scanner_finds_special_bytes_at_every_position() {
        for len in 0..24 {
            for at in 0..len {
                for special in ['"', '\\', '\u{1}', '\u{7f}', '\u{e9}', '\t'] {
                    let mut text: String = "abcdefghijklmnopqrstuvwxyz".chars().take(len).collect();
                    text.replace_range(at..at + 1, &special.to_string());
                    let json = format!("{{\"k\": \"{text}\"}}");
                    let mut scanned = Vec::new();
                    let read = super::scan_plain_object(&json, &mut scanned);
                    match special {
                        '\u{7f}' | '\u{e9}' => {
                            assert!(read.is_some(), "{json:?} is read");
                            assert_eq!(scanned[0].1.text, text);
                            assert!(!scanned[0].1.verbatim, "{json:?} needs escaping");
                        }
                        // A quote ends the string early: the rest is not JSON.
                        _ => assert!(read.is_none(), "{json:?} is left to serde_json"),
                    }
                }
            }
            let json = format!("{{\"k\": \"{}\"}}", "x".repeat(len));
            let mut scanned = Vec::new();
            assert!(super::scan_plain_object(&json, &mut scanned).is_some(), "{json:?} is read");
            assert!(scanned[0].1.verbatim && scanned[0].1.text.len() == len, "{json:?} is verbatim");
        }
    }

    #[test]
    fn takes_the_general_path_for_other_shapes() {
        for (why, change) in [
            ("a list", ("labels", r#"["one"]"#)),
            ("a single string for a list", ("labels", r#""one""#)),
            ("a number", ("confidence", "50")),
            ("a boolean", ("revoked", "true")),
            ("a repeated key", ("pattern_type", r#""stix""#)),
        ] {
            let json = object(&[indicator(), vec![change]].concat());
            assert!(canonical(&json).is_none(), "{why}: {json}");
            assert!(general(&json).is_ok(), "{why} is valid: {json}");
        }
        assert!(canonical(&object(&indicator())).is_some(), "the plain indicator is flat");
    }
}
