//! Actions: what rules decide, and their CloudEvent form on `actions.<channel>`.

use std::sync::Arc;

use rhai::Dynamic;
use serde::Serialize;
use serde_json::Value;

use crate::event::{CloudEvent, digest};

/// Where an action goes. Each channel is a NATS subject `actions.<channel>`.
///
/// This enum and its methods are the one table of channels: the rule language's error
/// messages, metrics, traces, the policy's arbitration targets and the UI (through
/// `GET /api/session`) derive from it, and the WIT contract and the README are held equal to it
/// by tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Push,
    Personalize,
    Price,
    Webhook,
    Email,
}

impl Channel {
    /// How many channels there are, for per-channel arrays.
    pub const COUNT: usize = 5;

    pub const ALL: [Channel; Channel::COUNT] = [
        Channel::Push,
        Channel::Personalize,
        Channel::Price,
        Channel::Webhook,
        Channel::Email,
    ];

    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The names of every channel, for messages that list them: `push, personalize, …`.
    pub fn names() -> String {
        Channel::ALL.map(Channel::as_str).join(", ")
    }

    /// Its position in [`Channel::ALL`], for per-channel arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Personalize => "personalize",
            Channel::Price => "price",
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
    }

    /// The CloudEvent `type` of this channel's actions.
    pub fn event_type(self) -> &'static str {
        match self {
            Channel::Push => "nudge.action.push",
            Channel::Personalize => "nudge.action.personalize",
            Channel::Price => "nudge.action.price",
            Channel::Webhook => "nudge.action.webhook",
            Channel::Email => "nudge.action.email",
        }
    }

    /// The NATS subject its actions are published on.
    pub fn subject(self) -> &'static str {
        match self {
            Channel::Push => "actions.push",
            Channel::Personalize => "actions.personalize",
            Channel::Price => "actions.price",
            Channel::Webhook => "actions.webhook",
            Channel::Email => "actions.email",
        }
    }

    /// What this channel's payload must hold, checked where a rule or a plugin decides the
    /// action so the mistake is reported against them rather than found at delivery.
    pub fn check_payload(self, payload: &rhai::Map) -> Result<(), String> {
        if self != Channel::Email {
            return Ok(());
        }
        let text = |key: &str| {
            payload.get(key).and_then(|v| {
                v.read_lock::<rhai::ImmutableString>()
                    .map(|s| s.to_string())
            })
        };
        match text("to") {
            Some(to) if is_address(&to) => {}
            Some(to) => return Err(format!("email(): `to` is not an e-mail address: {to:?}")),
            None => return Err("email(): `to` must be an e-mail address (a string)".into()),
        }
        match text("template") {
            Some(name) if !name.is_empty() => Ok(()),
            _ => Err("email(): `template` must name an e-mail template (a string)".into()),
        }
    }

    /// The payload field naming what an action of this channel is for (the slot, the product,
    /// the webhook), which its rule function takes as first argument; rules that want the same
    /// channel and target for one event compete by priority. Push and email have none: one
    /// event sends a person at most one of each.
    pub fn target_key(self) -> Option<&'static str> {
        match self {
            Channel::Push | Channel::Email => None,
            Channel::Personalize => Some("slot"),
            Channel::Price => Some("product_id"),
            Channel::Webhook => Some("webhook"),
        }
    }
}

/// A plausible single address (`local@domain`, no spaces or angle brackets). The relay is the
/// judge of deliverability; this only stops what can never be an address.
fn is_address(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && text.len() <= 254
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
}

/// Whether a rule or a plugin decided an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginKind {
    Rule,
    Plugin,
}

impl OriginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OriginKind::Rule => "rule",
            OriginKind::Plugin => "plugin",
        }
    }
}

/// What marks a plugin's label and results key (rule ids cannot contain `:`).
const PLUGIN_PREFIX: &str = "plugin:";

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
            label: format!("{PLUGIN_PREFIX}{name}@v{version}"),
        }
    }

    /// The CloudEvent `rule` extension.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The name its goal, holdout draw and results go by: the rule id, or `plugin:<name>`
    /// (rule ids cannot contain `:`, so the two never meet).
    /// Allocates nothing: it is asked per event of every experimenting rule and plugin.
    pub fn key(&self) -> &str {
        match self.kind {
            OriginKind::Rule => &self.id,
            // The label is `plugin:<name>@v<version>`, and names hold no `@`.
            OriginKind::Plugin => self
                .label
                .rsplit_once("@v")
                .map_or(&self.label, |(key, _)| key),
        }
    }

    /// The results key of plugin `name`: `plugin:<name>`.
    pub fn plugin_key(name: &str) -> String {
        format!("{PLUGIN_PREFIX}{name}")
    }

    /// What a results key names: a rule (`cart`) or a plugin (`plugin:pricing` → `pricing`).
    pub fn split_key(key: &str) -> (OriginKind, &str) {
        match key.strip_prefix(PLUGIN_PREFIX) {
            Some(name) => (OriginKind::Plugin, name),
            None => (OriginKind::Rule, key),
        }
    }

    /// What a `rule` extension names: the kind, the rule id or plugin name, and the version;
    /// `None` for anything [`Origin::new`] or [`Origin::plugin`] cannot have written.
    pub fn parse_label(label: &str) -> Option<(OriginKind, &str, u64)> {
        let (kind, rest) = Origin::split_key(label);
        let (id, version) = rest.rsplit_once("@v")?;
        let version = version.parse().ok()?;
        crate::rule::validate_key("rule", id).ok()?;
        Some((kind, id, version))
    }
}

