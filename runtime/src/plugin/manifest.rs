//! What a plugin is, as stored: its manifest (subscriptions, configuration, switch) and the
//! version record that ties a name to a code hash in the object store.

use nudge_rules::experiment::{Experiment, GoalSpec};
use nudge_rules::rule::validate_key;
use nudge_rules::schema::FieldRead;
use nudge_rules::{Pattern, RuleError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::versioned::Record;

const MAX_TRIGGERS: usize = 32;
const MAX_DESCRIPTION_BYTES: usize = 2_048;
/// The configuration travels to the guest on every `config()` call; keep it small.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// The part of a plugin its operator writes: `<name>.toml` beside the `.wasm`, the `manifest`
/// part of an upload, or a `PATCH /api/plugins/{name}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub description: String,
    /// Event-type patterns the plugin's `handle` runs for (`cart.*`, `order.>`); none: the plugin
    /// only serves rules through `plugin(name, input)`.
    #[serde(default)]
    pub triggers: Vec<String>,
    /// The fields of the event's data the plugin reads (`data.total`, `data.items[].sku`),
    /// checked against the schemas of its triggering types when it is uploaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
    /// Handed to the plugin by the host's `config()` import.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// A conversion goal for the plugin's actions, as a rule declares one (`goal = { event =
    /// "order.placed", within = "3d" }`): attributed and counted the same way, under
    /// `plugin:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<GoalSpec>,
    /// The share of profiles (percent) whose actions from this plugin are decided but not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<f64>,
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            description: String::new(),
            triggers: Vec::new(),
            reads: Vec::new(),
            config: Map::new(),
            goal: None,
            holdout: None,
            enabled: true,
        }
    }
}

impl Manifest {
    /// Checks the manifest; answers the parsed trigger patterns.
    pub fn validate(&self) -> Result<Vec<Pattern>, RuleError> {
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(RuleError::invalid(
                "description",
                format!("must be at most {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        if self.triggers.len() > MAX_TRIGGERS {
            return Err(RuleError::invalid(
                "triggers",
                format!("at most {MAX_TRIGGERS} patterns"),
            ));
        }
        if self.reads.len() > MAX_TRIGGERS {
            return Err(RuleError::invalid(
                "reads",
                format!("at most {MAX_TRIGGERS} fields"),
            ));
        }
        self.data_reads()?;
        self.experiment()?;
        let config_bytes = serde_json::to_vec(&self.config).map_or(0, |v| v.len());
        if config_bytes > MAX_CONFIG_BYTES {
            return Err(RuleError::invalid(
                "config",
                format!("is {config_bytes} bytes; the limit is {MAX_CONFIG_BYTES}"),
            ));
        }
        self.triggers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Pattern::parse(t).map_err(|e| RuleError::invalid(format!("triggers[{i}]"), e))
            })
            .collect()
    }

    /// The `reads` as the schema check takes them.
    pub fn data_reads(&self) -> Result<Vec<FieldRead>, RuleError> {
        self.reads
            .iter()
            .enumerate()
            .map(|(i, path)| {
                FieldRead::parse(path).map_err(|e| RuleError::invalid(format!("reads[{i}]"), e))
            })
            .collect()
    }

    /// The goal and holdout compiled, when the manifest declares either.
    pub fn experiment(&self) -> Result<Option<Experiment>, RuleError> {
        Experiment::compile(self.goal.as_ref(), self.holdout)
    }

    /// The configuration as the guest receives it.
    pub fn config_json(&self) -> String {
        Value::Object(self.config.clone()).to_string()
    }
}

/// One version of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub name: String,
    pub version: u64,
    /// SHA-256 of the `.wasm`; the code's object name in `NUDGE_PLUGIN_CODE`.
    pub sha256: String,
    pub size_bytes: u64,
    /// The version of `nudge:plugin` the code was built against. Records stored before 0.2.0
    /// existed hold code built against 0.1.0, the only version there was.
    #[serde(default = "first_contract")]
    pub contract: String,
    #[serde(flatten)]
    pub manifest: Manifest,
    pub updated_by: String,
    pub updated_at: String,
}

fn first_contract() -> String {
    "0.1.0".to_owned()
}

impl Record for PluginRecord {
    const NOUN: &'static str = "plugin";

    fn key(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u64 {
        self.version
    }
}

pub fn validate_name(name: &str) -> Result<(), RuleError> {
    validate_key("name", name)
}

/// Parses a manifest given as TOML (`<name>.toml`) or JSON.
pub fn parse_manifest(text: &str, toml_format: bool) -> Result<Manifest, RuleError> {
    if toml_format {
        toml::from_str(text).map_err(|e| RuleError::invalid("manifest", e.message().to_owned()))
    } else {
        serde_json::from_str(text).map_err(|e| RuleError::invalid("manifest", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_the_bad_trigger() {
        let manifest = Manifest {
            triggers: vec!["cart.*".into(), "a..b".into()],
            ..Manifest::default()
        };
        let err = manifest.validate().unwrap_err();
        assert!(err.to_string().starts_with("triggers[1]"), "{err}");
    }

    #[test]
    fn a_manifest_declares_a_goal_and_holdout_as_a_rule_does() {
        let toml = "triggers = [\"product.viewed\"]\nholdout = 10\n\
                    goal = { event = \"order.placed\", within = \"3d\", value = \"data.total\" }\n";
        let manifest = parse_manifest(toml, true).unwrap();
        let experiment = manifest.experiment().unwrap().unwrap();
        assert_eq!(experiment.holdout_bp, 1_000);
        assert!(experiment.goal.is_some());
        for (bad, field) in [
            ("holdout = 80", "holdout"),
            (
                "goal = { event = \"order.placed\", within = \"3 days\" }",
                "goal.within",
            ),
        ] {
            let err = parse_manifest(bad, true).unwrap().validate().unwrap_err();
            assert!(err.to_string().starts_with(field), "{bad}: {err}");
        }
    }

    #[test]
    fn toml_manifest_refuses_unknown_fields() {
        let ok = parse_manifest("triggers = [\"cart.*\"]\n[config]\nslot = \"x\"\n", true).unwrap();
        assert_eq!(ok.config["slot"], "x");
        assert!(ok.enabled);
        let err = parse_manifest("trigers = []", true).unwrap_err();
        assert!(err.to_string().contains("trigers"), "{err}");
    }
}
