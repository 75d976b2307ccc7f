//! Actions a plugin decides: the same channels and payload shapes as the rule language.

use serde_json::{Map, Value};

/// Where an action goes; nudge publishes it on `actions.<channel>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Push,
    Personalize,
    Price,
    Webhook,
}

/// One action. Build it with [`Action::push`], [`Action::personalize`], [`Action::price`] or
/// [`Action::webhook`]; `payload` must be a JSON object (anything else is wrapped as `value`).
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub channel: Channel,
    /// The slot, product id or webhook name; none for push.
    pub target: Option<String>,
    pub payload: Map<String, Value>,
}

fn object(payload: Value) -> Map<String, Value> {
    match payload {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => Map::from_iter([("value".to_owned(), other)]),
    }
}

impl Action {
    /// A push notification: `push(#{ title, body, … })` in a rule.
    pub fn push(payload: Value) -> Action {
        Action {
            channel: Channel::Push,
            target: None,
            payload: object(payload),
        }
    }

    /// Content for a slot: `personalize(slot, #{ … })`.
    pub fn personalize(slot: &str, payload: Value) -> Action {
        Action {
            channel: Channel::Personalize,
            target: Some(slot.to_owned()),
            payload: object(payload),
        }
    }

    /// A price for a product: `price(product_id, #{ discount_pct | price, … })`.
    pub fn price(product_id: &str, payload: Value) -> Action {
        Action {
            channel: Channel::Price,
            target: Some(product_id.to_owned()),
            payload: object(payload),
        }
    }

    /// A webhook call: `webhook(name, #{ … })`.
    pub fn webhook(name: &str, payload: Value) -> Action {
        Action {
            channel: Channel::Webhook,
            target: Some(name.to_owned()),
            payload: object(payload),
        }
    }

    /// Adds a field to the payload (for example `transactional: true`).
    pub fn with(mut self, field: &str, value: Value) -> Action {
        self.payload.insert(field.to_owned(), value);
        self
    }
}
