//! STIX 2.1 timestamps: strict parsing and the python `stix2` output format.
//!
//! Accepted input: `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (RFC 3339, UTC only;
//! `T` and `Z` may be lowercase as Python's `strptime` matches them
//! case-insensitively). The fraction may have any number of digits; it is
//! kept with microsecond precision (further digits are truncated), the
//! precision of a Python `datetime`.
//!
//! Output follows `stix2.utils.format_datetime`:
//! * [`Precision::MillisecondMin`] (`created`, `modified`): at least three
//!   fractional digits, trailing zeros beyond the third stripped
//!   (`.530`, `.000`, `.5301`);
//! * [`Precision::Any`] (every other timestamp): the fraction only if it is
//!   non-zero, trailing zeros stripped (`.53`, none for whole seconds).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

/// Output precision of a STIX timestamp property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precision {
    /// `created` / `modified`: millisecond precision or better.
    MillisecondMin,
    /// Any other timestamp property.
    Any,
}

/// A UTC instant with microsecond precision, kept as validated civil
/// fields; the derived ordering (field by field) is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// Microseconds within the second.
    micros: u32,
}

/// Fixed-size buffer holding a formatted timestamp (at most 27 bytes).
pub(crate) struct TimestampBuf {
    buf: [u8; 32],
    len: usize,
}

