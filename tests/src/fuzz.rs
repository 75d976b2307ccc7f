//! The fuzz targets: what nudge does with untrusted bytes, and what it promises about them. Each
//! target takes arbitrary input and panics only when nudge breaks a promise — it panicked itself,
//! refused without naming the field, or decoded something that does not read back the same.
//!
//! `tests/fuzz/` runs them under libFuzzer (`scripts/fuzz`); `tests/tests/fuzz_corpus.rs` replays
//! their seed corpora and every input a run ever found through the same functions in the test
//! command, so a finding, once fixed, stays fixed.

use std::sync::{Arc, LazyLock};

use nudge::config::Settings;
use nudge::http::{error::parse_json, segment};
use nudge::pipeline;
use nudge::plugin::dispatch::{to_actions, wit_event, wit_profile};
use nudge::plugin::manifest::{Manifest, parse_manifest};
use nudge::plugin::set::LoadedPlugin;
use nudge::plugin::{PluginHost, PluginRecord};
use nudge_rules::decide::dry_run;
use nudge_rules::file::parse_rule_file;
use nudge_rules::schema::{self, Compatibility, CompiledSchema, Field};
use nudge_rules::{CloudEvent, CompiledRule, Decider, Profile, Rule, RuleSpec, Sandbox};
use serde_json::{Value, json};

/// A fuzz target: arbitrary bytes in, a panic when nudge breaks a promise.
pub type Target = fn(&[u8]);

/// Every target by name, as `tests/fuzz/fuzz_targets/` and the corpus directories name them.
pub const TARGETS: [(&str, Target); 8] = [
    ("cloudevent", cloudevent),
    ("segment", segment_call),
    ("rule_script", rule_script),
    ("rule_file", rule_file),
    ("manifest", manifest),
    ("component", component),
    ("http_json", http_json),
    ("schema", schema_document),
];

/// What the targets run with: the defaults an operator gets.
static SETTINGS: LazyLock<Settings> = LazyLock::new(Settings::default);

/// The event rules and plugins are evaluated against.
static EVENT: LazyLock<CloudEvent> = LazyLock::new(|| {
    CloudEvent::from_value(json!({
        "specversion": "1.0", "id": "e-1", "source": "fuzz", "type": "cart.updated",
        "subject": "user-1", "time": "2026-12-04T10:00:00Z",
        "data": {"total": 120.5, "items": [{"sku": "a", "qty": 2}], "currency": "EUR"}
    }))
    .expect("the fuzz event is a CloudEvent")
});

/// The NATS payload path: size limit, then CloudEvent decoding. An event that decodes writes
/// back to JSON that decodes to the same event; a refusal says why.
pub fn cloudevent(data: &[u8]) {
    match pipeline::decode(data, SETTINGS.max_event_bytes) {
        Ok(event) => {
            let written = serde_json::to_vec(&event).expect("a decoded event serializes");
            let again = CloudEvent::from_slice(&written).expect("a written event decodes");
            assert_eq!(again, event, "the event changed on its way through JSON");
            let _ = (event.nats_subject(), event.identity());
        }
        Err(reason) => assert!(!reason.is_empty(), "a refusal without a reason"),
    }
}

/// One Segment call (the first byte picks track, identify, page or screen; the rest is the
/// body): it becomes a CloudEvent or an error naming the Segment field at fault.
pub fn segment_call(data: &[u8]) {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let calls = [
        segment::Call::Track,
        segment::Call::Identify,
        segment::Call::Page,
        segment::Call::Screen,
    ];
    let call = calls[usize::from(*selector) % calls.len()];
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    match segment::to_cloudevent(call, &body, "2026-12-04T10:00:00Z", || "fresh".into()) {
        Ok(event) => assert!(!event.subject.is_empty() && !event.event_type.is_empty()),
        Err(error) => assert!(
            !segment::field_of(call, &error.field).is_empty(),
            "a refusal naming no field: {error}"
        ),
    }
}

/// A script as a marketer types it: compiled under the sandbox's limits, checked against a
/// schema as the editor's lint does, and decided once for an event (every limit applies).
pub fn rule_script(data: &[u8]) {
    let Ok(script) = std::str::from_utf8(data) else {
        return;
    };
    compile_and_decide(RuleSpec::new("fuzz", &["cart.*"], script));
}

