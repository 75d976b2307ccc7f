//! Actions: what rules decide, and their CloudEvent form on `actions.<channel>`.

use std::sync::Arc;

use rhai::Dynamic;
use serde::Serialize;
use serde_json::Value;

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

    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Personalize => "personalize",
            Channel::Price => "price",
            Channel::Webhook => "webhook",
        }
    }

    /// The CloudEvent `type` of this channel's actions.
    pub fn event_type(self) -> &'static str {
        match self {
            Channel::Push => "nudge.action.push",
            Channel::Personalize => "nudge.action.personalize",
            Channel::Price => "nudge.action.price",
            Channel::Webhook => "nudge.action.webhook",
        }
    }
}

/// Whether a rule or a plugin decided an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginKind {
    Rule,
    Plugin,
}

/// What produced an action: a rule or plugin version. Built once per compiled rule or loaded
/// plugin and shared by its actions, so no event formats or copies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub kind: OriginKind,
    pub id: String,
    pub version: u64,
    #[serde(skip)]
    label: String,
}

impl Origin {
    /// A rule version; its label is `<rule id>@v<version>`.
    pub fn new(id: &str, version: u64) -> Origin {
        Origin {
            kind: OriginKind::Rule,
            id: id.to_owned(),
            version,
            label: format!("{id}@v{version}"),
        }
    }

    /// A plugin version; its label is `plugin:<name>@v<version>` (rule ids cannot contain `:`).
    pub fn plugin(name: &str, version: u64) -> Origin {
        Origin {
            kind: OriginKind::Plugin,
            id: name.to_owned(),
            version,
            label: format!("plugin:{name}@v{version}"),
        }
    }

    /// The CloudEvent `rule` extension.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// An action's payload as the rule language shapes it: `personalize` adds `slot`, `price` adds
/// `product_id`, `webhook` wraps the payload with the webhook's name. Plugins' actions get the
/// same shape, so consumers of `actions.<channel>` cannot tell them apart.
pub fn shape_payload(channel: Channel, target: Option<Dynamic>, payload: rhai::Map) -> rhai::Map {
    let keyed = |key: &str, mut payload: rhai::Map| {
        payload.insert(key.into(), target.clone().unwrap_or(Dynamic::UNIT));
        payload
    };
    match channel {
        Channel::Push => payload,
        Channel::Personalize => keyed("slot", payload),
        Channel::Price => keyed("product_id", payload),
        Channel::Webhook => {
            let mut data = rhai::Map::new();
            data.insert("webhook".into(), target.unwrap_or(Dynamic::UNIT));
            data.insert("payload".into(), payload.into());
            data
        }
    }
}

/// One action decided for one event. `data` stays the script's own value until it is
/// serialized for publishing: converting it to an intermediate JSON tree would cost more than
/// evaluating the rule.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub channel: Channel,
    pub data: Dynamic,
    pub origin: Arc<Origin>,
    /// Index among the actions the same rule produced for the same event.
    pub position: u32,
}

impl Action {
    /// Deterministic id: the triggering event's identity, the rule or plugin and the position.
    /// The *version* is left out on purpose, so an event redelivered after an edit still
    /// dedupes against the action its first delivery published.
    pub fn id(&self, cause: &CloudEvent) -> String {
        let kind = match self.origin.kind {
            OriginKind::Rule => "rule",
            OriginKind::Plugin => "plugin",
        };
        digest(&[
            &cause.source,
            &cause.id,
            kind,
            &self.origin.id,
            &self.position.to_string(),
        ])
    }

    pub fn nats_subject(&self) -> &'static str {
        match self.channel {
            Channel::Push => "actions.push",
            Channel::Personalize => "actions.personalize",
            Channel::Price => "actions.price",
            Channel::Webhook => "actions.webhook",
        }
    }

    /// The CloudEvent published for this action. `time` is when nudge decided (RFC 3339).
    /// The action's CloudEvent; `id` is [`Action::id`] of `cause`, computed once by the caller.
    pub fn envelope<'a>(
        &'a self,
        cause: &'a CloudEvent,
        time: &'a str,
        id: &'a str,
    ) -> ActionEvent<'a> {
        ActionEvent {
            specversion: "1.0",
            id,
            source: "nudge",
            event_type: self.channel.event_type(),
            subject: &cause.subject,
            time,
            datacontenttype: "application/json",
            causationid: &cause.id,
            causationsource: &cause.source,
            rule: self.origin.label(),
            data: &self.data,
        }
    }

    /// The action's CloudEvent as a JSON value (for APIs and tests; publishing serializes the
    /// envelope straight to bytes).
    pub fn to_cloudevent(&self, cause: &CloudEvent, time: &str) -> Value {
        let id = self.id(cause);
        serde_json::to_value(self.envelope(cause, time, &id)).unwrap_or(Value::Null)
    }

    /// The payload as JSON.
    pub fn data_json(&self) -> Value {
        serde_json::to_value(&self.data).unwrap_or(Value::Null)
    }
}

/// The CloudEvent form of an action, with the `causationid`/`causationsource`/`rule`
/// extension attributes that say why it exists.
#[derive(Debug, Serialize)]
pub struct ActionEvent<'a> {
    pub specversion: &'static str,
    pub id: &'a str,
    pub source: &'static str,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub subject: &'a str,
    pub time: &'a str,
    pub datacontenttype: &'static str,
    pub causationid: &'a str,
    pub causationsource: &'a str,
    pub rule: &'a str,
    pub data: &'a Dynamic,
}
