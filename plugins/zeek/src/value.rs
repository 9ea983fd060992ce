//! Broker's value encoding (`format::bin::v1`, Broker 2.3+ / Zeek 5+): a tag
//! byte and a body; fixed-width integers big-endian, lengths as varbytes.
//!
//! Decoding never trusts a length field: containers grow only as their
//! elements actually decode, strings are taken only when their bytes are
//! there, and nesting is bounded by [`MAX_DEPTH`].

use std::net::Ipv6Addr;

/// Containers nested deeper than this are refused (Zeek's events nest 4).
pub const MAX_DEPTH: usize = 64;

/// A Broker value (the subset of types Broker defines; all of them).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `none` (tag 0).
    None,
    /// `boolean` (tag 1).
    Bool(bool),
    /// `count` (tag 2): u64.
    Count(u64),
    /// `integer` (tag 3): i64.
    Integer(i64),
    /// `real` (tag 4): f64.
    Real(f64),
    /// `string` (tag 5): raw bytes (Zeek strings need not be UTF-8).
    String(Vec<u8>),
    /// `address` (tag 6): IPv4 as `::ffff:a.b.c.d`.
    Address(Ipv6Addr),
    /// `subnet` (tag 7): address and raw prefix length (IPv4: + 96).
    Subnet(Ipv6Addr, u8),
    /// `port` (tag 8): number and protocol (0 unknown, 1 tcp, 2 udp, 3 icmp).
    Port(u16, u8),
    /// `timestamp` (tag 9): nanoseconds since the Unix epoch.
    Timestamp(i64),
    /// `timespan` (tag 10): nanoseconds.
    Timespan(i64),
    /// `enum_value` (tag 11).
    Enum(Vec<u8>),
    /// `set` (tag 12).
    Set(Vec<Value>),
    /// `table` (tag 13).
    Table(Vec<(Value, Value)>),
    /// `vector` (tag 14).
    Vector(Vec<Value>),
}

impl Value {
    /// A string value.
    pub fn string(s: &str) -> Value {
        Value::String(s.as_bytes().to_vec())
    }

    /// The string, if this is a UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The elements, if this is a vector.
    pub fn as_vector(&self) -> Option<&[Value]> {
        match self {
            Value::Vector(v) => Some(v),
            _ => None,
        }
    }

    /// The u64, if this is a count.
    pub fn as_count(&self) -> Option<u64> {
        match self {
            Value::Count(c) => Some(*c),
            _ => None,
        }
    }
}

