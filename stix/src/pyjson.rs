//! JSON output byte-compatible with Python's `json.dumps` / `simplejson.dumps`
//! with default settings.
//!
//! Python's defaults differ from `serde_json`'s compact output in three ways,
//! all reproduced here by [`PyFormatter`]:
//!
//! * separators are `", "` between items and `": "` between key and value;
//! * `ensure_ascii`: every character outside printable ASCII (`' '..='~'`) is
//!   escaped as `\uXXXX` with lowercase hex digits, characters beyond the
//!   Basic Multilingual Plane as a UTF-16 surrogate pair (`😀` →
//!   `\ud83d\ude00`), and DEL (`0x7f`) as `\u007f`; `"`, `\\`, `\b`, `\f`, `\n`,
//!   `\r`, `\t` use their short escapes, `/` is not escaped;
//! * floats are printed like Python's `repr(float)`: shortest round-trip
//!   digits, always with a `.0` or an exponent (`1.0`, `0.1`, `1e-05`,
//!   `1e+16`).
//!
//! Numbers of a parsed document keep their meaning exactly, as Python's
//! `json.dumps(json.loads(text))` does: integers of any size are written
//! with the digits they came with (`-0` becomes `0`, as a Python `int`), and
//! floats are parsed correctly rounded and written as `repr(float)`
//! (`1E5` becomes `100000.0`). [`check_number`] rejects the two numbers
//! Python cannot carry: floats beyond the range of a double (Python would
//! send `Infinity`, which is not JSON) and integers longer than Python's
//! default limit of 4,300 digits.
//!
//! Key order is whatever the serialized value yields. For
//! `serde_json::Value` objects that is sorted by key, because this crate does
//! not enable `serde_json`'s `preserve_order` feature.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use serde_json::Value;

/// A [`serde_json::ser::Formatter`] that produces Python `json.dumps` style
/// output (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, Default)]
pub struct PyFormatter;

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline]
fn write_u16_escape<W: ?Sized + io::Write>(w: &mut W, unit: u16) -> io::Result<()> {
    let buf = [
        b'\\',
        b'u',
        HEX[(unit >> 12) as usize & 0xf],
        HEX[(unit >> 8) as usize & 0xf],
        HEX[(unit >> 4) as usize & 0xf],
        HEX[unit as usize & 0xf],
    ];
    w.write_all(&buf)
}

/// Writes `fragment` (which contains no character `serde_json` escapes
/// itself) with Python's `ensure_ascii` escaping.
fn write_ascii_escaped<W: ?Sized + io::Write>(w: &mut W, fragment: &str) -> io::Result<()> {
    let bytes = fragment.as_bytes();
    let mut start = 0;
    for (i, ch) in fragment.char_indices() {
        if (' '..='~').contains(&ch) {
            continue;
        }
        if start < i {
            w.write_all(&bytes[start..i])?;
        }
        let mut units = [0u16; 2];
        for unit in ch.encode_utf16(&mut units) {
            write_u16_escape(w, *unit)?;
        }
        start = i + ch.len_utf8();
    }
    if start < bytes.len() {
        w.write_all(&bytes[start..])?;
    }
    Ok(())
}