/// A rule file (`<id>.toml`), as `nudge rule test` and the examples read them.
pub fn rule_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_rule_file("fuzz.toml", text) {
        Ok((_, spec)) => compile_and_decide(spec),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

fn compile_and_decide(spec: RuleSpec) {
    let sandbox = Arc::new(Sandbox::new(SETTINGS.rule_limits()));
    let compiled = match CompiledRule::compile(&sandbox, Rule::unsaved("fuzz", spec, "fuzz")) {
        Ok(compiled) => Arc::new(compiled),
        Err(error) => {
            assert!(!error.to_string().is_empty(), "a refusal without a reason");
            return;
        }
    };
    let plan = Field::of(&json!({
        "type": "object",
        "properties": {"total": {"type": "number"}, "currency": {"type": "string"}}
    }));
    let _ = schema::fields::check(&schema::data_reads(compiled.ast()), &plan, "cart.updated");
    let (policy, limits) = (
        SETTINGS.policy().expect("the default policy"),
        SETTINGS.state_limits(),
    );
    let decider = Decider {
        sandbox: &sandbox,
        policy: &policy,
        limits: &limits,
    };
    let decision = dry_run(&decider, &compiled, &EVENT, Profile::new("user-1"), 0);
    for failure in &decision.failures {
        assert_eq!(failure.rule, "fuzz", "a failure names its rule");
        assert!(!failure.failure.message.is_empty(), "a failure says why");
    }
}

/// A plugin manifest (the first byte picks TOML or JSON): parsed and validated, or refused with
/// a reason.
pub fn manifest(data: &[u8]) {
    let Some((selector, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    match parse_manifest(text, selector % 2 == 0) {
        Ok(manifest) => {
            if let Err(error) = manifest.validate() {
                assert!(!error.to_string().is_empty());
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

/// The host every component input is compiled by (compiling is per input; the engine is not).
static HOST: LazyLock<PluginHost> = LazyLock::new(|| {
    let mut limits = SETTINGS.plugin_limits();
    limits.cache_dir = None;
    PluginHost::new(limits, false).expect("a plugin host")
});

/// Uploaded component bytes: compiled and linked as an upload is, and when that succeeds, called
/// once for an event under the plugin limits.
pub fn component(data: &[u8]) {
    let code = match HOST.compile(data) {
        Ok(code) => code,
        Err(reason) => {
            assert!(!reason.is_empty(), "a refusal without a reason");
            return;
        }
    };
    let record = PluginRecord {
        name: "fuzz".into(),
        version: 1,
        sha256: code.sha256.clone(),
        size_bytes: data.len() as u64,
        contract: code.contract_version().to_owned(),
        manifest: Manifest::default(),
        updated_by: "fuzz".into(),
        updated_at: "2026-12-04T10:00:00Z".into(),
    };
    let plugin = LoadedPlugin::new(record, code);
    let profile = Profile::new("user-1");
    let (result, _) = HOST.handle(
        &plugin.instances,
        &wit_event(&EVENT),
        &wit_profile(&profile),
    );
    let _ = result.and_then(|actions| to_actions(&plugin, actions));
}

/// An API request body (the first byte picks which: a rule, a plugin manifest, a webhook
/// endpoint, any JSON): parsed as the handlers do, or a 400 naming the field.
pub fn http_json(data: &[u8]) {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let refusal = match selector % 4 {
        0 => parse_json::<RuleSpec>(body).map(|spec| drop(spec.validate())),
        1 => parse_json::<Manifest>(body).map(|m| drop(m.validate())),
        2 => parse_json::<nudge::delivery::endpoints::EndpointSpec>(body).map(drop),
        _ => parse_json::<Value>(body).map(drop),
    };
    if let Err(error) = refusal {
        assert_eq!(error.status, 400, "a body refused with {}", error.status);
        assert!(
            error.field.as_deref().is_some_and(|f| !f.is_empty()),
            "a 400 naming no field: {}",
            error.message
        );
    }
}

/// A JSON Schema as a developer registers it: compiled (or refused with a reason), a sample
/// checked against it, and compatible with itself in every mode; and the schema inferred from
/// any JSON value accepts that value.
pub fn schema_document(data: &[u8]) {
    let Ok(document) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(compiled) = CompiledSchema::compile(&document) {
        let _ = compiled.violations(&EVENT.data);
        for mode in [
            Compatibility::Backward,
            Compatibility::Forward,
            Compatibility::Full,
        ] {
            let findings = schema::compat::compare(&document, &document, mode);
            assert!(
                findings.reasons.is_empty(),
                "a schema is incompatible with itself ({mode:?}): {:?}",
                findings.reasons
            );
        }
    }
    let inferred = schema::infer::infer([&document]);
    let compiled = CompiledSchema::compile(&inferred).expect("an inferred schema compiles");
    assert!(
        compiled.is_valid(&document),
        "the schema inferred from a value refuses it: {inferred}"
    );
}
