//! E-mail end to end, against a real SMTP server on loopback: a rule's `email(…)` action is
//! rendered from its stored template with the action's and the profile's variables and sent
//! through the relay with `List-Unsubscribe`; following that link opts the profile out, so the
//! next e-mail is suppressed with reason `consent`. Transient refusals are retried, permanent
//! ones dead-lettered, a stalled relay times out and is retried, an unknown template waits in
//! the DLQ until it exists and the letter is re-driven.

use std::time::{Duration, Instant};

use nudge_tests::smtp::{Answer, Mail, SmtpServer};
use nudge_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn start(nats: &NatsServer, smtp: &SmtpServer, extra: &[(&str, &str)]) -> Nudge {
    let url = smtp.url();
    let mut env = vec![
        ("NUDGE_SMTP_URL", url.as_str()),
        ("NUDGE_SMTP_STARTTLS", "never"),
        ("NUDGE_EMAIL_FROM", "Shop <shop@example.com>"),
    ];
    env.extend_from_slice(extra);
    Nudge::start(nats, &env).await
}

async fn put_template(nudge: &Nudge, name: &str, template: Value) {
    let (status, body) = nudge
        .api(
            Method::PUT,
            &format!("/api/email-templates/{name}"),
            Some(template),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
}

fn cart_template() -> Value {
    json!({
        "subject": "Your cart: {{ total }} €",
        "html": "<p>Hi {{ profile.attributes.name }}, {{ note | default('') }}</p>\
                 <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        "text": "Hi {{ profile.attributes.name }}, your cart holds {{ total }} €.",
    })
}

async fn cart_rule(nudge: &Nudge, template: &str) {
    nudge
        .put_rule(
            "cart-mail",
            json!({"name": "cart mail", "triggers": ["cart.updated"],
                "script": format!(r#"email(#{{ to: profile.attributes.email, template: "{template}",
                    total: event.data.total, note: event.data.note ?? "" }})"#)}),
        )
        .await;
}

/// Tells nudge who `user` is: a name and an address.
async fn identify(js: &async_nats::jetstream::Context, user: &str) {
    publish(
        js,
        &event(
            &format!("id-{user}"),
            "profile.identified",
            user,
            json!({"name": "Ada", "email": format!("{user}@example.com")}),
        ),
    )
    .await;
}

async fn mails_to(nudge: &Nudge, smtp: &SmtpServer, address: &str, count: usize) -> Vec<Mail> {
    let started = Instant::now();
    loop {
        let mails: Vec<Mail> = smtp
            .received()
            .into_iter()
            .filter(|m| m.to.iter().any(|to| to == address))
            .collect();
        if mails.len() >= count {
            return mails;
        }
        if started.elapsed() > WAIT {
            let (_, dlq) = nudge.api_get("/api/dlq").await;
            panic!(
                "waited {WAIT:?} for {count} e-mail(s) to {address}; dead letters: {dlq}\nlog:\n{}",
                nudge.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_arrives_rendered_and_its_unsubscribe_link_opts_the_profile_out() {
    let nats = NatsServer::start();
    let smtp = SmtpServer::start().await;
    let nudge = start(&nats, &smtp, &[]).await;
    let js = nats.jetstream().await;
    put_template(&nudge, "cart", cart_template()).await;
    cart_rule(&nudge, "cart").await;
    identify(&js, "ada").await;
    publish(
        &js,
        &event(
            "c-1",
            "cart.updated",
            "ada",
            json!({"total": 120, "note": "<b>5% off</b>"}),
        ),
    )
    .await;

    let mail = mails_to(&nudge, &smtp, "ada@example.com", 1)
        .await
        .remove(0);
    assert_eq!(mail.from, "shop@example.com");
    let parsed = mail.parsed();
    assert_eq!(parsed.subject(), Some("Your cart: 120 €"));
    let html = parsed.body_html(0).expect("an HTML part").into_owned();
    assert!(
        html.contains("Hi Ada, &lt;b&gt;5% off&lt;&#x2f;b&gt;"),
        "escaped: {html}"
    );
    let text = parsed.body_text(0).expect("a text part").into_owned();
    assert!(text.contains("your cart holds 120 €"), "{text}");
    let unsubscribe = mail.header("List-Unsubscribe").expect("List-Unsubscribe");
    let link = unsubscribe.trim_matches(['<', '>']).to_owned();
    assert!(link.starts_with(&nudge.url("/unsubscribe/")), "{link}");
    assert!(
        html.contains(&link),
        "the template's link is the header's: {html}"
    );
    assert_eq!(
        mail.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let message_id = mail.header("Message-ID").expect("Message-ID");

    // The profile's page: the e-mail delivered, through the relay, with the action's id.
    let (_, log) = nudge.api_get("/api/profiles/ada/deliveries").await;
    let delivery = &log["deliveries"][0];
    assert_eq!(delivery["channel"], "email", "{log}");
    assert_eq!(delivery["state"], "delivered", "{log}");
    assert_eq!(delivery["history"][0]["status"], 250, "{log}");
    let action_id = delivery["action_id"].as_str().unwrap();
    assert!(
        message_id.contains(action_id),
        "{message_id} names {action_id}"
    );

    // The link: a page asking to confirm (a GET opts nobody out), then the button's POST.
    let client = reqwest::Client::new();
    let page = client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<form method=\"post\">")
    );
    let (_, profile) = nudge.api_get("/api/profiles/ada").await;
    assert_ne!(profile["consent"]["email"], false, "a GET changes nothing");
    let done = client.post(&link).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    until("the opt-out applied", async || {
        let (_, profile) = nudge.api_get("/api/profiles/ada").await;
        (profile["consent"]["email"] == false).then_some(())
    })
    .await;

    // The next cart: decided, suppressed for consent, never sent.
    publish(
        &js,
        &event("c-2", "cart.updated", "ada", json!({"total": 80})),
    )
    .await;
    let trace = until("c-2 decided", async || {
        let (_, trace) = nudge.api_get("/api/profiles/ada/trace").await;
        let latest = trace["decisions"][0].clone();
        (latest["event_id"] == "c-2").then_some(latest)
    })
    .await;
    assert_eq!(trace["suppressed"][0]["reason"], "consent", "{trace}");
    assert_eq!(trace["suppressed"][0]["channel"], "email", "{trace}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.received().len(), 1, "no second e-mail");

    // A link nudge did not sign: refused, naming the token.
    let forged = client
        .post(nudge.url("/unsubscribe/ZW1haWwAYm9i.AAAAAAAAAAAAAAAAAAAAAA"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    assert!(forged.text().await.unwrap().contains("token"));
    let metrics = nudge.metrics().await;
    assert!(
        metrics.contains("nudge_unsubscribes_total{channel=\"email\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nudge_deliveries_total{channel=\"email\",outcome=\"delivered\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_failures_are_retried_refused_timed_out_and_redriven() {
    let nats = NatsServer::start();
    let smtp = SmtpServer::start().await;
    let nudge = start(
        &nats,
        &smtp,
        &[
            ("NUDGE_EMAIL_RETRY_BASE_MS", "200"),
            ("NUDGE_EMAIL_RETRY_MAX_MS", "400"),
            ("NUDGE_EMAIL_MAX_ATTEMPTS", "3"),
            ("NUDGE_EMAIL_BREAKER_FAILURES", "100"),
            ("NUDGE_SMTP_TIMEOUT_MS", "1000"),
        ],
    )
    .await;
    let js = nats.jetstream().await;
    put_template(&nudge, "cart", cart_template()).await;
    cart_rule(&nudge, "cart").await;
    for user in ["bo", "cy", "di", "ed"] {
        identify(&js, user).await;
    }

    // 451 (try later) twice, then accepted: delivered once.
    smtp.answer(Answer::Refuse(451));
    publish(
        &js,
        &event("t-1", "cart.updated", "bo", json!({"total": 1})),
    )
    .await;
    until("two refused attempts", async || {
        (smtp.attempts() >= 2).then_some(())
    })
    .await;
    smtp.answer(Answer::Accept);
    mails_to(&nudge, &smtp, "bo@example.com", 1).await;

    // 550 (refused for good): dead-lettered at once, naming the code.
    smtp.answer(Answer::Refuse(550));
    let before = smtp.attempts();
    publish(
        &js,
        &event("t-2", "cart.updated", "cy", json!({"total": 2})),
    )
    .await;
    let refused = nudge.dead_letter_of("t-2").await;
    assert_eq!(refused["subject"], "delivery.email", "{refused}");
    assert_eq!(refused["kind"], "delivery_refused", "{refused}");
    assert!(
        refused["reason"].as_str().unwrap().contains("550"),
        "{refused}"
    );
    assert_eq!(smtp.attempts() - before, 1, "not retried");

    // A relay that takes the message and never answers: each attempt times out, then the DLQ.
    smtp.answer(Answer::Stall);
    publish(
        &js,
        &event("t-3", "cart.updated", "di", json!({"total": 3})),
    )
    .await;
    let stalled = nudge.dead_letter_of("t-3").await;
    assert_eq!(stalled["kind"], "delivery_failed", "{stalled}");
    let reason = stalled["reason"].as_str().unwrap();
    assert!(
        reason.contains("after 3 attempts") && reason.contains("smtp_timeout_ms"),
        "{reason}"
    );

    // A template nobody wrote: waits in the DLQ; written and re-driven, the e-mail goes.
    smtp.answer(Answer::Accept);
    cart_rule(&nudge, "welcome-back").await;
    publish(
        &js,
        &event("t-4", "cart.updated", "ed", json!({"total": 4})),
    )
    .await;
    let missing = nudge.dead_letter_of("t-4").await;
    assert_eq!(missing["kind"], "no_template", "{missing}");
    assert!(
        missing["reason"]
            .as_str()
            .unwrap()
            .contains("`welcome-back`"),
        "{missing}"
    );
    put_template(
        &nudge,
        "welcome-back",
        json!({"subject": "Welcome back", "text": "Still {{ total }} in your cart."}),
    )
    .await;
    let sequence = missing["sequence"].as_u64().unwrap();
    let (status, answer) = nudge
        .api(Method::POST, &format!("/api/dlq/{sequence}/redrive"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mail = mails_to(&nudge, &smtp, "ed@example.com", 1).await.remove(0);
    assert_eq!(mail.parsed().subject(), Some("Welcome back"));
    let parsed = mail.parsed();
    let raw = String::from_utf8_lossy(&mail.data);
    assert!(
        !raw.contains("text/html"),
        "a text-only template sends no HTML part: {raw}"
    );
    assert!(
        parsed
            .body_text(0)
            .unwrap()
            .contains("Still 4 in your cart.")
    );
    let (_, stats) = nudge.api_get("/api/stats").await;
    let relay = &stats["email"][format!("127.0.0.1:{}", smtp.port)];
    assert!(relay["fired"].as_u64().unwrap() >= 2, "{stats}");
    assert!(relay["errors"].as_u64().unwrap() >= 5, "{stats}");
    // Stalled attempts waited out smtp_timeout_ms (1 s): they are the slowest 1%.
    let p99_ms = relay["call_p99_ms"].as_f64().unwrap();
    assert!((1_000.0..=2_000.0).contains(&p99_ms), "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_are_versioned_checked_and_previewed() {
    let nats = NatsServer::start();
    let nudge = Nudge::start(&nats, &[]).await;
    let path = "/api/email-templates/cart";
    let (status, created) = nudge.api(Method::PUT, path, Some(cart_template())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);

    // A part that does not compile: 422 naming the part and the line; nothing stored.
    let (status, error) = nudge
        .api(
            Method::PUT,
            path,
            Some(json!({"subject": "Hi", "html": "<p>\n{% if %}</p>"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "html", "{error}");
    assert_eq!(error["error"]["line"], 2, "{error}");
    let (status, error) = nudge
        .api(Method::PUT, path, Some(json!({"subject": "", "text": "x"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "subject", "{error}");
    let (status, error) = nudge
        .api(
            Method::PUT,
            path,
            Some(json!({"subject": "x", "txt": "typo"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "txt", "{error}");

    // Edited from version 1: version 2; edited from a stale version: 409.
    let mut edit = cart_template();
    edit["subject"] = json!("Still {{ total }} € in your cart");
    edit["version"] = json!(1);
    let (status, changed) = nudge.api(Method::PUT, path, Some(edit.clone())).await;
    assert_eq!(
        (status, changed["version"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (status, _) = nudge.api(Method::PUT, path, Some(edit)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, versions) = nudge.api_get(&format!("{path}/versions")).await;
    assert_eq!(versions.as_array().unwrap().len(), 2, "{versions}");

    // The preview: the stored version, or edited text, with variables and a sample profile.
    let (status, preview) = nudge
        .api(
            Method::POST,
            &format!("{path}/preview"),
            Some(json!({"variables": {"total": 42}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["subject"], "Still 42 € in your cart");
    assert!(
        preview["html"]
            .as_str()
            .unwrap()
            .contains("Hi Ada Lovelace"),
        "{preview}"
    );
    assert!(
        preview["unsubscribe_url"]
            .as_str()
            .unwrap()
            .contains("/unsubscribe/")
    );
    let (status, error) = nudge
        .api(
            Method::POST,
            &format!("{path}/preview"),
            Some(json!({"subject": "Hi", "text": "{{ missing }}"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(error["error"]["field"], "text", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("default"),
        "says how to give a default: {error}"
    );

    // Deleted: gone from the list, its versions kept; audited.
    let (status, _) = nudge.api(Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = nudge.api_get("/api/email-templates").await;
    assert_eq!(list["templates"], json!([]));
    let (status, _) = nudge.api_get(path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let actions = nudge.audit_actions().await;
    for action in [
        "email_template.create",
        "email_template.update",
        "email_template.delete",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} in {actions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_without_starttls_gets_nothing_when_starttls_is_required() {
    let nats = NatsServer::start();
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    // smtp_starttls = required (the default), and the test relay offers no STARTTLS.
    let nudge = Nudge::start(
        &nats,
        &[
            ("NUDGE_SMTP_URL", url.as_str()),
            ("NUDGE_EMAIL_FROM", "shop@example.com"),
            ("NUDGE_SMTP_USERNAME", "shop"),
            ("NUDGE_SMTP_PASSWORD", "not-for-plaintext"),
            ("NUDGE_EMAIL_MAX_ATTEMPTS", "1"),
        ],
    )
    .await;
    let js = nats.jetstream().await;
    put_template(&nudge, "cart", cart_template()).await;
    cart_rule(&nudge, "cart").await;
    identify(&js, "fay").await;
    publish(
        &js,
        &event("s-1", "cart.updated", "fay", json!({"total": 5})),
    )
    .await;
    let letter = nudge.dead_letter_of("s-1").await;
    assert_eq!(letter["kind"], "delivery_failed", "{letter}");
    assert_eq!(
        smtp.attempts(),
        0,
        "no recipient, no message, no password sent in clear"
    );
    assert!(smtp.received().is_empty());
}