/// A tiny stack buffer for formatting floats without allocating.
struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes a finite `f64` exactly like Python's `repr(float)`.
fn write_py_float<W: ?Sized + io::Write>(w: &mut W, value: f64) -> io::Result<()> {
    use std::fmt::Write as _;
    if !value.is_finite() {
        // Python would emit NaN / Infinity / -Infinity (not valid JSON);
        // parsed documents cannot hold them (`check_number`), so this is only
        // for values built in code.
        let s = if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        };
        return w.write_all(s.as_bytes());
    }
    if value == 0.0 {
        return w.write_all(if value.is_sign_negative() { b"-0.0" } else { b"0.0" });
    }
    // `{:e}` yields the shortest round-trip digits: "-1.2345e-7".
    let mut sb = StackBuf { buf: [0; 64], len: 0 };
    write!(sb, "{value:e}").map_err(io::Error::other)?;
    let s = &sb.buf[..sb.len];
    let (negative, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let epos = s.iter().position(|&b| b == b'e').unwrap_or(s.len());
    let mantissa = &s[..epos];
    let exp: i32 =
        std::str::from_utf8(s.get(epos + 1..).unwrap_or(b"0")).ok().and_then(|e| e.parse().ok()).unwrap_or(0);
    let mut digits = [0u8; 40];
    let mut n = 0;
    for &b in mantissa {
        if b.is_ascii_digit() && n < digits.len() {
            digits[n] = b;
            n += 1;
        }
    }
    let digits = &digits[..n];
    // value = 0.d1d2...dn * 10^decpt
    let decpt = exp + 1;
    if negative {
        w.write_all(b"-")?;
    }
    if decpt <= -4 || decpt > 16 {
        w.write_all(&digits[..1])?;
        if digits.len() > 1 {
            w.write_all(b".")?;
            w.write_all(&digits[1..])?;
        }
        let e = decpt - 1;
        let sign = if e < 0 { b'-' } else { b'+' };
        let abs = e.unsigned_abs();
        let mut eb = StackBuf { buf: [0; 64], len: 0 };
        write!(eb, "{abs:02}").map_err(io::Error::other)?;
        w.write_all(&[b'e', sign])?;
        w.write_all(&eb.buf[..eb.len])
    } else if decpt <= 0 {
        w.write_all(b"0.")?;
        for _ in 0..(-decpt) {
            w.write_all(b"0")?;
        }
        w.write_all(digits)
    } else {
        let d = decpt as usize;
        if d >= digits.len() {
            w.write_all(digits)?;
            for _ in 0..(d - digits.len()) {
                w.write_all(b"0")?;
            }
            w.write_all(b".0")
        } else {
            w.write_all(&digits[..d])?;
            w.write_all(b".")?;
            w.write_all(&digits[d..])
        }
    }
}

/// Python's default `sys.int_info.default_max_str_digits`: longer integers
/// are refused by `json.loads`.
pub const MAX_INTEGER_DIGITS: usize = 4300;

/// Whether the text of a JSON number is an integer (no fraction, no exponent).
fn is_integer_text(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// Checks that the text of a JSON number (as `serde_json` keeps it) is one
/// Python carries through unchanged: an integer of at most
/// [`MAX_INTEGER_DIGITS`] digits, or a float within the range of a double.
pub fn check_number(text: &str) -> Result<(), String> {
    if is_integer_text(text) {
        let digits = text.trim_start_matches('-').len();
        if digits > MAX_INTEGER_DIGITS {
            return Err(format!("an integer of {digits} digits exceeds the limit of {MAX_INTEGER_DIGITS}"));
        }
        return Ok(());
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(()),
        _ => {
            let shown = if text.len() > 40 { format!("{}...", &text[..40]) } else { text.to_string() };
            Err(format!("the number {shown} is out of the range of a double"))
        }
    }
}

/// Checks every number in `value` with [`check_number`].
pub fn check_numbers(value: &Value) -> Result<(), String> {
    match value {
        Value::Number(n) => check_number(n.as_str()),
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(map) => map.values().try_for_each(check_numbers),
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// Writes the text of a JSON number as Python's `json.dumps` writes the
/// number `json.loads` makes of it (see the [module documentation](self)).
fn write_number_text<W: ?Sized + io::Write>(w: &mut W, text: &str) -> io::Result<()> {
    if is_integer_text(text) {
        if text.bytes().all(|b| b == b'-' || b == b'0') {
            return w.write_all(b"0");
        }
        return w.write_all(text.as_bytes());
    }
    // A float that does not parse cannot come from serde_json; `check_number`
    // rejects infinite ones before anything is written.
    write_py_float(w, text.parse::<f64>().unwrap_or(f64::NAN))
}

impl Formatter for PyFormatter {
    #[inline]
    fn write_number_str<W: ?Sized + io::Write>(&mut self, w: &mut W, value: &str) -> io::Result<()> {
        write_number_text(w, value)
    }

    #[inline]
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    #[inline]
    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    #[inline]
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    #[inline]
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        if fragment.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            w.write_all(fragment.as_bytes())
        } else {
            write_ascii_escaped(w, fragment)
        }
    }

    #[inline]
    fn write_char_escape<W: ?Sized + io::Write>(&mut self, w: &mut W, escape: CharEscape) -> io::Result<()> {
        let s: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write_u16_escape(w, u16::from(byte)),
        };
        w.write_all(s)
    }

    #[inline]
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        write_py_float(w, value)
    }

    #[inline]
    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        write_py_float(w, f64::from(value))
    }
}

