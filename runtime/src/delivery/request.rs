//! One signed webhook request: the body, the Standard Webhooks headers and the endpoint's own,
//! within the endpoint's timeout, following no redirects; what came back, timed.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::endpoints::Endpoint;
use super::outcome::{self, Outcome};
use super::signature::signature_header;

/// The HTTP client deliveries share (its connection pool included). Redirects are not
/// followed: a receiver that moved says so with a 3xx, which is refused, not chased to a host
/// nobody configured.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("nudge/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response's status; none when no response came (timeout, connection refused).
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub latency_ms: u64,
    /// Why no response came, or why it counts as a failure.
    pub error: Option<String>,
    /// The `Retry-After` header as the endpoint sent it.
    pub retry_after: Option<String>,
}

/// POSTs `body` (JSON) to `endpoint` as webhook message `id`, signed at `now_ms` with every
/// current secret.
pub async fn send(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    id: &str,
    body: Bytes,
    now_ms: i64,
) -> Answer {
    let keys = endpoint.signing_keys(now_ms);
    if keys.is_empty() {
        return Answer {
            status: None,
            outcome: Outcome::Refused,
            latency_ms: 0,
            error: Some(format!(
                "webhook `{}` has no current signing secret: rotate it",
                endpoint.name
            )),
            retry_after: None,
        };
    }
    let timestamp_s = now_ms.div_euclid(1_000);
    let mut request = client
        .post(&endpoint.url)
        .timeout(Duration::from_millis(endpoint.timeout_ms))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp_s.to_string())
        .header(
            "webhook-signature",
            signature_header(&keys, id, timestamp_s, &body),
        );
    for (name, value) in &endpoint.headers {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let result = request.body(body).send().await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let outcome = outcome::of_status(status, retry_after.as_deref(), SystemTime::now());
            let error =
                (outcome != Outcome::Delivered).then(|| format!("the endpoint answered {status}"));
            Answer {
                status: Some(status),
                outcome,
                latency_ms,
                error,
                retry_after,
            }
        }
        Err(error) => {
            let reason = if error.is_timeout() {
                format!(
                    "no answer within {} ms (the endpoint's timeout_ms)",
                    endpoint.timeout_ms
                )
            } else if error.is_connect() {
                format!("could not connect: {}", root_cause(&error))
            } else {
                root_cause(&error)
            };
            Answer {
                status: None,
                outcome: Outcome::Retry { after: None },
                latency_ms,
                error: Some(reason),
                retry_after: None,
            }
        }
    }
}

/// The innermost error's text: reqwest's own says only "error sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}
