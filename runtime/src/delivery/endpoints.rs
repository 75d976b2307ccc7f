//! Webhook endpoints in KV `NUDGE_WEBHOOKS` (key: the endpoint's name, which a rule's
//! `webhook(name, …)` addresses): where to POST, the timeout, extra headers, a rate limit,
//! whether it is enabled, and its signing secrets. Secrets are stored as they are (signing needs
//! them, a digest would not do) and answered only by the PUT that creates the endpoint and by a
//! rotation; everything else shows a fingerprint.

use std::collections::BTreeMap;

use async_nats::jetstream::kv;
use axum::http::{HeaderName, HeaderValue};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::signature::{SigningKey, generate_secret};
use crate::config::Settings;
use nudge_rules::calendar::rfc3339;

pub const WEBHOOK_NAME_MAX_BYTES: usize = 64;
pub const WEBHOOK_URL_MAX_BYTES: usize = 2_048;
pub const WEBHOOK_HEADER_VALUE_MAX_BYTES: usize = 1_024;
pub const WEBHOOK_RATE_MAX_PER_S: u32 = 10_000;

/// Headers every delivery sets itself, which an endpoint's own headers may not replace.
pub const RESERVED_HEADERS: [&str; 9] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
];

/// What `PUT /api/webhooks/{name}` takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub url: String,
    /// Default: `webhook_timeout_ms`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deliveries per second at most; none: as fast as the endpoint answers.
    #[serde(default)]
    pub rate_per_s: Option<u32>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// One signing secret. The newest comes first; a rotated-out one signs until `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Secret {
    pub secret: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub timeout_ms: u64,
    pub headers: BTreeMap<String, String>,
    pub rate_per_s: Option<u32>,
    pub enabled: bool,
    /// Why delivery switched it off (the endpoint answered 410 Gone), until a PUT enables it.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    pub secrets: Vec<Secret>,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

impl Endpoint {
    /// The endpoint as the API shows it: each secret as a fingerprint (the first 8 hex digits
    /// of its SHA-256), never its text.
    pub fn public(&self) -> Value {
        let secrets: Vec<Value> = self
            .secrets
            .iter()
            .map(|s| {
                json!({
                    "fingerprint": &crate::access::digest(&s.secret)[..8],
                    "created_at": s.created_at,
                    "expires_at": s.expires_at_ms.map(rfc3339),
                })
            })
            .collect();
        json!({
            "name": self.name,
            "url": self.url,
            "timeout_ms": self.timeout_ms,
            "headers": self.headers,
            "rate_per_s": self.rate_per_s,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "secrets": secrets,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        })
    }

    /// The keys a delivery at `now_ms` signs with: every secret not yet expired.
    pub fn signing_keys(&self, now_ms: i64) -> Vec<SigningKey> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at_ms.is_none_or(|at| at > now_ms))
            .filter_map(|s| SigningKey::parse(&s.secret).ok())
            .collect()
    }

    /// Makes a new secret the first; the current ones sign on for `overlap_ms`, and expired
    /// ones are dropped. Answers the new secret.
    fn rotate(&mut self, now_ms: i64, overlap_ms: i64) -> String {
        self.secrets
            .retain(|s| s.expires_at_ms.is_none_or(|at| at > now_ms));
        for secret in &mut self.secrets {
            let until = now_ms.saturating_add(overlap_ms);
            secret.expires_at_ms = Some(secret.expires_at_ms.map_or(until, |at| at.min(until)));
        }
        let secret = generate_secret();
        self.secrets.insert(
            0,
            Secret {
                secret: secret.clone(),
                created_at: rfc3339(now_ms),
                expires_at_ms: None,
            },
        );
        secret
    }
}

/// Why a webhook change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("no webhook `{0}`")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("NATS: {0}")]
    Nats(String),
}

impl WebhookError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        WebhookError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    fn nats(error: impl std::fmt::Display) -> Self {
        WebhookError::Nats(error.to_string())
    }
}

pub fn check_name(name: &str) -> Result<(), WebhookError> {
    let valid = !name.is_empty()
        && name.len() <= WEBHOOK_NAME_MAX_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(WebhookError::invalid(
            "name",
            format!("1 to {WEBHOOK_NAME_MAX_BYTES} letters, digits, '-' or '_'"),
        ))
    }
}

