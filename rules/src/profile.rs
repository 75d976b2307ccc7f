//! The profile a rule sees as `profile`: the user an event is about.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A profile as rules read it. `consent.<channel> == false` means opted out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub id: String,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(default)]
    pub consent: Map<String, Value>,
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".to_owned()
}

impl Profile {
    /// The profile of a key nudge knows nothing about yet.
    pub fn new(id: impl Into<String>) -> Self {
        Profile {
            id: id.into(),
            attributes: Map::new(),
            consent: Map::new(),
            timezone: utc(),
        }
    }
}
