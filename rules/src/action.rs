//! Actions: what rules decide, and their CloudEvent form on `actions.<channel>`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::event::{CloudEvent, digest};

/// Where an action goes. Each channel is a NATS subject `actions.<channel>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Push,
    Personalize,
    Price,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Push,
        Channel::Personalize,
        Channel::Price,
        Channel::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Personalize => "personalize",
            Channel::Price => "price",
            Channel::Webhook => "webhook",
        }
    }
}

/// What produced an action: a rule version (plugins join later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub id: String,
    pub version: u64,
}

impl Origin {
    /// The CloudEvent `rule` extension: `<rule id>@v<version>`.
    pub fn label(&self) -> String {
        format!("{}@v{}", self.id, self.version)
    }
}

/// One action decided for one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub channel: Channel,
    pub data: Value,
    pub origin: Origin,
    /// Index among the actions the same rule produced for the same event.
    pub position: u32,
}

impl Action {
    /// Deterministic id: the triggering event's identity, the rule id and the position. The rule
    /// *version* is left out on purpose, so an event redelivered after a rule edit still
    /// dedupes against the action its first delivery published.
    pub fn id(&self, cause: &CloudEvent) -> String {
        digest(&[
            &cause.source,
            &cause.id,
            "rule",
            &self.origin.id,
            &self.position.to_string(),
        ])
    }

    pub fn nats_subject(&self) -> String {
        format!("actions.{}", self.channel.as_str())
    }

    /// The CloudEvent published for this action. `time` is when nudge decided (RFC 3339).
    pub fn to_cloudevent(&self, cause: &CloudEvent, time: &str) -> Value {
        json!({
            "specversion": "1.0",
            "id": self.id(cause),
            "source": "nudge",
            "type": format!("nudge.action.{}", self.channel.as_str()),
            "subject": cause.subject,
            "time": time,
            "datacontenttype": "application/json",
            "causationid": cause.id,
            "causationsource": cause.source,
            "rule": self.origin.label(),
            "data": self.data,
        })
    }
}
