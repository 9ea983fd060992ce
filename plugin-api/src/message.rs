//! [`Message`]: one Threat Bus message as it travels through queues.
//!
//! A message is a reference-counted, immutable pair of a [`MessageKind`] and
//! the canonical JSON of its body. Cloning it (e.g. on fan-out to many
//! subscribers) shares the body; nothing is copied.
//!
//! Only the host makes messages: a plugin turns bytes into a message with
//! [`Host::parse`](crate::Host::parse) (or [`Host::parse_any`](crate::Host::parse_any)),
//! which validates and canonicalizes them once, in the host's copy of the
//! data model. A well-behaved plugin therefore cannot put unvalidated data
//! on the bus. (Plugins run in the host's process with its privileges; this
//! is a guard against mistakes, not a security boundary.)

use abi_stable::{
    std_types::{RArc, RString},
    StableAbi,
};

/// The type of a [`Message`]; decides its topic.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct MessageKind(pub u32);

impl MessageKind {
    /// A STIX-2.1 Indicator, topic `stix2/indicator`.
    pub const INDICATOR: MessageKind = MessageKind(1);
    /// A STIX-2.1 Sighting, topic `stix2/sighting`.
    pub const SIGHTING: MessageKind = MessageKind(2);
    /// A snapshot request, topic `threatbus/snapshotrequest`.
    pub const SNAPSHOT_REQUEST: MessageKind = MessageKind(3);
    /// A snapshot envelope, topic `threatbus/snapshotenvelope`.
    pub const SNAPSHOT_ENVELOPE: MessageKind = MessageKind(4);

    /// The internal topic of this kind (e.g. `stix2/indicator`).
    pub fn topic(self) -> &'static str {
        match self {
            Self::INDICATOR => "stix2/indicator",
            Self::SIGHTING => "stix2/sighting",
            Self::SNAPSHOT_REQUEST => "threatbus/snapshotrequest",
            Self::SNAPSHOT_ENVELOPE => "threatbus/snapshotenvelope",
            _ => "unknown",
        }
    }

    /// The lower-case type name (`indicator`, `sighting`,
    /// `snapshotrequest`, `snapshotenvelope`), as used in zmq frames.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::INDICATOR => "indicator",
            Self::SIGHTING => "sighting",
            Self::SNAPSHOT_REQUEST => "snapshotrequest",
            Self::SNAPSHOT_ENVELOPE => "snapshotenvelope",
            _ => "unknown",
        }
    }

    /// "Any kind": [`Host::parse`](crate::Host::parse) then takes the kind
    /// from the message's `type` field.
    pub const ANY: MessageKind = MessageKind(0);

    /// The kind whose internal topic is exactly `topic` (e.g. `stix2/indicator`).
    pub fn from_topic(topic: &str) -> Option<Self> {
        [Self::INDICATOR, Self::SIGHTING, Self::SNAPSHOT_REQUEST, Self::SNAPSHOT_ENVELOPE]
            .into_iter()
            .find(|k| k.topic() == topic)
    }

    /// The kind whose `type` field or type name is `name`.
    pub fn from_type_name(name: &str) -> Option<Self> {
        match name {
            "indicator" => Some(Self::INDICATOR),
            "sighting" => Some(Self::SIGHTING),
            "snapshotrequest" => Some(Self::SNAPSHOT_REQUEST),
            "snapshotenvelope" => Some(Self::SNAPSHOT_ENVELOPE),
            _ => None,
        }
    }
}

#[repr(C)]
#[derive(StableAbi)]
struct MessageBody {
    kind: MessageKind,
    json: RString,
}

/// One Threat Bus message: kind plus canonical JSON, shared on clone.
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct Message {
    body: RArc<MessageBody>,
}

impl Message {
    /// Wraps JSON that the host's data model has validated and
    /// canonicalized. For the host only (feature `host`); plugins get
    /// messages from [`Host::parse`](crate::Host::parse).
    #[cfg(any(test, feature = "host"))]
    pub fn from_validated_json(kind: MessageKind, json: String) -> Self {
        Self { body: RArc::new(MessageBody { kind, json: RString::from(json) }) }
    }

    /// The message kind.
    pub fn kind(&self) -> MessageKind {
        self.body.kind
    }

    /// The internal topic, e.g. `stix2/indicator`.
    pub fn topic(&self) -> &'static str {
        self.body.kind.topic()
    }

    /// The canonical JSON of the body.
    pub fn json(&self) -> &str {
        self.body.json.as_str()
    }

    /// Whether two handles share the same body (no copy was made).
    pub fn shares_body_with(&self, other: &Message) -> bool {
        std::ptr::eq(&*self.body, &*other.body)
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.topic(), self.json())
    }
}
