//! `GET /api/rules/{id}/results`: a rule's funnel, conversions and uplift per version and over
//! all versions, summed from every partition's stored counts (see `crate::results`) and the
//! delivered counts (`crate::delivered`), so every instance answers the same; `GET
//! /api/results`: every experimenting rule's conversion rates and uplift, for the rules list;
//! `GET /api/plugins/{name}/results`: a plugin's, when its manifest declares a goal or holdout.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use nudge_rules::action::Origin;
use nudge_rules::calendar::parse_rfc3339;
use nudge_rules::experiment::report::{Period, rule_report};
use nudge_rules::state::DAY_MS;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, to_json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsQuery {
    /// First day counted, `YYYY-MM-DD` (UTC).
    from: Option<String>,
    /// Last day counted, `YYYY-MM-DD` (UTC).
    to: Option<String>,
    /// Only this version.
    version: Option<u64>,
}

fn day(field: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let ms = parse_rfc3339(&format!("{text}T00:00:00Z")).map_err(|_| {
        ApiError::bad_request(field, format!("`{text}` is not a date (YYYY-MM-DD)"))
    })?;
    Ok(Some(ms.div_euclid(DAY_MS)))
}

pub async fn results(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<ResultsQuery>,
) -> Result<Json<Value>, ApiError> {
    let rule = state.store.get(&id).await?;
    let experiment = Declared {
        key: &id,
        noun: "rule",
        version: rule.version,
        goal: to_json(&rule.spec.goal)?,
        holdout: rule.spec.holdout,
    };
    let mut answer = report(&state, experiment, &query).await?;
    answer["rule"] = json!(id);
    Ok(Json(answer))
}

/// `GET /api/plugins/{name}/results`: the same for a plugin whose manifest declares a goal or
/// holdout (its results go by `plugin:<name>`).
pub async fn plugin_results(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<ResultsQuery>,
) -> Result<Json<Value>, ApiError> {
    let plugin = state.plugins.get(&name).await?;
    let key = Origin::plugin_key(&name);
    let experiment = Declared {
        key: &key,
        noun: "plugin",
        version: plugin.version,
        goal: to_json(&plugin.manifest.goal)?,
        holdout: plugin.manifest.holdout,
    };
    let mut answer = report(&state, experiment, &query).await?;
    answer["plugin"] = json!(name);
    Ok(Json(answer))
}

/// What a rule or plugin declares, as its results answer shows it.
struct Declared<'a> {
    /// What its results go by: the rule id or `plugin:<name>`.
    key: &'a str,
    noun: &'static str,
    /// Its latest version.
    version: u64,
    goal: Value,
    holdout: Option<f64>,
}

async fn report(
    state: &AppState,
    declared: Declared<'_>,
    query: &ResultsQuery,
) -> Result<Value, ApiError> {
    let period = Period {
        from_day: day("from", query.from.as_deref())?,
        to_day: day("to", query.to.as_deref())?,
    };
    let unavailable = |e: anyhow::Error| ApiError::unavailable(format!("{e:#}"));
    let stored = crate::results::of(&state.profiles, declared.key)
        .await
        .map_err(unavailable)?;
    let delivered = crate::delivered::of(&state.js, declared.key)
        .await
        .map_err(unavailable)?;
    let empty = Default::default();
    let versions = stored.rules.get(declared.key).unwrap_or(&empty);
    if let Some(version) = query.version
        && !versions.contains_key(&version)
        && version > declared.version
    {
        return Err(ApiError::bad_request(
            "version",
            format!(
                "{} `{}` has no version {version} (its latest is {})",
                declared.noun, declared.key, declared.version
            ),
        ));
    }
    let min_profiles = state.settings.results_min_profiles;
    let selected = versions
        .iter()
        .filter(|(version, _)| query.version.is_none_or(|v| v == **version));
    let (versions, overall) = rule_report(selected, &delivered, period, min_profiles);
    Ok(json!({
        "version": declared.version,
        "goal": declared.goal,
        "holdout": declared.holdout,
        "min_profiles": min_profiles,
        "attribution": "last_touch",
        "interval": "newcombe_hybrid_score_95",
        "overall": to_json(&overall)?,
        "versions": to_json(&versions)?,
    }))
}

/// Every rule with results: over all its versions, each group's profiles, conversions and rate
/// and the uplift (or why not yet) — what the rules list shows beside each rule.
pub async fn summary(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let stored = crate::results::of_all(&state.profiles)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    let min_profiles = state.settings.results_min_profiles;
    let mut rules = serde_json::Map::new();
    for (rule, versions) in &stored.rules {
        let (_, overall) = rule_report(versions, &BTreeMap::new(), Period::default(), min_profiles);
        rules.insert(
            rule.clone(),
            json!({
                "triggered": overall.triggered,
                "treatment": to_json(&overall.treatment)?,
                "control": to_json(&overall.control)?,
                "uplift": to_json(overall.uplift)?,
                "reason": overall.reason,
            }),
        );
    }
    Ok(Json(
        json!({ "min_profiles": min_profiles, "rules": rules }),
    ))
}
