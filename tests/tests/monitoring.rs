//! The operators' monitoring kit, held honest by a real Prometheus: `deploy/prometheus/` loads
//! (`promtool` checks the configuration and the alerting rules), scrapes a nudge under load, and
//! every PromQL expression of the Grafana dashboard and of the alerts evaluates and returns
//! series — no dead panel, no alert on a metric that does not exist — and the alerts for an open
//! breaker, a growing DLQ and a failing rule go pending when those happen.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nudge_tests::prometheus::{Prometheus, deploy_dir, promtool};
use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Every `expr` of the dashboard's panels, with Grafana's variables as a user with "All"
/// instances over a short range would send them.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy_dir().join("grafana/dashboards/nudge.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL target");
            exprs.push((
                format!("{} / {}", panel["title"], target["refId"]),
                expr.replace("$__rate_interval", "1m")
                    .replace("$instance", ".*"),
            ));
        }
    }
    // The instance picker's own query.
    exprs.push(("variable instance".into(), "nudge_ready".into()));
    exprs
}

/// The metric names an expression reads (`nudge_…`, `process_…`, `up`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in expr.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if (word.starts_with("nudge_") || word.starts_with("process_") || word == "up") && c != '('
        {
            names.insert(word.clone());
        }
        word.clear();
    }
    names
}

/// Events the whole time Prometheus watches: orders (a push, capped; a webhook to a live and a
/// dead endpoint; a looping rule), plugin calls that run out of time, poison, HTTP ingest.
async fn steady_load(nats: &NatsServer, nudge: &Nudge, until: Instant) {
    let js = nats.jetstream().await;
    let mut n = 0u64;
    while Instant::now() < until {
        let to = if n.is_multiple_of(2) { "down" } else { "up" };
        let data = json!({ "to": to, "n": n });
        let order = event(
            &format!("o-{n}"),
            "order.placed",
            &format!("user-{}", n % 4),
            data,
        );
        publish(&js, &order).await;
        if n % 10 == 5 {
            let fine = event(&format!("f-{n}"), "hostile.fine", "user-h", json!({}));
            publish(&js, &fine).await;
        }
        if n.is_multiple_of(10) {
            let hostile = event(&format!("h-{n}"), "hostile.loop", "user-h", json!({}));
            publish(&js, &hostile).await;
            js.publish(format!("events.poison.{n}"), "not a CloudEvent".into())
                .await
                .unwrap()
                .await
                .unwrap();
            let track =
                json!({"userId": "u1", "event": "Page Viewed", "messageId": format!("t-{n}")});
            let answer = reqwest::Client::new()
                .post(nudge.url("/v1/track"))
                .basic_auth(WRITE_KEY, Some(""))
                .json(&track)
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success());
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_and_alert_expression_returns_series_in_a_real_prometheus() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(
        &nats,
        &[
            ("NUDGE_CAPS", "{push={per_day=3}}"),
            ("NUDGE_WEBHOOK_BREAKER_FAILURES", "3"),
            ("NUDGE_WEBHOOK_BREAKER_COOL_DOWN_MS", "600000"),
            ("NUDGE_WEBHOOK_RETRY_BASE_MS", "100"),
            ("NUDGE_WEBHOOK_RETRY_MAX_MS", "200"),
            ("NUDGE_WEBHOOK_MAX_ATTEMPTS", "1000"),
        ],
    )
    .await;
    let (down, up) = (
        receiver::Receiver::start().await,
        receiver::Receiver::start().await,
    );
    down.answer(503, None);
    for (name, receiver) in [("down", &down), ("up", &up)] {
        let (status, body) = nudge
            .api(
                Method::PUT,
                &format!("/api/webhooks/{name}"),
                Some(json!({"url": receiver.url})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    nudge
        .put_rule(
            "order",
            json!({"name": "order", "triggers": ["order.placed"],
                   "script": "push(#{ title: \"thanks\" }); webhook(event.data.to, #{})"}),
        )
        .await;
    nudge
        .put_rule(
            "looping",
            json!({"name": "looping", "triggers": ["order.placed"], "script": "loop {}"}),
        )
        .await;
    nudge
        .put_plugin(
            "hostile",
            plugin_wasm("hostile"),
            json!({ "triggers": ["hostile.*"] }),
        )
        .await;

    let target = nudge.base_url.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target);
    promtool(
        &prometheus.config_dir,
        &["check", "config", "prometheus.yml"],
    );
    let checked = promtool(&prometheus.config_dir, &["check", "rules", "alerts.yml"]);
    let shipped_alerts = std::fs::read_to_string(deploy_dir().join("prometheus/alerts.yml"))
        .unwrap()
        .matches("- alert: ")
        .count();
    assert!(
        checked.contains(&format!("SUCCESS: {shipped_alerts} rules found")),
        "{checked}"
    );

    let load = steady_load(&nats, &nudge, Instant::now() + Duration::from_secs(90));
    let check = async {
        let exprs = dashboard_exprs();
        let deadline = Instant::now() + Duration::from_secs(80);
        loop {
            let mut dead = Vec::new();
            for (name, expr) in &exprs {
                match prometheus.query(expr).await {
                    Ok(series) if !series.is_empty() => {}
                    Ok(_) => dead.push(format!("{name}: no series for {expr}")),
                    Err(error) => panic!("{name}: Prometheus refuses `{expr}`: {error}"),
                }
            }
            let rules = alert_rules(&prometheus).await;
            for rule in &rules {
                for metric in metric_names(rule["query"].as_str().unwrap()) {
                    let series = prometheus.query(&metric).await.unwrap();
                    if series.is_empty() {
                        dead.push(format!("alert {}: no series for {metric}", rule["name"]));
                    }
                }
                if rule["health"] != "ok" {
                    dead.push(format!(
                        "alert {} is {}: {}",
                        rule["name"], rule["health"], rule["lastError"]
                    ));
                }
            }
            let pending: BTreeSet<&str> = rules
                .iter()
                .filter(|r| r["state"] == "pending" || r["state"] == "firing")
                .map(|r| r["name"].as_str().unwrap())
                .collect();
            for expected in [
                "NudgeDeliveryBreakerOpen",
                "NudgeDeadLettersGrowing",
                "NudgeRuleErrors",
            ] {
                if !pending.contains(expected) {
                    dead.push(format!("alert {expected} is not pending"));
                }
            }
            if rules.len() != shipped_alerts {
                dead.push(format!(
                    "Prometheus loaded {} alerts of {shipped_alerts}",
                    rules.len()
                ));
            }
            if dead.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after 80 s of load:\n{}\nprometheus log:\n{}",
                dead.join("\n"),
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        _ = load => panic!("the load ended before every expression returned series"),
        _ = check => {}
    }

    // Every metric nudge exports is in the README's table.
    let readme = std::fs::read_to_string(deploy_dir().join("../README.md")).unwrap();
    let metrics_table = readme.split_once("\n## Metrics\n").unwrap().1;
    for line in nudge.metrics().await.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.split(' ').next())
        {
            assert!(
                metrics_table.contains(&format!("`{name}")),
                "README lacks {name}"
            );
        }
    }
}

/// The alerting rules as Prometheus loaded them: name, query, health, state.
async fn alert_rules(prometheus: &Prometheus) -> Vec<Value> {
    let data = prometheus.api("rules", &[("type", "alert")]).await.unwrap();
    data["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}
