//! The Threat Bus data model and wire formats (Python `threatbus/data.py`).
//!
//! Threat Bus transports STIX 2.1 [`Indicator`]s and [`Sighting`]s plus two
//! Threat Bus types, [`SnapshotRequest`] and [`SnapshotEnvelope`].
//!
//! What the output is compatible with: STIX objects are validated like
//! python `stix2` 3.0 (`stix2.parse(json, allow_custom=True)`, patterns by
//! `stix2-patterns` 1.3.0) and written byte for byte as `stix2`'s
//! `serialize()` writes the object it parsed: property order, defaults,
//! timestamp precision, the separators and escaping of Python's `json.dumps`
//! ([`pyjson`]), and numbers as Python reads and writes them. The snapshot
//! types are written as the Python bus's encoders write them.
//!
//! ```
//! use threatbus_stix::{parse_stix2, MessageType};
//! let json = r#"{"type": "indicator", "spec_version": "2.1", "id": "indicator--42d31a5b-2da0-4bdd-9823-1723a98fc2fb", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[domain-name:value = 'example.com']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}"#;
//! let obj = parse_stix2(json).unwrap();
//! assert_eq!(obj.message_type(), MessageType::Indicator);
//! assert_eq!(obj.to_json(), json);
//! ```
//!
//! Where we differ from `stix2` (deliberately stricter or bounded):
//! * `id`, `created`, `modified` (and an indicator's `valid_from`) are
//!   required on input; `stix2` would silently invent them.
//! * A missing `spec_version` means 2.1 (`stix2` would treat the object as
//!   STIX 2.0).
//! * Scalar properties must have the JSON type of the spec (`stix2` coerces,
//!   e.g. `"name": 5` to `"5"`, and so does it for `source_name`, `url`, …
//!   of external references).
//! * Ids must use the canonical hyphenated UUID layout.
//! * Timestamps may carry more than six fractional digits; they are
//!   truncated to microseconds.
//! * Keys of nested JSON objects (custom properties, the hashes of an
//!   external reference) are emitted sorted, because `serde_json` is used
//!   without `preserve_order`; `stix2` keeps their input order.
//! * Limits: JSON nests at most 128 levels (`serde_json`'s limit), a STIX
//!   pattern at most [`pattern::MAX_NESTING`] levels, integers have at most
//!   [`pyjson::MAX_INTEGER_DIGITS`] digits and floats must be finite
//!   doubles; `stix2` fails on such input with a recursion error, an
//!   `Infinity` that is not JSON, or a conversion error.
//!
//! Where the Python bus itself differs from `stix2`, we follow `stix2`:
//! * it forwards `created`/`modified` with less than millisecond precision
//!   (its queues lose `stix2`'s precision setting); we write milliseconds at
//!   least, as `stix2` does;
//! * its backbone thread dies on NaN or Infinity in a custom property and
//!   the bus stops forwarding; we reject such a message and go on;
//! * it rejects timestamps with more than six fractional digits; we accept
//!   and truncate them;
//! * it accepts non-canonical UUIDs; we reject them.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

pub mod ioc;
pub mod pattern;
pub mod pyjson;
mod stix;
mod timestamp;

pub use stix::{canonicalize_stix2, parse_stix2, Indicator, Sighting, Stix2Object};

/// Topic of STIX-2 indicators.
pub const TOPIC_INDICATOR: &str = "stix2/indicator";
/// Topic of STIX-2 sightings.
pub const TOPIC_SIGHTING: &str = "stix2/sighting";
/// Topic of [`SnapshotRequest`]s.
pub const TOPIC_SNAPSHOT_REQUEST: &str = "threatbus/snapshotrequest";
/// Topic of [`SnapshotEnvelope`]s.
pub const TOPIC_SNAPSHOT_ENVELOPE: &str = "threatbus/snapshotenvelope";

/// Sighting property: the full sighted indicator (a STIX indicator object).
pub const X_THREATBUS_INDICATOR: &str = "x_threatbus_indicator";
/// Sighting property: only the IoC value of the sighted indicator.
pub const X_THREATBUS_INDICATOR_VALUE: &str = "x_threatbus_indicator_value";
/// Sighting property: [`MatchType`] (`"LIVE"` or `"RETRO"`).
pub const X_THREATBUS_MATCH_TYPE: &str = "x_threatbus_match_type";
/// Sighting property: name of the source, e.g. `"VAST"`.
pub const X_THREATBUS_SOURCE: &str = "x_threatbus_source";
/// Sighting property: arbitrary JSON context of the sighting.
pub const X_THREATBUS_SIGHTING_CONTEXT: &str = "x_threatbus_sighting_context";
/// Indicator property: [`Operation`] (`"EDIT"` or `"REMOVE"`); absent means
/// a new indicator.
pub const X_THREATBUS_UPDATE: &str = "x_threatbus_update";

// ---------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------

/// The kind of STIX object a snapshot is about. Serialized as the integer
/// `1` (indicator) or `2` (sighting), as Python's `MessageType` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// STIX indicators (`1`).
    Indicator = 1,
    /// STIX sightings (`2`).
    Sighting = 2,
}