impl TimestampBuf {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    fn push(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn push2(&mut self, v: u32) {
        self.push(b'0' + (v / 10 % 10) as u8);
        self.push(b'0' + (v % 10) as u8);
    }

    fn push4(&mut self, v: u32) {
        self.push2(v / 100);
        self.push2(v % 100);
    }
}

impl fmt::Display for TimestampBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

impl Timestamp {
    /// Parses a STIX timestamp (see the module documentation).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let year = digits(b, 0, 4)?;
        if b[4] != b'-' {
            return None;
        }
        let month = digits(b, 5, 2)?;
        if b[7] != b'-' {
            return None;
        }
        let day = digits(b, 8, 2)?;
        if !matches!(b[10], b'T' | b't') {
            return None;
        }
        let hour = digits(b, 11, 2)?;
        if b[13] != b':' {
            return None;
        }
        let minute = digits(b, 14, 2)?;
        if b[16] != b':' {
            return None;
        }
        let second = digits(b, 17, 2)?;
        let mut i = 19;
        let mut micros = 0u32;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 6 {
                    micros = micros * 10 + u32::from(b[i] - b'0');
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return None;
            }
            for _ in n..6 {
                micros *= 10;
            }
        }
        if i + 1 != b.len() || !matches!(b[i], b'Z' | b'z') {
            return None;
        }
        if year == 0 || hour > 23 || minute > 59 || second > 59 {
            // Python's datetime starts at year 1 and has no leap seconds.
            return None;
        }
        NaiveDate::from_ymd_opt(year as i32, month, day)?;
        Some(Timestamp { year, month, day, hour, minute, second, micros })
    }

    /// The current time, truncated to microseconds like Python's
    /// `datetime.now()`.
    pub(crate) fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// Converts a chrono instant (truncating to microseconds).
    pub(crate) fn from_datetime(dt: DateTime<Utc>) -> Self {
        Timestamp {
            year: dt.year().clamp(1, 9999) as u32,
            month: dt.month(),
            day: dt.day(),
            hour: dt.hour(),
            minute: dt.minute(),
            second: dt.second().min(59),
            micros: (dt.timestamp_subsec_nanos() / 1000).min(999_999),
        }
    }

    /// Whether `s`, which [`parse`](Self::parse) accepted, is already what
    /// [`format`](Self::format) makes of it: upper-case `T` and `Z`, and a
    /// fraction of the digits `precision` keeps (none or 1 to 6 digits
    /// without a trailing zero; for `MillisecondMin` 3 digits, or 4 to 6
    /// without a trailing zero).
    pub(crate) fn is_formatted(s: &str, precision: Precision) -> bool {
        let b = s.as_bytes();
        if b.get(10) != Some(&b'T') || b.last() != Some(&b'Z') {
            return false;
        }
        match b.len() {
            20 => precision == Precision::Any,
            // "YYYY-MM-DDTHH:MM:SS." + 1 to 6 digits + "Z"
            len @ 22..=27 => {
                let digits = len - 21;
                let last_is_zero = b[len - 2] == b'0';
                match precision {
                    Precision::MillisecondMin => digits == 3 || (digits > 3 && !last_is_zero),
                    Precision::Any => !last_is_zero,
                }
            }
            _ => false,
        }
    }

    /// Formats the timestamp as `stix2` would print it.
    pub(crate) fn format(&self, precision: Precision) -> TimestampBuf {
        let mut out = TimestampBuf { buf: [0; 32], len: 0 };
        out.push4(self.year);
        out.push(b'-');
        out.push2(self.month);
        out.push(b'-');
        out.push2(self.day);
        out.push(b'T');
        out.push2(self.hour);
        out.push(b':');
        out.push2(self.minute);
        out.push(b':');
        out.push2(self.second);
        let mut frac = [b'0'; 6];
        let mut m = self.micros;
        for slot in frac.iter_mut().rev() {
            *slot = b'0' + (m % 10) as u8;
            m /= 10;
        }
        let mut len = 6;
        while len > 0 && frac[len - 1] == b'0' {
            len -= 1;
        }
        if precision == Precision::MillisecondMin {
            len = len.max(3);
        }
        if len > 0 {
            out.push(b'.');
            for &d in &frac[..len] {
                out.push(d);
            }
        }
        out.push(b'Z');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(s: &str, p: Precision) -> String {
        Timestamp::parse(s).unwrap().format(p).to_string()
    }

    #[test]
    fn formats_like_stix2() {
        use Precision::*;
        assert_eq!(fmt("2021-04-20T07:38:22.530Z", MillisecondMin), "2021-04-20T07:38:22.530Z");
        assert_eq!(fmt("2021-04-20T07:38:22.53Z", MillisecondMin), "2021-04-20T07:38:22.530Z");
        assert_eq!(fmt("2021-04-20T07:38:22Z", MillisecondMin), "2021-04-20T07:38:22.000Z");
        assert_eq!(fmt("2021-04-20T07:38:22.123456Z", MillisecondMin), "2021-04-20T07:38:22.123456Z");
        assert_eq!(fmt("2021-04-20T07:38:22.123400Z", MillisecondMin), "2021-04-20T07:38:22.1234Z");
        assert_eq!(fmt("2021-04-20T07:38:22.530Z", Any), "2021-04-20T07:38:22.53Z");
        assert_eq!(fmt("2021-04-20T07:38:22.000Z", Any), "2021-04-20T07:38:22Z");
        assert_eq!(fmt("2021-04-20T07:38:22Z", Any), "2021-04-20T07:38:22Z");
        assert_eq!(fmt("2017-03-03T23:56:09.652643840Z", Any), "2017-03-03T23:56:09.652643Z");
        assert_eq!(fmt("0001-01-01t00:00:00z", Any), "0001-01-01T00:00:00Z");
        assert_eq!(fmt("9999-12-31T23:59:59.999999Z", Any), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn is_formatted_means_format_changes_nothing() {
        let mut inputs = vec![
            "0001-01-01t00:00:00z".to_string(),
            "2021-04-20T07:38:22z".to_string(),
            "2021-04-20t07:38:22.5Z".to_string(),
            "2017-03-03T23:56:09.652643840Z".to_string(),
        ];
        for fraction in ["", ".0", ".5", ".50", ".05", ".000", ".530", ".531", ".5300", ".5301", ".123456", ".123450"] {
            inputs.push(format!("2021-04-20T07:38:22{fraction}Z"));
        }
        for s in &inputs {
            let ts = Timestamp::parse(s).unwrap();
            for p in [Precision::MillisecondMin, Precision::Any] {
                let unchanged = ts.format(p).as_str() == s;
                assert_eq!(Timestamp::is_formatted(s, p), unchanged, "{s} {p:?}");
            }
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2021-04-20",
            "2021-04-20T07:38:22",
            "2021-04-20T07:38:22+00:00",
            "2021-04-20T07:38:22.Z",
            "2021-4-20T07:38:22Z",
            "2021-02-30T07:38:22Z",
            "2021-04-20T24:00:00Z",
            "2021-04-20T23:60:00Z",
            "2021-04-20T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "2021-04-20 07:38:22Z",
            "2021-04-20T07:38:22ZZ",
            " 2021-04-20T07:38:22Z",
        ] {
            assert!(Timestamp::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn ordering() {
        let a = Timestamp::parse("2021-04-20T07:38:22.5Z").unwrap();
        let b = Timestamp::parse("2021-04-20T07:38:22.500001Z").unwrap();
        let c = Timestamp::parse("2021-04-20T07:38:23Z").unwrap();
        assert!(a < b && b < c);
        assert_eq!(a, Timestamp::parse("2021-04-20T07:38:22.500Z").unwrap());
    }
}