/// Bytes that can be copied verbatim into a Python `ensure_ascii` JSON
/// string: printable ASCII except `"` and `\`.
const fn verbatim_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b <= 0x7e {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
}
static VERBATIM: [bool; 256] = verbatim_table();

/// Whether byte `b` is copied verbatim into a Python `ensure_ascii` JSON
/// string.
#[inline]
pub(crate) fn is_verbatim(b: u8) -> bool {
    VERBATIM[b as usize]
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `v` that is zero (SWAR; a borrow may also
/// mark bytes above a zero byte, never below the lowest one).
#[inline]
fn has_zero(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Marks the bytes of the 8-byte word `w` that JSON never has verbatim in a
/// string: control characters (below 0x20), `"` and `\`. The lowest marked
/// byte is always one of them (borrows only mark bytes above a true one).
#[inline]
pub(crate) fn json_special_bytes(w: u64) -> u64 {
    (w.wrapping_sub(LO * 0x20) & !w & HI) | has_zero(w ^ (LO * u64::from(b'"'))) | has_zero(w ^ (LO * u64::from(b'\\')))
}

/// Marks the bytes of `w` that are valid in a JSON string but escaped by
/// Python's `json.dumps` with `ensure_ascii`: DEL and everything outside
/// ASCII. A byte above a marked one may be marked without being either.
#[inline]
pub(crate) fn non_ascii_or_del_bytes(w: u64) -> u64 {
    (w & HI) | has_zero(w ^ (LO * 0x7f))
}

/// Whether any byte of `w` is not verbatim (below 0x20, 0x7f or above, `"`
/// or `\`).
#[inline]
fn needs_escape(w: u64) -> bool {
    json_special_bytes(w) | non_ascii_or_del_bytes(w) != 0
}

/// Appends `s` as a Python-style JSON string literal (with quotes) to `out`.
/// Same output as serializing the string through [`PyFormatter`], but faster.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip 8 verbatim bytes at a time.
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !needs_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if is_verbatim(b) {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        if !esc.is_empty() {
            out.extend_from_slice(esc);
            i += 1;
        } else {
            // Control character, DEL or the start of a multi-byte character.
            let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                // Writing into a Vec cannot fail.
                let _ = write_u16_escape(out, *unit);
            }
            i += ch.len_utf8();
        }
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a `serde_json::Value` in Python `json.dumps` style (object keys
/// in the map's order, i.e. sorted). Same output as [`write_to`], faster.
pub fn write_value(out: &mut Vec<u8>, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            // Writing into a Vec cannot fail.
            let _ = write_number_text(out, n.as_str());
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_str(out, k);
                out.extend_from_slice(b": ");
                write_value(out, v);
            }
            out.push(b'}');
        }
    }
}

/// Serializes `value` into `out` in Python `json.dumps` style.
///
/// # Panics
/// Panics if `value`'s `Serialize` implementation fails, which cannot happen
/// for `serde_json::Value` and plain data types (maps must have string keys).
pub fn write_to<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(out, PyFormatter);
    value.serialize(&mut ser).expect("serializing JSON data into memory cannot fail");
}

/// Serializes `value` to a `String` in Python `json.dumps` style: `", "` and
/// `": "` separators, non-ASCII escaped as `\uXXXX`.
///
/// ```
/// use threatbus_stix::pyjson;
/// let v = serde_json::json!({"b": [1, 2.0], "a": "é😀"});
/// assert_eq!(pyjson::to_string(&v), r#"{"a": "\u00e9\ud83d\ude00", "b": [1, 2.0]}"#);
/// ```
///
/// # Panics
/// Panics if `value`'s `Serialize` implementation fails (see [`write_to`]).
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(128);
    write_to(&mut out, value);
    into_string(out)
}

