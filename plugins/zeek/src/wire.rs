//! Broker's native wire format (protocol version 1, Broker 2.3+ / Zeek 5+):
//! the handshake messages and the envelopes of a peering, each framed by
//! its caller as a big-endian u32 length and the payload.

use crate::value::{put_bytes, put_varbyte, DecodeError, Reader};

/// Magic number of every handshake message: "ZEEK".
pub const MAGIC: u32 = 0x5A45_454B;
/// The protocol version spoken here.
pub const PROTOCOL_VERSION: u8 = 1;
/// Topic of routing updates, pings and pongs.
pub const RESERVED_TOPIC: &str = "<$>";
/// Default time-to-live of a message.
pub const DEFAULT_TTL: u16 = 16;

/// A Broker endpoint id (a UUID's 16 bytes).
pub type EndpointId = [u8; 16];
/// The "nil" endpoint: route by subscription.
pub const NIL: EndpointId = [0; 16];

/// `drop_conn` error codes.
pub mod ec {
    /// The peer speaks no version we do.
    pub const PEER_INCOMPATIBLE: u8 = 2;
    /// The endpoint shuts down.
    pub const SHUTTING_DOWN: u8 = 28;
    /// Not a Broker peer.
    pub const WRONG_MAGIC_NUMBER: u8 = 38;
    /// A second connection to the same peer.
    pub const REDUNDANT_CONNECTION: u8 = 39;
    /// An unexpected message.
    pub const LOGIC_ERROR: u8 = 40;
}

/// A message of the handshake phases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Tag 6: id and the version range offered.
    Hello { id: EndpointId, min_version: u8, max_version: u8 },
    /// Tag 7: sent by the acceptor right away; ignored by the receiver.
    Probe,
    /// Tag 8: the originator's id and chosen version.
    VersionSelect { id: EndpointId, version: u8 },
    /// Tag 9: abort with an error code and a description.
    DropConn { id: EndpointId, code: u8, description: String },
    /// Tag 10: the originator's subscription filter.
    OriginatorSyn { filter: Vec<String> },
    /// Tag 11: the responder's subscription filter.
    ResponderSynAck { filter: Vec<String> },
    /// Tag 12.
    OriginatorAck,
}

/// Why a frame is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not a handshake message tag.
    UnknownTag(u8),
    /// The magic number is not "ZEEK".
    WrongMagic(u32),
    /// An unknown envelope type.
    UnknownType(u8),
    /// A value, string or length did not decode.
    Decode(DecodeError),
    /// A topic or filter entry is not UTF-8.
    NotUtf8,
}

impl From<DecodeError> for WireError {
    fn from(e: DecodeError) -> Self {
        WireError::Decode(e)
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::UnknownTag(t) => write!(f, "unknown handshake message tag {t}"),
            WireError::WrongMagic(m) => write!(f, "wrong magic number {m:#010x} (not a Broker peer)"),
            WireError::UnknownType(t) => write!(f, "unknown message type {t}"),
            WireError::Decode(e) => write!(f, "{e}"),
            WireError::NotUtf8 => f.write_str("a topic is not UTF-8"),
        }
    }
}

impl std::error::Error for WireError {}

fn id(r: &mut Reader<'_>) -> Result<EndpointId, WireError> {
    Ok(r.take(16)?.try_into().expect("16 bytes"))
}

fn magic(r: &mut Reader<'_>) -> Result<(), WireError> {
    match r.u32()? {
        MAGIC => Ok(()),
        m => Err(WireError::WrongMagic(m)),
    }
}

fn utf8(b: &[u8]) -> Result<String, WireError> {
    String::from_utf8(b.to_vec()).map_err(|_| WireError::NotUtf8)
}

/// Reads a filter: a varbyte count of varbyte-prefixed topics.
pub fn read_filter(r: &mut Reader<'_>) -> Result<Vec<String>, WireError> {
    let n = r.varbyte()?;
    let mut topics = Vec::new();
    for _ in 0..n {
        topics.push(utf8(r.bytes()?)?);
    }
    Ok(topics)
}

/// Appends a filter.
pub fn put_filter(out: &mut Vec<u8>, filter: &[String]) {
    put_varbyte(out, filter.len() as u32);
    for t in filter {
        put_bytes(out, t.as_bytes());
    }
}

