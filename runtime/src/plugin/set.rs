//! The plugins an instance runs: an immutable set with a trigger index, swapped whole on every
//! change, so an event is handled by exactly one, fully loaded version of each plugin.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use nudge_rules::TriggerIndex;
use nudge_rules::action::Origin;
use nudge_rules::experiment::Experiment;

use super::breaker::Breaker;
use super::host::Compiled;
use super::instances::Instances;
use super::manifest::PluginRecord;
use crate::telemetry::PluginMeters;

/// A plugin version compiled, linked and ready to call.
pub struct LoadedPlugin {
    pub record: PluginRecord,
    pub instances: Instances,
    pub origin: Arc<Origin>,
    /// The manifest's goal and holdout, compiled once per version.
    pub experiment: Option<Arc<Experiment>>,
    pub meters: PluginMeters,
    /// Quarantine after repeated limit failures (see `breaker`).
    pub breaker: Breaker,
}

impl LoadedPlugin {
    pub fn new(record: PluginRecord, code: Arc<Compiled>) -> LoadedPlugin {
        // Stored manifests were validated when written; one that no longer compiles (a newer
        // nudge's stricter check) measures nothing, and says so.
        let experiment = record.manifest.experiment().unwrap_or_else(|error| {
            tracing::warn!(plugin = %record.name, version = record.version, %error,
                "the plugin's goal or holdout does not compile; its results are not counted");
            None
        });
        LoadedPlugin {
            experiment: experiment.map(Arc::new),
            instances: Instances::new(code, record.manifest.config_json().into()),
            origin: Arc::new(Origin::plugin(&record.name, record.version)),
            meters: PluginMeters::new(&record.name),
            breaker: Breaker::default(),
            record,
        }
    }
}

#[derive(Clone, Default)]
pub struct PluginSet {
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    index: TriggerIndex<Arc<LoadedPlugin>>,
}

pub type LivePlugins = Arc<ArcSwap<PluginSet>>;

impl PluginSet {
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// The loaded version of `name`, enabled or not.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(name)
    }

    pub fn with_plugin(&self, plugin: Arc<LoadedPlugin>) -> PluginSet {
        let mut plugins = self.plugins.clone();
        plugins.insert(plugin.record.name.clone(), plugin);
        PluginSet::indexed(plugins)
    }

    pub fn without_plugin(&self, name: &str) -> PluginSet {
        let mut plugins = self.plugins.clone();
        plugins.remove(name);
        PluginSet::indexed(plugins)
    }

    fn indexed(plugins: BTreeMap<String, Arc<LoadedPlugin>>) -> PluginSet {
        let mut index = TriggerIndex::default();
        for plugin in plugins.values().filter(|p| p.record.manifest.enabled) {
            // Stored manifests were validated on write; a pattern that no longer parses is skipped.
            for pattern in plugin.record.manifest.validate().unwrap_or_default() {
                index.insert(&pattern, plugin.clone());
            }
        }
        PluginSet { plugins, index }
    }

    /// Enabled plugins subscribed to `event_type`, by name.
    pub fn matching(&self, event_type: &str) -> Vec<&Arc<LoadedPlugin>> {
        let mut found: Vec<&Arc<LoadedPlugin>> = Vec::new();
        self.index.for_each_match(event_type, |p| found.push(p));
        found.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        found.dedup_by(|a, b| a.record.name == b.record.name);
        found
    }
}