/// The spec's fields, checked against the limits; an error names the field at fault.
fn checked(
    spec: EndpointSpec,
    settings: &Settings,
) -> Result<(String, u64, BTreeMap<String, String>), WebhookError> {
    if spec.url.len() > WEBHOOK_URL_MAX_BYTES {
        return Err(WebhookError::invalid(
            "url",
            format!("at most {WEBHOOK_URL_MAX_BYTES} bytes"),
        ));
    }
    let url = url::Url::parse(&spec.url)
        .map_err(|e| WebhookError::invalid("url", format!("not an absolute URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(WebhookError::invalid(
            "url",
            "must be an http:// or https:// URL with a host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::invalid(
            "url",
            "must not hold credentials; send them in `headers` (e.g. Authorization)",
        ));
    }
    let timeout_ms = spec.timeout_ms.unwrap_or(settings.webhook_timeout_ms);
    if !(1..=settings.webhook_timeout_max_ms).contains(&timeout_ms) {
        return Err(WebhookError::invalid(
            "timeout_ms",
            format!(
                "1 to {} (webhook_timeout_max_ms)",
                settings.webhook_timeout_max_ms
            ),
        ));
    }
    if spec.headers.len() > settings.webhook_headers_max {
        return Err(WebhookError::invalid(
            "headers",
            format!(
                "at most {} headers (webhook_headers_max)",
                settings.webhook_headers_max
            ),
        ));
    }
    let mut headers = BTreeMap::new();
    for (name, value) in spec.headers {
        let field = format!("headers.{name}");
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| WebhookError::invalid(&field, "not a valid HTTP header name"))?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err(WebhookError::invalid(
                &field,
                "is set by nudge on every delivery and cannot be replaced",
            ));
        }
        if value.len() > WEBHOOK_HEADER_VALUE_MAX_BYTES || HeaderValue::from_str(&value).is_err() {
            return Err(WebhookError::invalid(
                &field,
                format!(
                    "must be visible ASCII text of at most {WEBHOOK_HEADER_VALUE_MAX_BYTES} bytes"
                ),
            ));
        }
        headers.insert(parsed.as_str().to_owned(), value);
    }
    if let Some(rate) = spec.rate_per_s
        && !(1..=WEBHOOK_RATE_MAX_PER_S).contains(&rate)
    {
        return Err(WebhookError::invalid(
            "rate_per_s",
            format!("1 to {WEBHOOK_RATE_MAX_PER_S} deliveries per second"),
        ));
    }
    Ok((url.to_string(), timeout_ms, headers))
}

/// What a PUT did.
pub struct Put {
    pub before: Option<Endpoint>,
    pub after: Endpoint,
    /// The new endpoint's secret (a PUT that creates one answers it, once).
    pub secret: Option<String>,
}

#[derive(Clone)]
pub struct EndpointStore {
    kv: kv::Store,
}

impl EndpointStore {
    pub fn new(kv: kv::Store) -> Self {
        EndpointStore { kv }
    }

    async fn entry(&self, name: &str) -> Result<Option<(Endpoint, u64)>, WebhookError> {
        check_name(name)?;
        let Some(entry) = self.kv.entry(name).await.map_err(WebhookError::nats)? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let endpoint = serde_json::from_slice(&entry.value)
            .map_err(|e| WebhookError::Nats(format!("webhook `{name}` is unreadable: {e}")))?;
        Ok(Some((endpoint, entry.revision)))
    }

    pub async fn get(&self, name: &str) -> Result<Endpoint, WebhookError> {
        self.entry(name)
            .await?
            .map(|(endpoint, _)| endpoint)
            .ok_or_else(|| WebhookError::NotFound(name.to_owned()))
    }