impl Handshake {
    /// Decodes one handshake frame's payload.
    pub fn decode(payload: &[u8]) -> Result<Handshake, WireError> {
        let mut r = Reader::new(payload);
        let msg = match r.u8()? {
            6 => {
                magic(&mut r)?;
                Handshake::Hello { id: id(&mut r)?, min_version: r.u8()?, max_version: r.u8()? }
            }
            7 => {
                magic(&mut r)?;
                Handshake::Probe
            }
            8 => {
                magic(&mut r)?;
                Handshake::VersionSelect { id: id(&mut r)?, version: r.u8()? }
            }
            9 => {
                magic(&mut r)?;
                let id = id(&mut r)?;
                let code = r.u8()?;
                Handshake::DropConn { id, code, description: String::from_utf8_lossy(r.bytes()?).into_owned() }
            }
            10 => Handshake::OriginatorSyn { filter: read_filter(&mut r)? },
            11 => Handshake::ResponderSynAck { filter: read_filter(&mut r)? },
            12 => Handshake::OriginatorAck,
            t => return Err(WireError::UnknownTag(t)),
        };
        match r.remaining() {
            0 => Ok(msg),
            n => Err(WireError::Decode(DecodeError::TrailingBytes(n))),
        }
    }

    /// The payload of this message (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self {
            Handshake::Hello { id, min_version, max_version } => {
                out.push(6);
                out.extend_from_slice(&MAGIC.to_be_bytes());
                out.extend_from_slice(id);
                out.extend_from_slice(&[*min_version, *max_version]);
            }
            Handshake::Probe => {
                out.push(7);
                out.extend_from_slice(&MAGIC.to_be_bytes());
            }
            Handshake::VersionSelect { id, version } => {
                out.push(8);
                out.extend_from_slice(&MAGIC.to_be_bytes());
                out.extend_from_slice(id);
                out.push(*version);
            }
            Handshake::DropConn { id, code, description } => {
                out.push(9);
                out.extend_from_slice(&MAGIC.to_be_bytes());
                out.extend_from_slice(id);
                out.push(*code);
                put_bytes(&mut out, description.as_bytes());
            }
            Handshake::OriginatorSyn { filter } => {
                out.push(10);
                put_filter(&mut out, filter);
            }
            Handshake::ResponderSynAck { filter } => {
                out.push(11);
                put_filter(&mut out, filter);
            }
            Handshake::OriginatorAck => out.push(12),
        }
        out
    }
}

/// The kind of a phase-3 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeType {
    /// Published data (a Broker value).
    Data = 1,
    /// A data-store command.
    Command = 2,
    /// The sender's new subscription filter.
    RoutingUpdate = 3,
    /// A ping; answer with a pong echoing the payload.
    Ping = 4,
    /// The answer to a ping.
    Pong = 5,
}

/// One phase-3 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The last hop's id.
    pub sender: EndpointId,
    /// The addressee, or [`NIL`] to route by subscription.
    pub receiver: EndpointId,
    /// What the payload is.
    pub kind: EnvelopeType,
    /// Time to live (hops).
    pub ttl: u16,
    /// The topic.
    pub topic: String,
    /// The type-specific payload.
    pub payload: Vec<u8>,
}

impl Envelope {
    /// Decodes one envelope frame's payload.
    pub fn decode(frame: &[u8]) -> Result<Envelope, WireError> {
        let mut r = Reader::new(frame);
        let sender = id(&mut r)?;
        let receiver = id(&mut r)?;
        let kind = match r.u8()? {
            1 => EnvelopeType::Data,
            2 => EnvelopeType::Command,
            3 => EnvelopeType::RoutingUpdate,
            4 => EnvelopeType::Ping,
            5 => EnvelopeType::Pong,
            t => return Err(WireError::UnknownType(t)),
        };
        let ttl = r.u16()?;
        let len = r.u16()? as usize;
        let topic = utf8(r.take(len)?)?;
        Ok(Envelope { sender, receiver, kind, ttl, topic, payload: r.rest().to_vec() })
    }

