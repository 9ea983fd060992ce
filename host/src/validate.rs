//! The one validator of the process: every message a plugin puts on the
//! bus was made here, from the host's copy of the data model
//! (`threatbus-stix`), through the `parse` host service.

use threatbus_plugin_api::{Message, MessageKind};
use threatbus_stix::{parse_stix2, MessageType, SnapshotEnvelope, SnapshotRequest, Stix2Object};

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

/// Validates `json` as a message of `kind` ([`MessageKind::ANY`]: of the
/// kind its `type` field names) and returns it in canonical form.
pub fn parse(kind: MessageKind, json: &str) -> Result<Message, String> {
    match kind {
        MessageKind::INDICATOR | MessageKind::SIGHTING => {
            let obj = parse_stix2(json).map_err(|e| e.to_string())?;
            if kind_of(obj.message_type()) != kind {
                return Err(format!("expected a STIX {}, got a {}", kind.type_name(), obj.message_type().name()));
            }
            Ok(from_stix2(&obj))
        }
        MessageKind::SNAPSHOT_REQUEST => {
            Ok(from_snapshot_request(&SnapshotRequest::from_json(json).map_err(|e| e.to_string())?))
        }
        MessageKind::SNAPSHOT_ENVELOPE => {
            let env = SnapshotEnvelope::from_json(json).map_err(|e| e.to_string())?;
            Ok(Message::from_validated_json(MessageKind::SNAPSHOT_ENVELOPE, env.to_json()))
        }
        MessageKind::ANY => {
            #[derive(serde::Deserialize)]
            struct TypeOnly<'a> {
                #[serde(borrow, rename = "type")]
                kind: Option<std::borrow::Cow<'a, str>>,
            }
            let probe: TypeOnly<'_> = serde_json::from_str(json).map_err(|e| format!("invalid JSON: {e}"))?;
            let name = probe.kind.ok_or("message has no 'type' field")?;
            let kind = MessageKind::from_type_name(&name).ok_or_else(|| format!("unknown message type '{name}'"))?;
            parse(kind, json)
        }
        other => Err(format!("unknown message kind {}", other.0)),
    }
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
        assert_eq!(parse(MessageKind::SIGHTING, INDICATOR).unwrap_err(), "expected a STIX sighting, got a indicator");
        assert!(parse(MessageKind::ANY, r#"{"type": "malware"}"#).unwrap_err().contains("unknown message type"));
        assert!(parse(MessageKind::ANY, "not json").unwrap_err().contains("invalid JSON"));
        assert!(parse(MessageKind(99), INDICATOR).unwrap_err().contains("unknown message kind"));
    }
}
