//! `POST /api/rules/{id}/backtest`: the rule (saved, an older version, or a draft in the body)
//! over the stored events of a time range; see `crate::backtest`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use nudge_rules::calendar::parse_rfc3339;
use nudge_rules::duration::parse_duration;
use nudge_rules::{Rule, RuleSpec};
use serde::Deserialize;

use super::error::{Body, parse_json};
use super::{ApiError, AppState};
use crate::backtest::{self, Backtest, Outcome};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BacktestBody {
    /// RFC 3339; default: `to` minus `last`.
    from: Option<String>,
    /// RFC 3339; default: now.
    to: Option<String>,
    /// How far back from `to` when `from` is not given: `"24h"`, `"7d"` (default `"24h"`).
    last: Option<String>,
    /// An unsaved draft to backtest instead of the stored rule.
    rule: Option<RuleSpec>,
    /// A stored version instead of the current one.
    version: Option<u64>,
    /// Samples to show (default `backtest_sample`).
    sample: Option<usize>,
}

fn time_field(field: &str, text: &Option<String>) -> Result<Option<i64>, ApiError> {
    text.as_deref()
        .map(|t| parse_rfc3339(t).map_err(|m| ApiError::bad_request(field, m)))
        .transpose()
}

pub async fn backtest(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Outcome>, ApiError> {
    let body: BacktestBody = if body.is_empty() {
        BacktestBody::default()
    } else {
        parse_json(&body)?
    };
    let to_ms = time_field("to", &body.to)?.unwrap_or_else(|| state.clock.now_ms());
    let from_ms = match time_field("from", &body.from)? {
        Some(from) => from,
        None => {
            let last = parse_duration(body.last.as_deref().unwrap_or("24h"))
                .map_err(|m| ApiError::bad_request("last", m))?;
            to_ms - i64::try_from(last.as_millis()).unwrap_or(i64::MAX / 2)
        }
    };
    if from_ms > to_ms {
        return Err(ApiError::bad_request("from", "must not be after `to`"));
    }
    let rules = state.rules.load();
    let rule = match (body.rule, body.version) {
        (Some(spec), _) => Rule::unsaved(&id, spec, "draft"),
        (None, Some(version)) => state.store.version(&id, version).await?.record,
        (None, None) => state.store.get(&id).await?,
    };
    let compiled = backtest::compile(rules.sandbox(), rule)?;
    let outcome = backtest::run(
        &state.js,
        Backtest {
            sandbox: rules.sandbox().clone(),
            rule: compiled,
            policy: state.policy.clone(),
            limits: state.settings.state_limits(),
            from_ms,
            to_ms,
            sample: body
                .sample
                .unwrap_or(state.settings.backtest_sample)
                .min(1_000),
            max_events: state.settings.backtest_max_events,
        },
    )
    .await
    .map_err(|e| ApiError::unavailable(format!("{e:#}")))?;
    Ok(Json(outcome))
}
