//! Every rule template runs its fixture scenarios on the simulated clock, and the outcome
//! matches what the fixture says (counted by hand).

use std::sync::Arc;

use nudge_rules::file::{TEMPLATES, parse_rule_file};
use nudge_rules::simulate::{Scenario, Simulation};
use nudge_rules::{CompiledRule, Decider, Limits, Policy, Rule, RuleSet, Sandbox, StateLimits};
use serde_json::Value;

fn fixtures() -> Vec<(String, Scenario)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/fixtures");
    let mut found: Vec<(String, Scenario)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let scenario = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, scenario)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn template_set(sandbox: &Arc<Sandbox>, template: &str) -> RuleSet {
    let (file, text) = TEMPLATES
        .iter()
        .find(|(file, _)| file.trim_end_matches(".toml") == template)
        .unwrap_or_else(|| panic!("no template {template}"));
    let (id, spec) = parse_rule_file(file, text).unwrap();
    let rule = Rule {
        version: 1,
        ..Rule::unsaved(id, spec, "template")
    };
    let compiled = CompiledRule::compile(sandbox, rule).unwrap_or_else(|e| panic!("{file}: {e}"));
    RuleSet::new(sandbox.clone()).with_rule(Arc::new(compiled))
}

#[test]
fn every_template_has_a_fixture_and_a_description() {
    let scenarios = fixtures();
    for (file, text) in TEMPLATES {
        let (id, spec) = parse_rule_file(file, text).unwrap();
        assert!(spec.description.len() > 80, "{file} needs a description");
        assert!(
            scenarios.iter().any(|(_, s)| s.template == id),
            "{file} has no fixture"
        );
    }
}

#[test]
fn template_fixtures_come_out_as_counted_by_hand() {
    let sandbox = Arc::new(Sandbox::new(Limits::default()));
    let policy = Policy::default();
    let limits = StateLimits::default();
    for (name, scenario) in fixtures() {
        let rules = template_set(&sandbox, &scenario.template);
        let decider = Decider {
            sandbox: &sandbox,
            policy: &policy,
            limits: &limits,
        };
        let mut simulation = Simulation::new(decider, &rules, 100);
        for (at_ms, event) in scenario.cloudevents().unwrap() {
            simulation.feed(&event, at_ms);
        }
        simulation.advance(scenario.until_ms().unwrap());
        let (report, _) = simulation.finish();
        let report = serde_json::to_value(&report).unwrap();
        for (field, expected) in scenario.expect.as_object().unwrap() {
            assert_eq!(&report[field], expected, "{name}: {field}\n{report:#}");
        }
        for expected in &scenario.expect_pushes {
            let subject = &expected["subject"];
            let pushes: Vec<&Value> = report["sample"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| &a["subject"] == subject && a["type"] == "nudge.action.push")
                .collect();
            let found = pushes.iter().any(|push| {
                expected.iter().all(|(k, v)| match k.as_str() {
                    "subject" => true,
                    "at" => &push["time"] == v,
                    _ => &push["data"][k] == v,
                })
            });
            assert!(found, "{name}: no push like {expected:?} in {pushes:#?}");
        }
    }
}
