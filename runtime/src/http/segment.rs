//! The Segment HTTP Tracking API mapped onto CloudEvents, so existing analytics clients work
//! unchanged: `track` "Order Completed" becomes type `order.completed`, `identify` becomes
//! `profile.identified`, `page`/`screen` become `page.viewed`/`screen.viewed`; `userId` (else
//! `anonymousId`) becomes the subject and `messageId` the id.

use nudge_rules::{CloudEvent, EventError};
use serde_json::{Map, Value, json};

pub const SOURCE: &str = "segment";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Track,
    Identify,
    Page,
    Screen,
}

impl Call {
    /// The Segment call name, as in `/v1/<name>` and a batch item's `type`.
    pub fn name(self) -> &'static str {
        match self {
            Call::Track => "track",
            Call::Identify => "identify",
            Call::Page => "page",
            Call::Screen => "screen",
        }
    }

    /// Where the call carries what becomes the CloudEvent's `data`.
    fn data_field(self) -> &'static str {
        match self {
            Call::Identify => "traits",
            Call::Track | Call::Page | Call::Screen => "properties",
        }
    }

    pub fn from_batch_type(kind: &str) -> Option<Call> {
        [Call::Track, Call::Identify, Call::Page, Call::Screen]
            .into_iter()
            .find(|call| call.name() == kind)
    }
}

/// A field of the CloudEvent a call became (`data.total`, `type`) as the call names it
/// (`properties.total`, `event`), for errors that name the field at fault.
pub fn field_of(call: Call, field: &str) -> String {
    if let Some(rest) = field.strip_prefix("data") {
        return format!("{}{rest}", call.data_field());
    }
    match (call, field) {
        (Call::Track, "type") => "event".into(),
        _ => field.into(),
    }
}

/// `"Order Completed"` → `order.completed`; `"Product Added to Wishlist"` →
/// `product.added_to_wishlist`; a name that already has dots is kept, lower-cased.
pub fn event_type_for(name: &str) -> String {
    let words: Vec<String> = name
        .split(|c: char| !(c.is_alphanumeric() || c == '.'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    match words.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        _ if name.contains('.') => words.join("_"),
        [object, action @ ..] => format!("{object}.{}", action.join("_")),
    }
}

fn string_field(body: &Map<String, Value>, name: &str) -> Option<String> {
    match body.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn object_field(body: &Map<String, Value>, name: &str) -> Result<Value, EventError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(json!({})),
        Some(value @ Value::Object(_)) => Ok(value.clone()),
        Some(_) => Err(EventError::new(name, "must be an object")),
    }
}

/// Maps one Segment call body to a CloudEvent. `received_at` stands in for a missing
/// `timestamp`; `fresh_id` for a missing `messageId`.
pub fn to_cloudevent(
    call: Call,
    body: &Value,
    received_at: &str,
    fresh_id: impl FnOnce() -> String,
) -> Result<CloudEvent, EventError> {
    let Value::Object(body) = body else {
        return Err(EventError::new("body", "must be a JSON object"));
    };
    let subject = string_field(body, "userId")
        .or_else(|| string_field(body, "anonymousId"))
        .ok_or_else(|| EventError::new("userId", "userId or anonymousId is required"))?;
    let (event_type, data) = match call {
        Call::Track => {
            let name = match body.get("event") {
                Some(Value::String(name)) if !name.trim().is_empty() => name,
                Some(_) => return Err(EventError::new("event", "must be a non-empty string")),
                None => return Err(EventError::new("event", "is required for track")),
            };
            (event_type_for(name), object_field(body, "properties")?)
        }
        Call::Identify => {
            let mut traits = object_field(body, "traits")?;
            // Segment's libraries send the device's zone in `context.timezone`.
            if let (Some(zone), Value::Object(fields)) = (
                body.get("context").and_then(|c| c.get("timezone")).cloned(),
                &mut traits,
            ) {
                fields.entry("timezone").or_insert(zone);
            }
            ("profile.identified".to_owned(), traits)
        }
        Call::Page | Call::Screen => {
            let mut properties = object_field(body, "properties")?;
            if let Some(name) = string_field(body, "name") {
                properties["name"] = Value::String(name);
            }
            let kind = if call == Call::Page {
                "page.viewed"
            } else {
                "screen.viewed"
            };
            (kind.to_owned(), properties)
        }
    };
    let id = string_field(body, "messageId").unwrap_or_else(fresh_id);
    let time = string_field(body, "timestamp").unwrap_or_else(|| received_at.to_owned());
    CloudEvent::from_value(json!({
        "specversion": "1.0",
        "id": id,
        "source": SOURCE,
        "type": event_type,
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    }))
    .map_err(|e| match e.field.as_str() {
        "type" => EventError::new("event", e.message),
        "id" => EventError::new("messageId", e.message),
        "time" => EventError::new("timestamp", e.message),
        "subject" => EventError::new("userId", e.message),
        _ => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(call: Call, body: Value) -> Result<CloudEvent, EventError> {
        to_cloudevent(call, &body, "2026-11-27T10:00:00Z", || "generated".into())
    }

    #[test]
    fn segment_event_names_become_dotted_types() {
        assert_eq!(event_type_for("Order Completed"), "order.completed");
        assert_eq!(
            event_type_for("Product Added to Wishlist"),
            "product.added_to_wishlist"
        );
        assert_eq!(event_type_for("signup"), "signup");
        assert_eq!(event_type_for("cart.updated"), "cart.updated");
        assert_eq!(event_type_for("  Checkout   Started "), "checkout.started");
    }

    #[test]
    fn track_maps_every_field() {
        let event = map(
            Call::Track,
            json!({"userId":"u1","anonymousId":"a1","event":"Order Completed",
            "properties":{"total":30},"messageId":"m1","timestamp":"2026-11-27T09:00:00Z"}),
        )
        .unwrap();
        assert_eq!(event.event_type, "order.completed");
        assert_eq!(event.subject, "u1");
        assert_eq!(event.id, "m1");
        assert_eq!(event.source, "segment");
        assert_eq!(event.time.as_deref(), Some("2026-11-27T09:00:00Z"));
        assert_eq!(event.data, json!({"total":30}));
    }

    #[test]
    fn identify_page_and_fallbacks() {
        let identify = map(
            Call::Identify,
            json!({"anonymousId":"a1","traits":{"email":"x@y"}}),
        )
        .unwrap();
        assert_eq!(
            (identify.event_type.as_str(), identify.subject.as_str()),
            ("profile.identified", "a1")
        );
        assert_eq!(identify.id, "generated");
        let zoned = map(
            Call::Identify,
            json!({"userId":"u","traits":{"plan":"pro"},"context":{"timezone":"Europe/Berlin"}}),
        )
        .unwrap();
        assert_eq!(zoned.data, json!({"plan":"pro","timezone":"Europe/Berlin"}));
        let page = map(Call::Page, json!({"userId":"u","name":"Home"})).unwrap();
        assert_eq!(page.event_type, "page.viewed");
        assert_eq!(page.data, json!({"name":"Home"}));
    }

    #[test]
    fn errors_name_the_segment_field() {
        let field = |call, body| map(call, body).unwrap_err().field;
        assert_eq!(field(Call::Track, json!({"event":"X"})), "userId");
        assert_eq!(field(Call::Track, json!({"userId":"u"})), "event");
        assert_eq!(
            field(
                Call::Track,
                json!({"userId":"u","event":"X","properties":[1]})
            ),
            "properties"
        );
        assert_eq!(
            field(
                Call::Track,
                json!({"userId":"u","event":"X","timestamp":"soon"})
            ),
            "timestamp"
        );
    }
}