/// An action's payload as the rule language shapes it: `personalize` adds `slot`, `price` adds
/// `product_id`, `webhook` wraps the payload with the webhook's name. Plugins' actions get the
/// same shape, so consumers of `actions.<channel>` cannot tell them apart.
pub fn shape_payload(channel: Channel, target: Option<Dynamic>, payload: rhai::Map) -> rhai::Map {
    let Some(key) = channel.target_key() else {
        return payload;
    };
    let target = target.unwrap_or(Dynamic::UNIT);
    if channel == Channel::Webhook {
        let mut data = rhai::Map::new();
        data.insert(key.into(), target);
        data.insert("payload".into(), payload.into());
        data
    } else {
        let mut payload = payload;
        payload.insert(key.into(), target);
        payload
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
        digest(&[
            &cause.source,
            &cause.id,
            self.origin.kind.as_str(),
            &self.origin.id,
            &self.position.to_string(),
        ])
    }

    pub fn nats_subject(&self) -> &'static str {
        self.channel.subject()
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

#[cfg(test)]
mod tests {
    use super::{Channel, Origin, OriginKind};

    #[test]
    fn labels_read_back_as_written() {
        for origin in [
            Origin::new("cart-abandon", 3),
            Origin::plugin("crm_sync", 12),
        ] {
            assert_eq!(
                Origin::parse_label(origin.label()),
                Some((origin.kind, origin.id.as_str(), origin.version))
            );
        }
        assert_eq!(Origin::new("cart", 3).key(), "cart");
        assert_eq!(Origin::plugin("crm_sync", 12).key(), "plugin:crm_sync");
        assert_eq!(Origin::plugin_key("crm_sync"), "plugin:crm_sync");
        assert_eq!(
            Origin::split_key("plugin:crm_sync"),
            (OriginKind::Plugin, "crm_sync")
        );
        assert_eq!(Origin::split_key("cart"), (OriginKind::Rule, "cart"));
        for foreign in ["cart", "cart@3", "cart@vx", "plugin:@v1", "a.b@v1", ""] {
            assert_eq!(Origin::parse_label(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_channel_table_lists_every_channel_once_in_index_order() {
        for (position, channel) in Channel::ALL.into_iter().enumerate() {
            // Exhaustive: a new variant fails to compile here until it is placed in `ALL`.
            let expected = match channel {
                Channel::Push => 0,
                Channel::Personalize => 1,
                Channel::Price => 2,
                Channel::Webhook => 3,
                Channel::Email => 4,
            };
            assert_eq!(channel.index(), position);
            assert_eq!(expected, position, "{channel:?} out of place in ALL");
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
            assert_eq!(channel.subject(), format!("actions.{}", channel.as_str()));
            assert_eq!(
                channel.event_type(),
                format!("nudge.action.{}", channel.as_str())
            );
        }
        assert_eq!(Channel::names(), "push, personalize, price, webhook, email");
        assert_eq!(Channel::parse("sms"), None);
    }

    #[test]
    fn an_email_needs_an_address_and_a_template() {
        let payload = |to: rhai::Dynamic, template: rhai::Dynamic| {
            let mut map = rhai::Map::new();
            map.insert("to".into(), to);
            map.insert("template".into(), template);
            map
        };
        let ok = payload("ada@example.com".into(), "welcome".into());
        assert_eq!(Channel::Email.check_payload(&ok), Ok(()));
        for (to, template, expected) in [
            (rhai::Dynamic::UNIT, "welcome".into(), "`to` must be"),
            (
                "ada".into(),
                "welcome".into(),
                "`to` is not an e-mail address",
            ),
            ("a b@example.com".into(), "welcome".into(), "`to` is not"),
            ("ada@localhost".into(), "welcome".into(), "`to` is not"),
            (
                "ada@example.com".into(),
                rhai::Dynamic::UNIT,
                "`template` must",
            ),
            ("ada@example.com".into(), "".into(), "`template` must"),
        ] {
            let error = Channel::Email
                .check_payload(&payload(to, template))
                .unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        assert_eq!(Channel::Push.check_payload(&rhai::Map::new()), Ok(()));
    }
}