/// Converts bytes produced by this module's writers into a `String`.
///
/// The output is always ASCII, so this never fails.
pub(crate) fn into_string(out: Vec<u8>) -> String {
    match String::from_utf8(out) {
        Ok(s) => s,
        // Unreachable: PyFormatter escapes everything outside ASCII.
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Python truthiness of a JSON value (`bool(x)` of the decoded value):
/// `null`, `false`, `0`, `""`, `[]` and `{}` are false, all else true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn separators() {
        let v = json!({"a": [1, 2, {"c": null, "b": true}], "d": {}});
        assert_eq!(to_string(&v), r#"{"a": [1, 2, {"b": true, "c": null}], "d": {}}"#);
        assert_eq!(to_string(&json!([])), "[]");
    }

    #[test]
    fn non_ascii_is_escaped() {
        assert_eq!(to_string("é"), r#""\u00e9""#);
        assert_eq!(to_string("😀"), r#""\ud83d\ude00""#);
        assert_eq!(to_string("a€b"), r#""a\u20acb""#);
        assert_eq!(to_string("\u{7f}\u{1f}\u{0}"), r#""\u007f\u001f\u0000""#);
        assert_eq!(to_string("\u{ffff}\u{10000}"), r#""\uffff\ud800\udc00""#);
    }

    #[test]
    fn control_chars_like_python() {
        assert_eq!(to_string("q\"b\\s/\u{8}\u{c}\n\r\t"), r#""q\"b\\s/\b\f\n\r\t""#);
    }

    #[test]
    fn keys_are_escaped_too() {
        assert_eq!(to_string(&json!({"é": 1})), r#"{"\u00e9": 1}"#);
    }

    #[test]
    fn floats_like_python_repr() {
        let cases: &[(f64, &str)] = &[
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.1, "0.1"),
            (1.0, "1.0"),
            (123456789.125, "123456789.125"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e22, "1e+22"),
            (5e-324, "5e-324"),
            (0.025249, "0.025249"),
            (-1.5e300, "-1.5e+300"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (12345.678, "12345.678"),
            (100.0, "100.0"),
        ];
        for (v, want) in cases {
            assert_eq!(to_string(v), *want, "{v:e}");
        }
    }

    #[test]
    fn fast_writers_match_formatter() {
        let v = json!({
            "a": ["é😀\u{7f}\u{1f}\u{0}q\"b\\s/\u{8}\u{c}\n\r\t", 1, -2, 0.5, 1e16, null, true, false, [], {}],
            "\u{e9}k": {"z": u64::MAX, "y": i64::MIN, "x": "plain"},
            "": ""
        });
        let mut fast = Vec::new();
        write_value(&mut fast, &v);
        assert_eq!(into_string(fast), to_string(&v));
        for s in [
            "",
            "plain",
            "\"",
            "\\",
            "é",
            "a😀b",
            "\u{7f}",
            "\u{ffff}",
            "0123456789abcdef\"0123456789abcdef",
            "0123456789abcdef\\0123456789abcdef",
            "0123456789abcdef\u{1f}01234567\u{7f}89abcdef",
            "0123456789abcdefé0123456789abcdef ~~~~~~~~ !!!!!!!!",
        ] {
            let mut fast = Vec::new();
            write_str(&mut fast, s);
            assert_eq!(into_string(fast), to_string(s), "{s:?}");
        }
    }

    #[test]
    fn integers_unchanged() {
        assert_eq!(to_string(&json!([0, -1, u64::MAX, i64::MIN])), format!("[0, -1, {}, {}]", u64::MAX, i64::MIN));
    }

    #[test]
    fn truthiness_is_pythons() {
        use serde_json::json;
        for v in [json!(null), json!(false), json!(0), json!(0.0), json!(""), json!([]), json!({})] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [json!(true), json!(1), json!(-0.5), json!("x"), json!([0]), json!({"a": null})] {
            assert!(truthy(&v), "{v}");
        }
    }
}
