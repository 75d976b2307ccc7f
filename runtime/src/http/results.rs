//! `GET /api/rules/{id}/results`: a rule's funnel, conversions and uplift per version and over
//! all versions, summed from every partition's stored counts (see `crate::results`), so every
//! instance answers the same.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
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
    let period = Period {
        from_day: day("from", query.from.as_deref())?,
        to_day: day("to", query.to.as_deref())?,
    };
    let stored = crate::results::of_rule(&state.profiles, &id)
        .await
        .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    let empty = Default::default();
    let versions = stored.rules.get(&id).unwrap_or(&empty);
    if let Some(version) = query.version
        && !versions.contains_key(&version)
        && version > rule.version
    {
        return Err(ApiError::bad_request(
            "version",
            format!(
                "rule `{id}` has no version {version} (its latest is {})",
                rule.version
            ),
        ));
    }
    let min_profiles = state.settings.results_min_profiles;
    let selected = versions
        .iter()
        .filter(|(version, _)| query.version.is_none_or(|v| v == **version));
    let (versions, overall) = rule_report(selected, period, min_profiles);
    Ok(Json(json!({
        "rule": id,
        "version": rule.version,
        "goal": to_json(&rule.spec.goal)?,
        "holdout": rule.spec.holdout,
        "min_profiles": min_profiles,
        "attribution": "last_touch",
        "interval": "newcombe_hybrid_score_95",
        "overall": to_json(&overall)?,
        "versions": to_json(&versions)?,
    })))
}