    /// Creates the endpoint (with a new secret) or changes it (its secrets stay).
    pub async fn put(
        &self,
        name: &str,
        spec: EndpointSpec,
        by: &str,
        settings: &Settings,
        now_ms: i64,
    ) -> Result<Put, WebhookError> {
        check_name(name)?;
        let rate_per_s = spec.rate_per_s;
        let enabled = spec.enabled;
        let (url, timeout_ms, headers) = checked(spec, settings)?;
        let now = rfc3339(now_ms);
        match self.entry(name).await? {
            Some((before, revision)) => {
                let after = Endpoint {
                    url,
                    timeout_ms,
                    headers,
                    rate_per_s,
                    enabled,
                    disabled_reason: before.disabled_reason.clone().filter(|_| !enabled),
                    updated_at: now,
                    updated_by: by.to_owned(),
                    ..before.clone()
                };
                self.write(&after, Some(revision)).await?;
                Ok(Put {
                    before: Some(before),
                    after,
                    secret: None,
                })
            }
            None => {
                if self.names().await?.len() >= settings.webhooks_max {
                    return Err(WebhookError::Conflict(format!(
                        "there are {} webhooks already (webhooks_max)",
                        settings.webhooks_max
                    )));
                }
                let mut after = Endpoint {
                    name: name.to_owned(),
                    url,
                    timeout_ms,
                    headers,
                    rate_per_s,
                    enabled,
                    disabled_reason: None,
                    secrets: Vec::new(),
                    created_at: now.clone(),
                    created_by: by.to_owned(),
                    updated_at: now,
                    updated_by: by.to_owned(),
                };
                let secret = after.rotate(now_ms, 0);
                self.write(&after, None).await?;
                Ok(Put {
                    before: None,
                    after,
                    secret: Some(secret),
                })
            }
        }
    }

    /// A new secret for `name`; the previous ones keep signing for `overlap_ms`. Answers
    /// (before, after, the new secret).
    pub async fn rotate(
        &self,
        name: &str,
        by: &str,
        now_ms: i64,
        overlap_ms: i64,
    ) -> Result<(Endpoint, Endpoint, String), WebhookError> {
        let (before, revision) = self
            .entry(name)
            .await?
            .ok_or_else(|| WebhookError::NotFound(name.to_owned()))?;
        let mut after = before.clone();
        let secret = after.rotate(now_ms, overlap_ms);
        after.updated_at = rfc3339(now_ms);
        after.updated_by = by.to_owned();
        self.write(&after, Some(revision)).await?;
        Ok((before, after, secret))
    }

    /// Switches `name` off because delivery was told to stop (410 Gone), saying why; a PUT
    /// with `enabled: true` switches it on again. Answers (before, after).
    pub async fn disable(
        &self,
        name: &str,
        reason: &str,
        now_ms: i64,
    ) -> Result<(Endpoint, Endpoint), WebhookError> {
        let (before, revision) = self
            .entry(name)
            .await?
            .ok_or_else(|| WebhookError::NotFound(name.to_owned()))?;
        let after = Endpoint {
            enabled: false,
            disabled_reason: Some(reason.to_owned()),
            updated_at: rfc3339(now_ms),
            updated_by: "nudge (delivery)".to_owned(),
            ..before.clone()
        };
        self.write(&after, Some(revision)).await?;
        Ok((before, after))
    }

    /// Deletes `name`; answers what it was.
    pub async fn delete(&self, name: &str) -> Result<Endpoint, WebhookError> {
        let (before, revision) = self
            .entry(name)
            .await?
            .ok_or_else(|| WebhookError::NotFound(name.to_owned()))?;
        self.kv
            .delete_expect_revision(name, Some(revision))
            .await
            .map_err(|e| {
                WebhookError::Conflict(format!("webhook `{name}` changed meanwhile: {e}"))
            })?;
        Ok(before)
    }

    /// Every endpoint, by name.
    pub async fn list(&self) -> Result<Vec<Endpoint>, WebhookError> {
        let mut endpoints = Vec::new();
        for name in self.names().await? {
            if let Some((endpoint, _)) = self.entry(&name).await? {
                endpoints.push(endpoint);
            }
        }
        endpoints.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(endpoints)
    }

