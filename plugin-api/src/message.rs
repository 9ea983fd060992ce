//! [`Message`]: one Threat Bus message as it travels through queues.
//!
//! A message is a reference-counted, immutable pair of a [`MessageKind`] and
//! the canonical JSON of its body. Cloning it (e.g. on fan-out to many
//! subscribers) shares the body; nothing is copied.

use abi_stable::{
    std_types::{RArc, RString},
    StableAbi,
};

use crate::data::{self, DataError, MessageType, SnapshotEnvelope, SnapshotRequest, Stix2Object};

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
            Self::INDICATOR => data::TOPIC_INDICATOR,
            Self::SIGHTING => data::TOPIC_SIGHTING,
            Self::SNAPSHOT_REQUEST => data::TOPIC_SNAPSHOT_REQUEST,
            Self::SNAPSHOT_ENVELOPE => data::TOPIC_SNAPSHOT_ENVELOPE,
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

    /// The kind for a STIX object type.
    pub fn from_message_type(t: MessageType) -> Self {
        match t {
            MessageType::Indicator => Self::INDICATOR,
            MessageType::Sighting => Self::SIGHTING,
        }
    }

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
    /// Wraps already-validated canonical JSON. Prefer the typed
    /// constructors or [`Message::parse`], which validate.
    pub fn from_canonical_json(kind: MessageKind, json: String) -> Self {
        Self { body: RArc::new(MessageBody { kind, json: RString::from(json) }) }
    }

    /// Validates `json` as a message of `kind` and stores its canonical form.
    pub fn parse(kind: MessageKind, json: &str) -> Result<Self, DataError> {
        match kind {
            MessageKind::INDICATOR | MessageKind::SIGHTING => {
                let obj = data::parse_stix2(json)?;
                if MessageKind::from_message_type(obj.message_type()) != kind {
                    return Err(DataError::new(format!(
                        "expected a STIX {}, got a {}",
                        kind.type_name(),
                        obj.message_type().name()
                    )));
                }
                Ok(Self::from_stix2(&obj))
            }
            MessageKind::SNAPSHOT_REQUEST => Ok(Self::from_snapshot_request(&SnapshotRequest::from_json(json)?)),
            MessageKind::SNAPSHOT_ENVELOPE => Ok(Self::from_snapshot_envelope(&SnapshotEnvelope::from_json(json)?)),
            other => Err(DataError::new(format!("unknown message kind {}", other.0))),
        }
    }

    /// Parses any message by its JSON `type` field (`indicator`, `sighting`,
    /// `snapshotrequest`, `snapshotenvelope`).
    pub fn parse_any(json: &str) -> Result<Self, DataError> {
        #[derive(serde::Deserialize)]
        struct TypeOnly<'a> {
            #[serde(borrow, rename = "type")]
            kind: Option<std::borrow::Cow<'a, str>>,
        }
        let probe: TypeOnly<'_> =
            serde_json::from_str(json).map_err(|e| DataError::new(format!("invalid JSON: {e}")))?;
        let name = probe.kind.ok_or_else(|| DataError::new("message has no 'type' field"))?;
        let kind = MessageKind::from_type_name(&name)
            .ok_or_else(|| DataError::new(format!("unknown message type '{name}'")))?;
        Self::parse(kind, json)
    }

    /// A message carrying a STIX Indicator or Sighting.
    pub fn from_stix2(obj: &Stix2Object) -> Self {
        Self::from_canonical_json(MessageKind::from_message_type(obj.message_type()), obj.to_json())
    }

    /// A message carrying a snapshot request.
    pub fn from_snapshot_request(req: &SnapshotRequest) -> Self {
        Self::from_canonical_json(MessageKind::SNAPSHOT_REQUEST, req.to_json())
    }

    /// A message carrying a snapshot envelope.
    pub fn from_snapshot_envelope(env: &SnapshotEnvelope) -> Self {
        Self::from_canonical_json(MessageKind::SNAPSHOT_ENVELOPE, env.to_json())
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

    /// Decodes a STIX Indicator or Sighting.
    pub fn to_stix2(&self) -> Result<Stix2Object, DataError> {
        data::parse_stix2(self.json())
    }

    /// Decodes a snapshot request.
    pub fn to_snapshot_request(&self) -> Result<SnapshotRequest, DataError> {
        SnapshotRequest::from_json(self.json())
    }

    /// Decodes a snapshot envelope.
    pub fn to_snapshot_envelope(&self) -> Result<SnapshotEnvelope, DataError> {
        SnapshotEnvelope::from_json(self.json())
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
