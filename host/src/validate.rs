//! The one validator of the process: every message a plugin puts on the
//! bus was made here, from the host's copy of the data model
//! (`threatbus-stix`), through the `parse` host service.

use threatbus_plugin_api::{Message, MessageKind};
use threatbus_stix::{
    canonicalize_stix2, DataError, DataErrorKind, MessageType, SnapshotEnvelope, SnapshotRequest, Stix2Object,
};

/// The message kind of a STIX object type.
pub fn kind_of(t: MessageType) -> MessageKind {
    match t {
        MessageType::Indicator => MessageKind::INDICATOR,
        MessageType::Sighting => MessageKind::SIGHTING,
    }
}

/// A message carrying a validated STIX object.
pub fn from_stix2(obj: &Stix2Object) -> Message {
    Message::from_validated_json(kind_of(obj.message_type()), obj.to_json())
}

/// A message carrying a snapshot request.
pub fn from_snapshot_request(req: &SnapshotRequest) -> Message {
    Message::from_validated_json(MessageKind::SNAPSHOT_REQUEST, req.to_json())
}

/// Why the validator refused a message: a short, fixed reason (a metric
/// label) and the full explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Every reason a [`Rejection`] can give, for metrics.
pub const REJECTION_REASONS: [&str; 8] = [
    "invalid_json",
    "unsupported_type",
    "missing_property",
    "invalid_property",
    "invalid_pattern",
    "wrong_kind",
    "other",
    "validator_panicked",
];

/// The index of `"other"` in [`REJECTION_REASONS`].
const OTHER: usize = 6;

impl Rejection {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }

    /// The index of the reason in [`REJECTION_REASONS`].
    pub fn reason_index(&self) -> usize {
        REJECTION_REASONS.iter().position(|r| *r == self.reason).unwrap_or(OTHER)
    }
}

impl From<DataError> for Rejection {
    fn from(e: DataError) -> Self {
        let reason = match e.kind() {
            DataErrorKind::InvalidJson => "invalid_json",
            DataErrorKind::UnsupportedType => "unsupported_type",
            DataErrorKind::MissingProperty => "missing_property",
            DataErrorKind::InvalidProperty => "invalid_property",
            DataErrorKind::InvalidPattern => "invalid_pattern",
            _ => "other",
        };
        Rejection::new(reason, e.to_string())
    }
}

/// Validates `json` as a message of `kind` ([`MessageKind::ANY`]: of the
/// kind its `type` field names) and returns it in canonical form.
pub fn parse(kind: MessageKind, json: &str) -> Result<Message, Rejection> {
    match kind {
        MessageKind::INDICATOR | MessageKind::SIGHTING => {
            let (found, canonical) = canonicalize_stix2(json)?;
            if kind_of(found) != kind {
                return Err(Rejection::new(
                    "wrong_kind",
                    format!("expected a STIX {}, got a {}", kind.type_name(), found.name()),
                ));
            }
            Ok(Message::from_validated_json(kind, canonical))
        }
        MessageKind::SNAPSHOT_REQUEST => Ok(from_snapshot_request(&SnapshotRequest::from_json(json)?)),
        MessageKind::SNAPSHOT_ENVELOPE => {
            let env = SnapshotEnvelope::from_json(json)?;
            Ok(Message::from_validated_json(MessageKind::SNAPSHOT_ENVELOPE, env.to_json()))
        }
        MessageKind::ANY => parse(kind_named_in(json)?, json),
        other => Err(Rejection::new("wrong_kind", format!("unknown message kind {}", other.0))),
    }
}

/// The kind that the `type` field of `json` names.
pub fn kind_named_in(json: &str) -> Result<MessageKind, Rejection> {
    #[derive(serde::Deserialize)]
    struct TypeOnly<'a> {
        #[serde(borrow, rename = "type")]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    let probe: TypeOnly<'_> =
        serde_json::from_str(json).map_err(|e| Rejection::new("invalid_json", format!("invalid JSON: {e}")))?;
    let name = probe.kind.ok_or_else(|| Rejection::new("missing_property", "message has no 'type' field"))?;
    MessageKind::from_type_name(&name)
        .ok_or_else(|| Rejection::new("unsupported_type", format!("unknown message type '{name}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDICATOR: &str = r#"{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[domain-name:value = 'example.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}"#;

    #[test]
    fn parses_by_kind_and_by_type_field() {
        let m = parse(MessageKind::INDICATOR, INDICATOR).unwrap();
        assert_eq!((m.kind(), m.json()), (MessageKind::INDICATOR, INDICATOR));
        assert_eq!(parse(MessageKind::ANY, INDICATOR).unwrap().json(), INDICATOR);
        let e = parse(MessageKind::SIGHTING, INDICATOR).unwrap_err();
        assert_eq!((e.reason, e.message.as_str()), ("wrong_kind", "expected a STIX sighting, got a indicator"));
        let e = parse(MessageKind::ANY, r#"{"type": "malware"}"#).unwrap_err();
        assert!(e.reason == "unsupported_type" && e.message.contains("unknown message type"), "{e:?}");
        let e = parse(MessageKind::ANY, "not json").unwrap_err();
        assert!(e.reason == "invalid_json" && e.message.contains("invalid JSON"), "{e:?}");
        assert!(parse(MessageKind(99), INDICATOR).unwrap_err().message.contains("unknown message kind"));
        let bad_pattern = INDICATOR.replace("[domain-name:value = 'example.com']", "[domain-name:value = ");
        assert_eq!(parse(MessageKind::INDICATOR, &bad_pattern).unwrap_err().reason, "invalid_pattern");
        let no_id = INDICATOR.replace(r#""id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "#, "");
        assert_eq!(parse(MessageKind::INDICATOR, &no_id).unwrap_err().reason, "missing_property");
        assert_eq!(REJECTION_REASONS[OTHER], "other");
    }
}
