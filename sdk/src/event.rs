//! The event a plugin handles and the profile it is about.

use serde_json::{Map, Value};

/// A CloudEvent as nudge delivers it. `subject` is the profile key.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub subject: String,
    /// RFC 3339, when the producer set it.
    pub time: Option<String>,
    pub data: Value,
}

impl Event {
    /// An event for tests: id `test-1`, source `test`.
    pub fn new(event_type: &str, subject: &str, data: Value) -> Event {
        Event {
            id: "test-1".to_owned(),
            source: "test".to_owned(),
            event_type: event_type.to_owned(),
            subject: subject.to_owned(),
            time: None,
            data,
        }
    }
}

/// The user an event is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: String,
    /// IANA time zone name; `UTC` unless the profile says otherwise.
    pub timezone: String,
    pub attributes: Map<String, Value>,
    /// Channel name to consent; `false` means opted out.
    pub consent: Map<String, Value>,
}

impl Profile {
    /// A profile nudge knows nothing about yet.
    pub fn new(id: &str) -> Profile {
        Profile {
            id: id.to_owned(),
            timezone: "UTC".to_owned(),
            attributes: Map::new(),
            consent: Map::new(),
        }
    }

    /// Sets an attribute (builder style, for tests).
    pub fn with_attribute(mut self, name: &str, value: Value) -> Profile {
        self.attributes.insert(name.to_owned(), value);
        self
    }

    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name)
    }

    /// Whether the profile may be reached on `channel`: only an explicit `false` opts out.
    pub fn consents_to(&self, channel: &str) -> bool {
        self.consent.get(channel) != Some(&Value::Bool(false))
    }
}