impl MessageType {
    /// The topic of this type's objects (`stix2/indicator`, `stix2/sighting`).
    pub fn topic(self) -> &'static str {
        match self {
            MessageType::Indicator => TOPIC_INDICATOR,
            MessageType::Sighting => TOPIC_SIGHTING,
        }
    }

    /// The STIX type name: `"indicator"` or `"sighting"`.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Indicator => "indicator",
            MessageType::Sighting => "sighting",
        }
    }

    /// The wire value (`1` or `2`).
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Converts a wire value (`1` or `2`).
    pub fn from_u64(v: u64) -> Option<Self> {
        match v {
            1 => Some(MessageType::Indicator),
            2 => Some(MessageType::Sighting),
            _ => None,
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for MessageType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for MessageType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        MessageType::from_u64(v)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid message type {v}: expected 1 or 2")))
    }
}

/// The update operation of an indicator (`x_threatbus_update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// `"EDIT"`: the indicator was updated.
    Edit,
    /// `"REMOVE"`: the indicator was withdrawn.
    Remove,
}

impl Operation {
    /// The wire value (`"EDIT"` or `"REMOVE"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Edit => "EDIT",
            Operation::Remove => "REMOVE",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a sighting was found (`x_threatbus_match_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MatchType {
    /// `"LIVE"`: matched on live data.
    Live,
    /// `"RETRO"`: matched retrospectively on historic data.
    Retro,
}

impl MatchType {
    /// The wire value (`"LIVE"` or `"RETRO"`).
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Live => "LIVE",
            MatchType::Retro => "RETRO",
        }
    }
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The category of a [`DataError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataErrorKind {
    /// The input is not valid JSON.
    InvalidJson,
    /// The `type` is missing, wrong or not supported.
    UnsupportedType,
    /// A required property is missing.
    MissingProperty,
    /// A property has an invalid value.
    InvalidProperty,
    /// A `stix` pattern failed validation.
    InvalidPattern,
    /// Anything else.
    Other,
}

/// A data model error: invalid JSON, or an object that fails validation.
/// The message says what is wrong, e.g.
/// `indicator: missing required property 'pattern'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    kind: DataErrorKind,
    message: String,
    pattern: Option<pattern::PatternError>,
}

impl DataError {
    /// Creates an error of kind [`DataErrorKind::Other`].
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_kind(DataErrorKind::Other, message)
    }

    /// Creates an error of the given kind.
    pub fn with_kind(kind: DataErrorKind, message: impl Into<String>) -> Self {
        DataError { kind, message: message.into(), pattern: None }
    }

    /// The error category.
    pub fn kind(&self) -> DataErrorKind {
        self.kind
    }

    /// The message (same as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The pattern error, for [`DataErrorKind::InvalidPattern`].
    pub fn pattern_error(&self) -> Option<&pattern::PatternError> {
        self.pattern.as_ref()
    }

    pub(crate) fn json(e: serde_json::Error) -> Self {
        Self::with_kind(DataErrorKind::InvalidJson, format!("invalid JSON: {e}"))
    }

    pub(crate) fn missing_property(message: String) -> Self {
        Self::with_kind(DataErrorKind::MissingProperty, message)
    }

    pub(crate) fn invalid_property(message: String) -> Self {
        Self::with_kind(DataErrorKind::InvalidProperty, message)
    }

    pub(crate) fn unsupported_type(message: String) -> Self {
        Self::with_kind(DataErrorKind::UnsupportedType, message)
    }