    /// The payload of this envelope's frame (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(37 + self.topic.len() + self.payload.len());
        out.extend_from_slice(&self.sender);
        out.extend_from_slice(&self.receiver);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.ttl.to_be_bytes());
        out.extend_from_slice(&(self.topic.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(&self.topic.as_bytes()[..self.topic.len().min(u16::MAX as usize)]);
        out.extend_from_slice(&self.payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testutil::hex;

    const ZEEK: &str = "5746d8ee36445bd29f54d5a44c26c2a1";
    const TB: &str = "c0551e8d392b509ba47bae46f75befac";

    fn ep(h: &str) -> EndpointId {
        hex(h).try_into().unwrap()
    }

    /// The handshake transcript of a Zeek (smaller id) peering with the bus:
    /// every frame as bytes, both ways (lengths are checked by the framing).
    #[test]
    fn handshake_vectors() {
        let filter = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            ("07 5a45454b", Handshake::Probe),
            (
                &format!("06 5a45454b {ZEEK} 01 01") as &str,
                Handshake::Hello { id: ep(ZEEK), min_version: 1, max_version: 1 },
            ),
            (&format!("06 5a45454b {TB} 01 01"), Handshake::Hello { id: ep(TB), min_version: 1, max_version: 1 }),
            (&format!("08 5a45454b {ZEEK} 01"), Handshake::VersionSelect { id: ep(ZEEK), version: 1 }),
            (
                "0a 01 10 7468726561746275732f6d616e616765",
                Handshake::OriginatorSyn { filter: filter(&["threatbus/manage"]) },
            ),
            (
                "0b 02 0e 73746978322f7369676874696e67 10 7468726561746275732f6d616e616765",
                Handshake::ResponderSynAck { filter: filter(&["stix2/sighting", "threatbus/manage"]) },
            ),
            ("0c", Handshake::OriginatorAck),
        ];
        let lengths = [5, 0x17, 0x17, 0x16, 0x13, 0x22, 1];
        for ((bytes, msg), len) in cases.iter().zip(lengths) {
            let b = hex(bytes);
            assert_eq!(b.len(), len, "{bytes}");
            assert_eq!(&Handshake::decode(&b).unwrap(), msg);
            assert_eq!(msg.encode(), b);
        }
        let drop = Handshake::DropConn { id: ep(TB), code: 2, description: "unsupported versions offered".into() };
        assert_eq!(drop.encode().len(), 0x33);
        assert_eq!(Handshake::decode(&drop.encode()).unwrap(), drop);
    }

    #[test]
    fn bad_handshake_frames() {
        assert_eq!(Handshake::decode(&hex("07 5a45454c")), Err(WireError::WrongMagic(0x5a45454c)));
        assert_eq!(Handshake::decode(&hex("05")), Err(WireError::UnknownTag(5)));
        assert_eq!(Handshake::decode(&hex("06 5a45454b 00")), Err(WireError::Decode(DecodeError::Truncated)));
        assert_eq!(Handshake::decode(&hex("0c 00")), Err(WireError::Decode(DecodeError::TrailingBytes(1))));
        assert!(Handshake::decode(&hex("0a ffffffff0f 01")).is_err());
    }

    /// Random bytes never panic the decoders (a small fuzz run in every
    /// test run; the inputs are deterministic).
    #[test]
    fn random_bytes_are_errors_not_panics() {
        let mut next = crate::testutil::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let len = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias towards valid tags and magic so that decoding gets deep.
            if let Some(b) = bytes.first_mut() {
                *b = 6 + *b % 8;
            }
            let _ = Handshake::decode(&bytes);
            let _ = Envelope::decode(&bytes);
            if let Some(b) = bytes.first_mut() {
                *b %= 16;
            }
            let _ = crate::value::decode(&bytes);
        }
    }

    /// Broker's own envelope vector, and the routing update of a Zeek.
    #[test]
    fn envelope_vectors() {
        let bytes = hex(&format!("{ZEEK} {TB} 01 0010 0006 666f6f626172 050b68656c6c6f20776f726c64"));
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!((env.sender, env.receiver, env.kind, env.ttl), (ep(ZEEK), ep(TB), EnvelopeType::Data, 16));
        assert_eq!(env.topic, "foobar");
        assert_eq!(crate::value::decode(&env.payload).unwrap(), crate::value::Value::string("hello world"));
        assert_eq!(env.encode(), bytes);

        let update = hex(&format!(
            "{ZEEK} {TB} 03 0010 0003 3c243e 02 10 7468726561746275732f6d616e616765 19 73746978322f696e64696361746f7271776572747a75696f70"
        ));
        assert_eq!(update.len(), 0x54);
        let env = Envelope::decode(&update).unwrap();
        assert_eq!((env.kind, env.topic.as_str()), (EnvelopeType::RoutingUpdate, RESERVED_TOPIC));
        let filter = read_filter(&mut Reader::new(&env.payload)).unwrap();
        assert_eq!(filter, ["threatbus/manage", "stix2/indicatorqwertzuiop"]);
        assert!(Envelope::decode(&hex(&format!("{ZEEK} {TB} 07 0010 0000"))).is_err());
        assert!(Envelope::decode(&hex(&format!("{ZEEK} {TB} 01 0010 ffff 61"))).is_err());
    }
}
