//! A consistent set of compiled rules with its trigger index, and the evaluation of one event
//! against it. A `RuleSet` is immutable; a change produces a new one, so an event is evaluated
//! against exactly one version of every rule.

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::AST;
use serde::Serialize;

use crate::action::{Action, Origin};
use crate::context::Effects;
use crate::event::CloudEvent;
use crate::experiment::Experiment;
use crate::policy::OriginPolicy;
use crate::profile::Profile;
use crate::rule::{Rule, RuleError, validate_rule_id};
use crate::sandbox::{FailureKind, RunFailure, Sandbox};
use crate::trigger::{Pattern, TriggerIndex};

/// A rule version with its script compiled. Compiled once, shared by every evaluation.
pub struct CompiledRule {
    pub rule: Rule,
    ast: AST,
    patterns: Vec<Pattern>,
    origin: Arc<Origin>,
    policy: Arc<OriginPolicy>,
    experiment: Option<Arc<Experiment>>,
}

impl CompiledRule {
    /// Validates and compiles a rule version.
    pub fn compile(sandbox: &Sandbox, rule: Rule) -> Result<CompiledRule, RuleError> {
        validate_rule_id(&rule.id)?;
        let patterns = rule.spec.validate()?;
        let experiment = Experiment::compile(rule.spec.goal.as_ref(), rule.spec.holdout)?;
        let ast = sandbox.compile(&rule.spec.script)?;
        let origin = Arc::new(Origin::new(&rule.id, rule.version));
        let policy = Arc::new(OriginPolicy {
            priority: rule.spec.priority,
            cooldown_ms: rule.spec.cooldown_ms(),
            caps: rule.spec.caps.clone(),
            quiet_hours: rule.spec.quiet_hours.clone(),
        });
        Ok(CompiledRule {
            rule,
            ast,
            patterns,
            origin,
            policy,
            experiment: experiment.map(Arc::new),
        })
    }

    /// The origin its actions carry.
    pub fn origin(&self) -> &Arc<Origin> {
        &self.origin
    }

    /// The rule's goal and holdout, when it declares either.
    pub fn experiment(&self) -> Option<&Arc<Experiment>> {
        self.experiment.as_ref()
    }

    /// Whether this rule, enabled, runs for events of `event_type`.
    pub fn triggers_on(&self, event_type: &str) -> bool {
        self.rule.spec.enabled && self.patterns.iter().any(|p| p.matches(event_type))
    }

    /// What this rule brings to policy (priority, cooldown, caps, quiet hours), prepared once.
    pub fn policy(&self) -> &Arc<OriginPolicy> {
        &self.policy
    }

    /// The rule's trigger patterns.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The compiled script, for running it in a prepared scope (benchmarks, tools).
    pub fn ast(&self) -> &AST {
        &self.ast
    }
}

/// A rule that failed on an event, for logs, metrics and the decision trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFailure {
    pub rule: String,
    pub version: u64,
    #[serde(flatten)]
    pub failure: RunFailure,
}

impl RuleFailure {
    pub fn reason(&self) -> &'static str {
        self.failure.kind.reason()
    }

    pub fn limit(&self) -> Option<&'static str> {
        match self.failure.kind {
            FailureKind::Limit(name) => Some(name),
            FailureKind::Error => None,
        }
    }
}

/// Everything one event caused.
#[derive(Debug, Default, Serialize)]
pub struct Evaluation {
    /// `<id>@v<version>` of every enabled rule the event triggered, in evaluation order.
    pub matched: Vec<String>,
    pub actions: Vec<Action>,
    pub failures: Vec<RuleFailure>,
    /// `print`/`debug` output of the scripts, for testing a rule.
    pub logs: Vec<String>,
    /// Each succeeded rule's profile changes and timers, by rule id, in evaluation order.
    #[serde(skip)]
    pub effects: Vec<(String, Effects)>,
}

#[derive(Clone)]
pub struct RuleSet {
    sandbox: Arc<Sandbox>,
    rules: BTreeMap<String, Arc<CompiledRule>>,
    index: TriggerIndex<Arc<CompiledRule>>,
}

impl RuleSet {
    pub fn new(sandbox: Arc<Sandbox>) -> RuleSet {
        RuleSet {
            sandbox,
            rules: BTreeMap::new(),
            index: TriggerIndex::default(),
        }
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Arc<CompiledRule>> {
        self.rules.get(id)
    }

    /// A new set with `rule` added or replacing the rule of the same id.
    pub fn with_rule(&self, rule: Arc<CompiledRule>) -> RuleSet {
        let mut rules = self.rules.clone();
        rules.insert(rule.rule.id.clone(), rule);
        self.rebuilt(rules)
    }

    /// A new set without the rule `id`.
    pub fn without_rule(&self, id: &str) -> RuleSet {
        let mut rules = self.rules.clone();
        rules.remove(id);
        self.rebuilt(rules)
    }

    fn rebuilt(&self, rules: BTreeMap<String, Arc<CompiledRule>>) -> RuleSet {
        let mut index = TriggerIndex::default();
        for compiled in rules.values().filter(|c| c.rule.spec.enabled) {
            for pattern in &compiled.patterns {
                index.insert(pattern, compiled.clone());
            }
        }
        RuleSet {
            sandbox: self.sandbox.clone(),
            rules,
            index,
        }
    }

    /// Enabled rules triggered by `event_type`, highest priority first, then by id.
    pub fn matching(&self, event_type: &str) -> Vec<&Arc<CompiledRule>> {
        let mut found: Vec<&Arc<CompiledRule>> = Vec::new();
        self.index.for_each_match(event_type, |c| found.push(c));
        found.sort_by(|a, b| {
            (b.rule.spec.priority, &a.rule.id).cmp(&(a.rule.spec.priority, &b.rule.id))
        });
        found.dedup_by(|a, b| a.rule.id == b.rule.id);
        found
    }

    /// Evaluates every enabled rule `event` triggers. A failing rule contributes a failure and no
    /// actions; the others run regardless.
    pub fn evaluate(&self, event: &CloudEvent, profile: &Profile) -> Evaluation {
        evaluate_rules(
            &self.sandbox,
            &self.matching(&event.event_type),
            event,
            profile,
        )
    }
}

/// Evaluates the given rules in order, as `RuleSet::evaluate` does; also used to dry-run a draft.
pub fn evaluate_rules(
    sandbox: &Sandbox,
    rules: &[&Arc<CompiledRule>],
    event: &CloudEvent,
    profile: &Profile,
) -> Evaluation {
    let mut evaluation = Evaluation::default();
    if rules.is_empty() {
        return evaluation;
    }
    let mut scope = Sandbox::scope_for(event, profile);
    for compiled in rules {
        evaluation.matched.push(compiled.origin.label().to_owned());
        match sandbox.run(&mut scope, &compiled.ast) {
            Ok(output) => {
                evaluation.logs.extend(output.logs);
                if output.effects != Effects::default() {
                    evaluation
                        .effects
                        .push((compiled.rule.id.clone(), output.effects));
                }
                let origin = &compiled.origin;
                evaluation
                    .actions
                    .extend(output.actions.into_iter().enumerate().map(
                        |(position, (channel, data))| Action {
                            channel,
                            data,
                            origin: origin.clone(),
                            position: position as u32,
                        },
                    ));
            }
            Err(failure) => evaluation.failures.push(RuleFailure {
                rule: compiled.rule.id.clone(),
                version: compiled.rule.version,
                failure,
            }),
        }
    }
    evaluation
}