/// Why bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a value.
    Truncated,
    /// An unknown type tag.
    UnknownTag(u8),
    /// Containers nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A varbyte longer than 5 bytes or beyond 32 bits.
    BadVarbyte,
    /// Bytes were left after the value.
    TrailingBytes(usize),
    /// A boolean other than 0 or 1.
    BadBool(u8),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("truncated value"),
            DecodeError::UnknownTag(t) => write!(f, "unknown value tag {t}"),
            DecodeError::TooDeep => write!(f, "values nest deeper than {MAX_DEPTH} levels"),
            DecodeError::BadVarbyte => f.write_str("invalid length (varbyte)"),
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after the value"),
            DecodeError::BadBool(b) => write!(f, "invalid boolean {b}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Appends a varbyte (LEB128, at most 32 bits).
pub fn put_varbyte(out: &mut Vec<u8>, mut n: u32) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A cursor over bytes being decoded.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        s
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A varbyte length.
    pub fn varbyte(&mut self) -> Result<u32, DecodeError> {
        let mut n: u64 = 0;
        for i in 0..5 {
            let b = self.u8()?;
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(n).map_err(|_| DecodeError::BadVarbyte);
            }
        }
        Err(DecodeError::BadVarbyte)
    }

    /// Varbyte-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varbyte()? as usize;
        self.take(n)
    }

    /// One value.
    pub fn value(&mut self) -> Result<Value, DecodeError> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let tag = self.u8()?;
        Ok(match tag {
            0 => Value::None,
            1 => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(DecodeError::BadBool(b)),
            },
            2 => Value::Count(self.u64()?),
            3 => Value::Integer(self.u64()? as i64),
            4 => Value::Real(f64::from_bits(self.u64()?)),
            5 => Value::String(self.bytes()?.to_vec()),
            6 => Value::Address(self.address()?),
            7 => {
                let a = self.address()?;
                Value::Subnet(a, self.u8()?)
            }
            8 => {
                let n = self.u16()?;
                Value::Port(n, self.u8()?)
            }
            9 => Value::Timestamp(self.u64()? as i64),
            10 => Value::Timespan(self.u64()? as i64),
            11 => Value::Enum(self.bytes()?.to_vec()),
            12 | 14 => {
                let items = self.sequence(depth)?;
                if tag == 12 {
                    Value::Set(items)
                } else {
                    Value::Vector(items)
                }
            }
            13 => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                let n = self.varbyte()?;
                let mut entries = Vec::new();
                for _ in 0..n {
                    let k = self.value_at(depth + 1)?;
                    let v = self.value_at(depth + 1)?;
                    entries.push((k, v));
                }
                Value::Table(entries)
            }
            t => return Err(DecodeError::UnknownTag(t)),
        })
    }

    fn sequence(&mut self, depth: usize) -> Result<Vec<Value>, DecodeError> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let n = self.varbyte()?;
        // Grows as elements decode: a huge count with few bytes fails on
        // the first missing element, having allocated nothing big.
        let mut items = Vec::new();
        for _ in 0..n {
            items.push(self.value_at(depth + 1)?);
        }
        Ok(items)
    }

    fn address(&mut self) -> Result<Ipv6Addr, DecodeError> {
        let b: [u8; 16] = self.take(16)?.try_into().expect("16 bytes");
        Ok(Ipv6Addr::from(b))
    }
}

