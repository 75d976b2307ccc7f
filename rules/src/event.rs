//! CloudEvents 1.0 in JSON structured mode: parsing with errors that name the bad field.

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Upper bounds on the attributes of an event; anything longer is rejected, not truncated.
pub const MAX_ID_BYTES: usize = 256;
pub const MAX_SOURCE_BYTES: usize = 1_024;
pub const MAX_TYPE_BYTES: usize = 200;
pub const MAX_SUBJECT_BYTES: usize = 256;

/// A validated CloudEvent. `subject` is the profile key and therefore required by nudge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// Extension attributes, kept as they came.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

/// Why an event was refused, naming the attribute (`field`) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EventError {
    pub field: String,
    pub message: String,
}

impl EventError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        EventError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl CloudEvent {
    /// Parses one JSON-encoded CloudEvent.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, EventError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| EventError::new("body", format!("not valid JSON: {e}")))?;
        Self::from_value(value)
    }

    /// Validates a decoded JSON value as a CloudEvent.
    pub fn from_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(mut fields) = value else {
            return Err(EventError::new(
                "body",
                "a CloudEvent must be a JSON object",
            ));
        };
        let specversion = take_string(&mut fields, "specversion", 8)?;
        if specversion != "1.0" {
            return Err(EventError::new(
                "specversion",
                format!("must be \"1.0\", got \"{specversion}\""),
            ));
        }
        let id = take_string(&mut fields, "id", MAX_ID_BYTES)?;
        let source = take_string(&mut fields, "source", MAX_SOURCE_BYTES)?;
        let event_type = take_string(&mut fields, "type", MAX_TYPE_BYTES)?;
        validate_event_type(&event_type).map_err(|m| EventError::new("type", m))?;
        let subject = take_string(&mut fields, "subject", MAX_SUBJECT_BYTES)?;
        let time = take_optional_string(&mut fields, "time")?;
        if let Some(time) = &time {
            OffsetDateTime::parse(time, &Rfc3339).map_err(|_| {
                EventError::new("time", format!("\"{time}\" is not an RFC 3339 timestamp"))
            })?;
        }
        let datacontenttype = take_optional_string(&mut fields, "datacontenttype")?;
        if fields.contains_key("data_base64") {
            return Err(EventError::new(
                "data_base64",
                "binary data is not supported; send JSON in `data`",
            ));
        }
        let data = fields.remove("data").unwrap_or(Value::Null);
        Ok(CloudEvent {
            specversion,
            id,
            source,
            event_type,
            subject,
            time,
            datacontenttype,
            data,
            extensions: fields,
        })
    }

    /// The NATS subject this event is published on: `events.<type>`.
    pub fn nats_subject(&self) -> String {
        format!("events.{}", self.event_type)
    }

    /// A stable digest of `source` + `id`: the identity of an event. Used as `Nats-Msg-Id` on
    /// ingest and as the seed of every action id the event causes.
    pub fn identity_digest(&self) -> String {
        hex::encode(self.identity().0)
    }

    /// The same identity as 16 bytes, the form a profile remembers applied events in.
    pub fn identity(&self) -> EventDigest {
        EventDigest(digest_bytes(&[&self.source, &self.id]))
    }
}

/// Hex SHA-256 over NUL-separated parts, truncated to 128 bits: plenty for dedupe ids.
pub fn digest(parts: &[&str]) -> String {
    hex::encode(digest_bytes(parts))
}

fn digest_bytes(parts: &[&str]) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let mut bytes = [0; 16];
    bytes.copy_from_slice(&hasher.finalize()[..16]);
    bytes
}

/// An event's identity ([`CloudEvent::identity`]) held in 16 bytes rather than 32 hex
/// characters on the heap: every profile remembers several. Stored as raw bytes in binary
/// formats and as hex in JSON; hex read from either, as earlier versions stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventDigest(pub [u8; 16]);

impl std::fmt::Display for EventDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for EventDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for EventDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DigestVisitor)
    }
}

struct DigestVisitor;

impl serde::de::Visitor<'_> for DigestVisitor {
    type Value = EventDigest;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an event digest: 16 bytes, or 32 hex characters")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<EventDigest, E> {
        let mut bytes = [0; 16];
        hex::decode_to_slice(text, &mut bytes).map_err(E::custom)?;
        Ok(EventDigest(bytes))
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<EventDigest, E> {
        let bytes =
            <[u8; 16]>::try_from(bytes).map_err(|_| E::invalid_length(bytes.len(), &"16 bytes"))?;
        Ok(EventDigest(bytes))
    }
}

/// An event type becomes NATS subject tokens, so it must be a valid dotted subject without
/// wildcards or white space.
pub fn validate_event_type(event_type: &str) -> Result<(), String> {
    if event_type.split('.').any(str::is_empty) {
        return Err(format!(
            "\"{event_type}\" has an empty token (types look like \"cart.updated\")"
        ));
    }
    if let Some(bad) = event_type
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
    {
        return Err(format!(
            "\"{event_type}\" contains {bad:?}, which cannot appear in an event type"
        ));
    }
    Ok(())
}

fn take_string(
    fields: &mut Map<String, Value>,
    name: &str,
    max_bytes: usize,
) -> Result<String, EventError> {
    match fields.remove(name) {
        Some(Value::String(s)) if s.is_empty() => Err(EventError::new(name, "must not be empty")),
        Some(Value::String(s)) if s.len() > max_bytes => Err(EventError::new(
            name,
            format!("is {} bytes; the limit is {max_bytes}", s.len()),
        )),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(EventError::new(name, "must be a string")),
        None => Err(EventError::new(name, "is required")),
    }
}

fn take_optional_string(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<String>, EventError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EventError::new(name, "must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({"specversion":"1.0","id":"e1","source":"shop","type":"cart.updated",
               "subject":"user-42","time":"2026-11-27T10:00:00Z","data":{"total":12.5},
               "tenant":"eu"})
    }

    #[test]
    fn parses_a_structured_mode_event_and_keeps_extensions() {
        let event = CloudEvent::from_value(valid()).unwrap();
        assert_eq!(event.event_type, "cart.updated");
        assert_eq!(event.nats_subject(), "events.cart.updated");
        assert_eq!(event.extensions["tenant"], "eu");
        assert_eq!(serde_json::to_value(&event).unwrap(), valid());
    }

    #[test]
    fn each_bad_attribute_is_named() {
        let cases = [
            ("specversion", json!("0.3")),
            ("id", json!("")),
            ("source", json!(7)),
            ("type", json!("cart updated")),
            ("type", json!("cart.*")),
            ("type", json!("cart..x")),
            ("subject", Value::Null),
            ("time", json!("yesterday")),
        ];
        for (field, bad) in cases {
            let mut event = valid();
            event[field] = bad;
            let err = CloudEvent::from_value(event).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        let mut missing = valid();
        missing.as_object_mut().unwrap().remove("subject");
        assert_eq!(
            CloudEvent::from_value(missing).unwrap_err().field,
            "subject"
        );
        assert_eq!(CloudEvent::from_slice(b"{oops").unwrap_err().field, "body");
    }

    #[test]
    fn identity_depends_on_source_and_id_only() {
        let a = CloudEvent::from_value(valid()).unwrap();
        let mut b = a.clone();
        b.data = json!({"other": true});
        assert_eq!(a.identity_digest(), b.identity_digest());
        b.source = "other-shop".into();
        assert_ne!(a.identity_digest(), b.identity_digest());
    }
}
