//! The webhook channel's transport: an action's `data.webhook` names an endpoint
//! ([`super::endpoints`]), to which the whole action is POSTed, signed ([`super::request`]).
//! An endpoint is read at most once per [`ENDPOINT_FRESH`], so a change reaches deliveries
//! within that time; an endpoint that answers 410 Gone is switched off.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nudge_rules::Channel;
use serde::Deserialize;

use super::endpoints::{Endpoint, EndpointStore, WebhookError};
use super::fresh::Fresh;
use super::request::{self, Answer};
use super::transport::{Settled, Target, Transport};
use super::worker::BUSY_DELAY;

/// How long a read endpoint serves deliveries before it is read again.
const ENDPOINT_FRESH: Duration = Duration::from_secs(1);

/// What the webhook transport reads of an action's `data`.
#[derive(Deserialize)]
pub struct WebhookData {
    webhook: String,
}

pub struct Webhooks {
    endpoints: EndpointStore,
    client: reqwest::Client,
    cache: Fresh<Endpoint>,
}

impl Webhooks {
    pub fn new(endpoints: EndpointStore, client: reqwest::Client) -> Webhooks {
        Webhooks {
            endpoints,
            client,
            cache: Fresh::new(ENDPOINT_FRESH),
        }
    }

    async fn endpoint(&self, name: &str) -> Result<Arc<Endpoint>, WebhookError> {
        if let Some(endpoint) = self.cache.get(name) {
            return Ok(endpoint);
        }
        Ok(self.cache.insert(name, self.endpoints.get(name).await?))
    }
}

impl Transport for Webhooks {
    type Data = WebhookData;
    type Prepared = Arc<Endpoint>;

    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    fn describe(&self, name: &str) -> String {
        format!("webhook `{name}`")
    }

    async fn prepare(&self, data: WebhookData) -> Result<Target<Arc<Endpoint>>, Settled> {
        let name = data.webhook;
        let endpoint = match self.endpoint(&name).await {
            Ok(endpoint) => endpoint,
            Err(WebhookError::NotFound(_) | WebhookError::Invalid { .. }) => {
                return Err(Settled::DeadLetter {
                    kind: "no_endpoint",
                    reason: format!("no webhook endpoint `{name}` (add it, then re-drive)"),
                });
            }
            Err(error) => {
                tracing::warn!(%error, webhook = %name, "reading the endpoint failed; retrying");
                return Err(Settled::Later(BUSY_DELAY));
            }
        };
        if !endpoint.enabled {
            let why = endpoint
                .disabled_reason
                .as_deref()
                .unwrap_or("switched off");
            return Err(Settled::DeadLetter {
                kind: "endpoint_disabled",
                reason: format!("webhook `{name}` is disabled ({why})"),
            });
        }
        Ok(Target {
            rate_per_s: endpoint.rate_per_s,
            key: name,
            prepared: endpoint,
        })
    }

    async fn send(
        &self,
        target: &Target<Arc<Endpoint>>,
        action_id: &str,
        action: Bytes,
        now_ms: i64,
    ) -> Answer {
        request::send(&self.client, &target.prepared, action_id, action, now_ms).await
    }

    async fn gone(&self, name: &str, at: &str, now_ms: i64) -> String {
        let reason = format!("the endpoint answered 410 Gone at {at}");
        self.cache.forget(name);
        if let Err(error) = self.endpoints.disable(name, &reason, now_ms).await {
            tracing::warn!(%error, webhook = %name, "could not switch the endpoint off");
        } else {
            tracing::warn!(webhook = %name, "endpoint answered 410 Gone: switched off");
        }
        format!("webhook `{name}`: {reason}")
    }
}
