//! The rule model: what a marketer edits (`RuleSpec`) and what nudge stores (`Rule`, a spec with
//! its immutable version metadata).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::action::Channel;
use crate::calendar::QuietHours;
use crate::duration::parse_duration;
use crate::experiment::GoalSpec;
use crate::trigger::Pattern;

pub const MAX_RULE_ID_BYTES: usize = 64;
pub const MAX_NAME_BYTES: usize = 200;
pub const MAX_DESCRIPTION_BYTES: usize = 4_096;
pub const MAX_TRIGGERS: usize = 32;

/// The fields of a rule a person writes. Unknown fields are refused so that a typo is an error,
/// not a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub triggers: Vec<String>,
    /// Higher runs first; ties run in rule id order.
    #[serde(default)]
    pub priority: i32,
    pub script: String,
    /// Fire at most once per profile per this period (`"7d"`), whatever the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    /// Caps on this rule's actions per channel, per profile, on top of the global ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub caps: BTreeMap<String, CapLimits>,
    /// This rule's quiet hours, replacing the global ones for its actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// What counts as this rule working: a goal event within a window after its action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<GoalSpec>,
    /// Percent of profiles held out as the control group (decided, never published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<f64>,
}

/// How many actions one profile may get per day and per ISO week (in its time zone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_week: Option<u32>,
}

fn enabled_by_default() -> bool {
    true
}

/// One immutable version of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    #[serde(flatten)]
    pub spec: RuleSpec,
    pub version: u64,
    pub updated_by: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl RuleSpec {
    /// A spec with the defaults a new rule gets: enabled, priority 0, no description.
    pub fn new(name: impl Into<String>, triggers: &[&str], script: impl Into<String>) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            description: String::new(),
            enabled: true,
            triggers: triggers.iter().map(|t| (*t).to_owned()).collect(),
            priority: 0,
            script: script.into(),
            cooldown: None,
            caps: BTreeMap::new(),
            quiet_hours: None,
            goal: None,
            holdout: None,
        }
    }
}

impl Rule {
    /// A rule that was never stored (version 0): drafts, rule files, tests. The store stamps
    /// versions and times on what it saves.
    pub fn unsaved(id: impl Into<String>, spec: RuleSpec, author: impl Into<String>) -> Rule {
        Rule {
            id: id.into(),
            spec,
            version: 0,
            updated_by: author.into(),
            updated_at: String::new(),
        }
    }
}

/// Why a rule was refused. `Invalid` names the field; `Compile` points into the script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("script:{line}:{column}: {message}")]
    Compile {
        line: usize,
        column: usize,
        message: String,
    },
}

impl RuleError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RuleError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Rule ids become NATS KV key tokens and URL path segments.
pub fn validate_rule_id(id: &str) -> Result<(), RuleError> {
    validate_key("id", id)
}

/// Rule ids and plugin names: they are NATS KV keys and URL path segments.
pub fn validate_key(field: &'static str, key: &str) -> Result<(), RuleError> {
    let ok_chars = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if key.is_empty() || key.len() > MAX_RULE_ID_BYTES || !ok_chars {
        return Err(RuleError::invalid(
            field,
            format!("\"{key}\" must be 1 to {MAX_RULE_ID_BYTES} letters, digits, `-` or `_`"),
        ));
    }
    Ok(())
}

impl RuleSpec {
    /// Checks everything but the script, which only the sandbox can judge.
    pub fn validate(&self) -> Result<Vec<Pattern>, RuleError> {
        if self.name.trim().is_empty() || self.name.len() > MAX_NAME_BYTES {
            return Err(RuleError::invalid(
                "name",
                format!("must be 1 to {MAX_NAME_BYTES} bytes"),
            ));
        }
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(RuleError::invalid(
                "description",
                format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        if self.triggers.is_empty() || self.triggers.len() > MAX_TRIGGERS {
            return Err(RuleError::invalid(
                "triggers",
                format!("must list 1 to {MAX_TRIGGERS} event-type patterns, e.g. [\"cart.*\"]"),
            ));
        }
        if let Some(cooldown) = &self.cooldown {
            parse_duration(cooldown).map_err(|m| RuleError::invalid("cooldown", m))?;
        }
        for channel in self.caps.keys() {
            if Channel::parse(channel).is_none() {
                return Err(RuleError::invalid(
                    format!("caps.{channel}"),
                    format!("is not a channel ({})", Channel::names()),
                ));
            }
        }
        if let Some(quiet) = &self.quiet_hours {
            quiet.validate().map_err(|m| {
                let (field, message) = m.split_once(": ").unwrap_or(("", m.as_str()));
                RuleError::invalid(format!("quiet_hours.{field}"), message)
            })?;
        }
        self.triggers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Pattern::parse(t).map_err(|m| RuleError::invalid(format!("triggers[{i}]"), m))
            })
            .collect()
    }

    /// The cooldown in milliseconds, once validated.
    pub fn cooldown_ms(&self) -> Option<i64> {
        let cooldown = self.cooldown.as_deref()?;
        parse_duration(cooldown)
            .ok()
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RuleSpec {
        serde_json::from_str(r#"{"name":"n","triggers":["cart.*"],"script":"1"}"#).unwrap()
    }

    #[test]
    fn defaults_and_unknown_fields() {
        let s = spec();
        assert!(s.enabled);
        assert_eq!(s.priority, 0);
        let err = serde_json::from_str::<RuleSpec>(
            r#"{"name":"n","triggers":["a"],"script":"1","trigger":["b"]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `trigger`"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let mut s = spec();
        s.triggers = vec!["cart.*".into(), "cart..x".into()];
        assert!(
            matches!(s.validate(), Err(RuleError::Invalid { field, .. }) if field == "triggers[1]")
        );
        s.triggers.clear();
        assert!(
            matches!(s.validate(), Err(RuleError::Invalid { field, .. }) if field == "triggers")
        );
        assert!(validate_rule_id("abandoned-cart_2").is_ok());
        assert!(validate_rule_id("no/slash").is_err());
        assert!(validate_rule_id("").is_err());
    }
}