    pub(crate) fn invalid_pattern(e: pattern::PatternError) -> Self {
        DataError {
            kind: DataErrorKind::InvalidPattern,
            message: format!("indicator: invalid STIX pattern {e}"),
            pattern: Some(e),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.pattern.as_ref().map(|e| e as _)
    }
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

fn parse_json_object(json: &str) -> Result<Map<String, Value>, DataError> {
    match serde_json::from_str::<Value>(json).map_err(DataError::json)? {
        Value::Object(map) => Ok(map),
        _ => Err(DataError::with_kind(DataErrorKind::InvalidProperty, "expected a JSON object")),
    }
}

fn check_type(map: &Map<String, Value>, want: &str) -> Result<(), DataError> {
    match map.get("type") {
        Some(Value::String(t)) if t == want => Ok(()),
        Some(other) => Err(DataError::with_kind(
            DataErrorKind::UnsupportedType,
            format!("{want}: expected 'type' \"{want}\", found {other}"),
        )),
        None => Err(DataError::missing_property(format!("{want}: missing required property 'type'"))),
    }
}

fn take_field(map: &mut Map<String, Value>, ty: &str, field: &str) -> Result<Value, DataError> {
    map.remove(field).ok_or_else(|| DataError::missing_property(format!("{ty}: missing required property '{field}'")))
}

fn snapshot_type_field(map: &mut Map<String, Value>, ty: &str) -> Result<MessageType, DataError> {
    let v = take_field(map, ty, "snapshot_type")?;
    v.as_u64().and_then(MessageType::from_u64).ok_or_else(|| {
        DataError::invalid_property(format!(
            "{ty}: invalid value for 'snapshot_type': expected 1 (indicator) or 2 (sighting), found {v}"
        ))
    })
}

fn snapshot_id_field(map: &mut Map<String, Value>, ty: &str) -> Result<String, DataError> {
    match take_field(map, ty, "snapshot_id")? {
        Value::String(s) => Ok(s),
        other => Err(DataError::invalid_property(format!(
            "{ty}: invalid value for 'snapshot_id': expected a string, found {other}"
        ))),
    }
}

/// A request to apps to replay historic data of one type: "send me all
/// sightings of the last 42 days". Topic [`TOPIC_SNAPSHOT_REQUEST`].
///
/// JSON (Python `SnapshotRequestEncoder`):
/// `{"type": "snapshotrequest", "snapshot_type": 2, "snapshot_id": "...", "snapshot": 3712417}`
/// where `snapshot` is the time span in whole seconds (truncated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// Which objects are requested.
    pub snapshot_type: MessageType,
    /// Correlates the request with its [`SnapshotEnvelope`]s (a UUID in
    /// practice).
    pub snapshot_id: String,
    /// How far back to look.
    pub snapshot: Duration,
}

impl SnapshotRequest {
    /// The wire JSON.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(96 + self.snapshot_id.len());
        out.extend_from_slice(b"{\"type\": \"snapshotrequest\", \"snapshot_type\": ");
        out.push(b'0' + self.snapshot_type.as_u8());
        out.extend_from_slice(b", \"snapshot_id\": ");
        pyjson::write_str(&mut out, &self.snapshot_id);
        out.extend_from_slice(b", \"snapshot\": ");
        out.extend_from_slice(self.snapshot.as_secs().to_string().as_bytes());
        out.push(b'}');
        pyjson::into_string(out)
    }

    /// Parses the wire JSON. `type` must be `"snapshotrequest"`; all fields
    /// are required (the Python decoder returned `None` instead); `snapshot`
    /// may be an integer or a float number of seconds (rounded to
    /// microseconds) and must not be negative.
    pub fn from_json(json: &str) -> Result<Self, DataError> {
        const TY: &str = "snapshotrequest";
        let mut map = parse_json_object(json)?;
        check_type(&map, TY)?;
        let snapshot_type = snapshot_type_field(&mut map, TY)?;
        let snapshot_id = snapshot_id_field(&mut map, TY)?;
        let v = take_field(&mut map, TY, "snapshot")?;
        let snapshot = if let Some(secs) = v.as_u64() {
            Some(Duration::from_secs(secs))
        } else {
            v.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| (f * 1e6).round())
                .filter(|micros| *micros < u64::MAX as f64)
                .map(|micros| Duration::from_micros(micros as u64))
        };
        let snapshot = snapshot.ok_or_else(|| {
            DataError::invalid_property(format!(
                "{TY}: invalid value for 'snapshot': expected a non-negative number of seconds, found {v}"
            ))
        })?;
        Ok(SnapshotRequest { snapshot_type, snapshot_id, snapshot })
    }
}

/// One object of a snapshot, answering a [`SnapshotRequest`]. Topic
/// [`TOPIC_SNAPSHOT_ENVELOPE`].
///
/// JSON (Python `SnapshotEnvelopeEncoder`):
/// `{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "...", "body": {...}}`
/// where `body` is the canonical STIX object as a nested JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotEnvelope {
    /// The type of the requested objects.
    pub snapshot_type: MessageType,
    /// The id of the [`SnapshotRequest`] this answers.
    pub snapshot_id: String,
    /// The STIX object.
    pub body: Stix2Object,
}

impl SnapshotEnvelope {
    /// The wire JSON.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(512 + self.snapshot_id.len());
        out.extend_from_slice(b"{\"type\": \"snapshotenvelope\", \"snapshot_type\": ");
        out.push(b'0' + self.snapshot_type.as_u8());
        out.extend_from_slice(b", \"snapshot_id\": ");
        pyjson::write_str(&mut out, &self.snapshot_id);
        out.extend_from_slice(b", \"body\": ");
        self.body.canonical().write(&mut out);
        out.push(b'}');
        pyjson::into_string(out)
    }

    /// Parses the wire JSON: `type` must be `"snapshotenvelope"`, all fields
    /// are required, and `body` must be a JSON object that validates as a
    /// STIX indicator or sighting (like [`parse_stix2`]). Whether the body
    /// matches `snapshot_type` is not checked (neither does Python).
    pub fn from_json(json: &str) -> Result<Self, DataError> {
        const TY: &str = "snapshotenvelope";
        let mut map = parse_json_object(json)?;
        check_type(&map, TY)?;
        let snapshot_type = snapshot_type_field(&mut map, TY)?;
        let snapshot_id = snapshot_id_field(&mut map, TY)?;
        let body = take_field(&mut map, TY, "body")?;
        if !body.is_object() {
            return Err(DataError::invalid_property(format!(
                "{TY}: invalid value for 'body': expected a STIX object, found {body}"
            )));
        }
        let body = Stix2Object::from_value(body)?;
        Ok(SnapshotEnvelope { snapshot_type, snapshot_id, body })
    }
}

#[cfg(test)]
mod tests;