    async fn names(&self) -> Result<Vec<String>, WebhookError> {
        let mut keys = self.kv.keys().await.map_err(WebhookError::nats)?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(WebhookError::nats)?);
        }
        Ok(names)
    }

    async fn write(&self, endpoint: &Endpoint, revision: Option<u64>) -> Result<(), WebhookError> {
        let body = serde_json::to_vec(endpoint).map_err(WebhookError::nats)?;
        let name = endpoint.name.as_str();
        let written = match revision {
            Some(revision) => self
                .kv
                .update(name, body.into(), revision)
                .await
                .err()
                .map(|e| e.to_string()),
            None => self
                .kv
                .create(name, body.into())
                .await
                .err()
                .map(|e| e.to_string()),
        };
        match written {
            None => Ok(()),
            Some(error) => Err(WebhookError::Conflict(format!(
                "webhook `{name}` changed meanwhile, try again: {error}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: Value) -> EndpointSpec {
        serde_json::from_value(value).unwrap()
    }

    fn field_of(result: Result<(String, u64, BTreeMap<String, String>), WebhookError>) -> String {
        match result {
            Err(WebhookError::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {:?}", other.map(|r| r.0)),
        }
    }

    #[test]
    fn refusals_name_the_field_and_the_limit() {
        let settings = Settings::default();
        let check = |v: Value| checked(spec(v), &settings);
        let (url, timeout_ms, headers) = check(json!({"url": "https://crm.example/hook",
            "headers": {"Authorization": "Bearer x"}}))
        .unwrap();
        assert_eq!(url, "https://crm.example/hook");
        assert_eq!(timeout_ms, settings.webhook_timeout_ms);
        assert_eq!(headers["authorization"], "Bearer x", "names lower-cased");
        assert_eq!(field_of(check(json!({"url": "crm.example/hook"}))), "url");
        assert_eq!(field_of(check(json!({"url": "ftp://crm.example/"}))), "url");
        assert_eq!(
            field_of(check(json!({"url": "https://u:p@crm.example/"}))),
            "url"
        );
        assert_eq!(
            field_of(check(json!({"url": "http://h/", "timeout_ms": 0}))),
            "timeout_ms"
        );
        assert_eq!(
            field_of(check(
                json!({"url": "http://h/", "headers": {"Webhook-Signature": "v1,x"}})
            )),
            "headers.Webhook-Signature"
        );
        assert_eq!(
            field_of(check(
                json!({"url": "http://h/", "headers": {"bad name": "x"}})
            )),
            "headers.bad name"
        );
        assert_eq!(
            field_of(check(
                json!({"url": "http://h/", "headers": {"x-a": "line\nbreak"}})
            )),
            "headers.x-a"
        );
        assert_eq!(
            field_of(check(json!({"url": "http://h/", "rate_per_s": 0}))),
            "rate_per_s"
        );
        assert!(
            serde_json::from_value::<EndpointSpec>(json!({"url": "http://h/", "secret": "x"}))
                .is_err()
        );
        assert!(check_name("crm-sync_2").is_ok());
        assert!(check_name("crm.sync").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn a_rotation_keeps_the_old_secret_signing_for_the_overlap_only() {
        let mut endpoint: Endpoint = serde_json::from_value(json!({
            "name": "crm", "url": "http://h/", "timeout_ms": 5000, "headers": {},
            "rate_per_s": null, "enabled": true, "secrets": [],
            "created_at": "", "created_by": "", "updated_at": "", "updated_by": ""}))
        .unwrap();
        let first = endpoint.rotate(0, 0);
        assert_eq!(endpoint.signing_keys(1_000).len(), 1);
        let second = endpoint.rotate(1_000, 60_000);
        assert_ne!(first, second);
        assert_eq!(endpoint.secrets[0].secret, second, "the newest first");
        assert_eq!(endpoint.secrets[1].expires_at_ms, Some(61_000));
        assert_eq!(
            endpoint.signing_keys(60_999).len(),
            2,
            "both during the overlap"
        );
        assert_eq!(
            endpoint.signing_keys(61_000).len(),
            1,
            "the new one after it"
        );
        endpoint.rotate(2_000, 120_000);
        assert_eq!(
            endpoint.secrets[2].expires_at_ms,
            Some(61_000),
            "a rotation never extends an expiring secret"
        );
        endpoint.rotate(70_000, 1_000);
        assert_eq!(endpoint.secrets.len(), 3, "the expired one is dropped");
        let public = endpoint.public().to_string();
        for secret in &endpoint.secrets {
            assert!(
                !public.contains(&secret.secret),
                "no secret text in {public}"
            );
        }
    }
}
