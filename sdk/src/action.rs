//! Actions a plugin decides: the same channels and payload shapes as the rule language.

use serde_json::{Map, Value};

/// Where an action goes; nudge publishes it on `actions.<channel>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Push,
    Personalize,
    Price,
    Webhook,
    Email,
}

/// One action. Build it with [`Action::push`], [`Action::personalize`], [`Action::price`],
/// [`Action::webhook`] or [`Action::email`]; `payload` must be a JSON object (anything else is
/// wrapped as `value`).
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub channel: Channel,
    /// The slot, product id or webhook name; none for push and email.
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

    /// An e-mail to `to` rendered from the template named `template`, whose variables are the
    /// fields of `variables`: `email(#{ to, template, … })` in a rule. New in version 0.2.0 of
    /// the contract.
    pub fn email(to: &str, template: &str, variables: Value) -> Action {
        let mut payload = object(variables);
        payload.insert("to".to_owned(), Value::String(to.to_owned()));
        payload.insert("template".to_owned(), Value::String(template.to_owned()));
        Action {
            channel: Channel::Email,
            target: None,
            payload,
        }
    }

    /// Adds a field to the payload (for example `transactional: true`).
    pub fn with(mut self, field: &str, value: Value) -> Action {
        self.payload.insert(field.to_owned(), value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_email_carries_its_address_template_and_variables() {
        let action = Action::email("ada@example.com", "cart", json!({"total": 120}));
        assert_eq!(action.channel, Channel::Email);
        assert_eq!(action.target, None);
        assert_eq!(
            Value::Object(action.payload),
            json!({"to": "ada@example.com", "template": "cart", "total": 120})
        );
    }
}