/// Decodes exactly one value from `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(bytes);
    let v = r.value()?;
    match r.remaining() {
        0 => Ok(v),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

/// Appends the encoding of `v`.
pub fn encode_into(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::None => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::Count(c) => {
            out.push(2);
            out.extend_from_slice(&c.to_be_bytes());
        }
        Value::Integer(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Real(f) => {
            out.push(4);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::String(s) => {
            out.push(5);
            put_bytes(out, s);
        }
        Value::Address(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
        Value::Subnet(a, len) => {
            out.push(7);
            out.extend_from_slice(&a.octets());
            out.push(*len);
        }
        Value::Port(n, proto) => {
            out.push(8);
            out.extend_from_slice(&n.to_be_bytes());
            out.push(*proto);
        }
        Value::Timestamp(t) => {
            out.push(9);
            out.extend_from_slice(&t.to_be_bytes());
        }
        Value::Timespan(t) => {
            out.push(10);
            out.extend_from_slice(&t.to_be_bytes());
        }
        Value::Enum(s) => {
            out.push(11);
            put_bytes(out, s);
        }
        Value::Set(items) | Value::Vector(items) => {
            out.push(if matches!(v, Value::Set(_)) { 12 } else { 14 });
            put_varbyte(out, items.len() as u32);
            for item in items {
                encode_into(out, item);
            }
        }
        Value::Table(entries) => {
            out.push(13);
            put_varbyte(out, entries.len() as u32);
            for (k, v) in entries {
                encode_into(out, k);
                encode_into(out, v);
            }
        }
    }
}

/// Appends varbyte-prefixed bytes.
pub fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_varbyte(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// The encoding of `v`.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testutil::hex;

    /// The byte vectors of Broker's value format, both ways.
    #[test]
    fn byte_vectors() {
        let v4 = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_ipv6_mapped();
        let cases = [
            ("00", Value::None),
            ("01 01", Value::Bool(true)),
            ("02 000000000000002a", Value::Count(42)),
            ("03 ffffffffffffffff", Value::Integer(-1)),
            ("04 3ff8000000000000", Value::Real(1.5)),
            ("05 02 6869", Value::string("hi")),
            ("06 00000000000000000000ffff0a000001", Value::Address(v4([10, 0, 0, 1]))),
            ("07 00000000000000000000ffff0a000000 68", Value::Subnet(v4([10, 0, 0, 0]), 104)),
            ("08 0035 02", Value::Port(53, 2)),
            ("0a 000000012a05f200", Value::Timespan(5_000_000_000)),
            ("0b 0d 496e74656c3a3a444f4d41494e", Value::Enum(b"Intel::DOMAIN".to_vec())),
            ("0a fff6ca96f8be0000", Value::Timespan(-2_592_000_000_000_000)),
            ("09 17a668b7375cff15", Value::Timestamp(1_704_164_645_123_456_789)),
            ("0d 01 05 05 6e6f697379 01 00", Value::Table(vec![(Value::string("noisy"), Value::Bool(false))])),
        ];
        for (bytes, value) in cases {
            assert_eq!(decode(&hex(bytes)).unwrap(), value, "{bytes}");
            assert_eq!(encode(&value), hex(bytes), "{value:?}");
        }
        let mut out = Vec::new();
        put_varbyte(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }

    #[test]
    fn hostile_bytes_are_errors_without_big_allocations() {
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x0f]), Err(DecodeError::UnknownTag(15)));
        assert_eq!(decode(&[0x01, 0x02]), Err(DecodeError::BadBool(2)));
        // A string claiming 4 GiB, a vector claiming 2^32-1 elements.
        assert_eq!(decode(&[0x05, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a']), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x0e, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x05, 0xff, 0xff, 0xff, 0xff, 0xff]), Err(DecodeError::BadVarbyte));
        assert_eq!(decode(&[0x00, 0x00]), Err(DecodeError::TrailingBytes(1)));
        let deep: Vec<u8> = std::iter::repeat_n([0x0e, 0x01], 100_000).flatten().chain([0x00]).collect();
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
        let ok: Vec<u8> = std::iter::repeat_n([0x0e, 0x01], MAX_DEPTH).flatten().chain([0x00]).collect();
        assert!(decode(&ok).is_ok());
    }

    /// Round trips of generated values (a small deterministic generator).
    #[test]
    fn round_trips() {
        let mut next = crate::testutil::xorshift(0x2545_f491_4f6c_dd1d);
        fn gen(next: &mut impl FnMut() -> u64, depth: usize) -> Value {
            let pick = next() % if depth > 3 { 12 } else { 15 };
            match pick {
                0 => Value::None,
                1 => Value::Bool(next() % 2 == 0),
                2 => Value::Count(next()),
                3 => Value::Integer(next() as i64),
                4 => Value::Real(f64::from_bits(next() & 0x7fef_ffff_ffff_ffff)),
                5 => Value::String((0..next() % 300).map(|_| next() as u8).collect()),
                6 => Value::Address(Ipv6Addr::from(u128::from(next()) << 64 | u128::from(next()))),
                7 => Value::Subnet(Ipv6Addr::from(u128::from(next())), next() as u8),
                8 => Value::Port(next() as u16, (next() % 4) as u8),
                9 => Value::Timestamp(next() as i64),
                10 => Value::Timespan(next() as i64),
                11 => Value::Enum(b"Intel::ADDR".to_vec()),
                12 => Value::Set((0..next() % 4).map(|_| gen(next, depth + 1)).collect()),
                13 => Value::Table((0..next() % 4).map(|_| (gen(next, depth + 1), gen(next, depth + 1))).collect()),
                _ => Value::Vector((0..next() % 5).map(|_| gen(next, depth + 1)).collect()),
            }
        }
        for _ in 0..2_000 {
            let v = gen(&mut next, 0);
            let bytes = encode(&v);
            assert_eq!(decode(&bytes).unwrap(), v);
            // Every strict prefix is an error, never a panic.
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err());
            }
        }
    }
}
