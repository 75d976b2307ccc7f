//! The email channel's transport: an action's `data` holds `to`, `template`, the template's
//! variables and the profile it was decided for (`profile`, added by the core when it decided);
//! the template ([`super::templates`]) is rendered with them and `unsubscribe_url`, and the
//! message goes through the SMTP relay (`smtp_url`) with lettre, carrying `List-Unsubscribe`
//! ([`super::unsubscribe`]) and a `Message-ID` made from the action's id, so a relay or a
//! mailbox that sees the same e-mail twice (a redelivery after a crash) can tell.
//!
//! SMTP answers map onto the same outcomes as HTTP: 2xx delivered, 4xx (transient) and
//! timeouts or connection failures retried, 5xx (permanent) refused for good. The relay is one
//! target: its breaker opens when it keeps failing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use nudge_rules::Channel;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::fresh::Fresh;
use super::outcome::Outcome;
use super::request::Answer;
use super::templates::{self, Compiled, EmailTemplate, Rendered, TemplateError, TemplateStore};
use super::transport::{Settled, Target, Transport};
use super::unsubscribe::Unsubscribe;
use super::worker::BUSY_DELAY;
use crate::config::{Settings, StartTls};

/// How long a read template serves deliveries before it is read again.
const TEMPLATE_FRESH: Duration = Duration::from_secs(1);
const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

/// What the email transport reads of an action's `data`: the rest are the template's variables.
#[derive(Deserialize)]
pub struct EmailData {
    to: String,
    template: String,
    profile: nudge_rules::Profile,
    #[serde(flatten)]
    variables: Map<String, Value>,
}

/// The configured relay.
pub struct Relay {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for the log and errors.
    address: String,
    timeout: Duration,
}

/// What the settings say of the relay, checked but not yet connected.
pub struct RelayPlan {
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    from: Mailbox,
    timeout: Duration,
    /// Pooled connections at most: one per e-mail in flight (`email_in_flight_max`).
    connections: u32,
}

impl RelayPlan {
    /// The relay `settings` name, or `None` when `smtp_url` is unset; an error names the
    /// setting at fault.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<RelayPlan>> {
        let Some(url) = &settings.smtp_url else {
            return Ok(None);
        };
        let parsed = url::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("smtp_url: `{url}` is not a URL: {e}"))?;
        let wrapped = match parsed.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => anyhow::bail!("smtp_url: scheme `{other}` is not smtp or smtps"),
        };
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("smtp_url: `{url}` names no host"))?
            .to_owned();
        let port = parsed.port().unwrap_or(if wrapped { 465 } else { 587 });
        let from: Mailbox = settings
            .email_from
            .as_deref()
            .ok_or_else(|| {
                anyhow::anyhow!("email_from: set the sender of e-mails (smtp_url is set)")
            })?
            .parse()
            .map_err(|e| anyhow::anyhow!("email_from: not an address: {e}"))?;
        let parameters = || {
            TlsParameters::new(host.clone())
                .map_err(|e| anyhow::anyhow!("smtp_url: TLS for `{host}`: {e}"))
        };
        let tls = match (wrapped, settings.smtp_starttls) {
            (true, _) => Tls::Wrapper(parameters()?),
            (false, StartTls::Required) => Tls::Required(parameters()?),
            (false, StartTls::Opportunistic) => Tls::Opportunistic(parameters()?),
            (false, StartTls::Never) => Tls::None,
        };
        let credentials = match (&settings.smtp_username, &settings.smtp_password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.clone())),
            (None, None) => None,
            _ => anyhow::bail!("smtp_username and smtp_password: set both or neither"),
        };
        Ok(Some(RelayPlan {
            host,
            port,
            tls,
            credentials,
            from,
            timeout: Duration::from_millis(settings.smtp_timeout_ms.max(1)),
            connections: u32::try_from(settings.email_in_flight_max.max(1)).unwrap_or(u32::MAX),
        }))
    }

    /// The relay's client (connections are made, and pooled, as e-mails go out).
    pub fn connect(self) -> Relay {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(self.tls)
            .timeout(Some(self.timeout))
            .pool_config(PoolConfig::new().max_size(self.connections));
        if let Some(credentials) = self.credentials {
            builder = builder.credentials(credentials);
        }
        Relay {
            transport: builder.build(),
            from: self.from,
            address: format!("{}:{}", self.host, self.port),
            timeout: self.timeout,
        }
    }
}

/// An e-mail ready to go but for its `Message-ID`.
pub struct Draft {
    to: Mailbox,
    rendered: Rendered,
    unsubscribe_url: String,
}

/// A template as read, and compiled.
struct Ready {
    template: EmailTemplate,
    compiled: Compiled,
}

pub struct Emails {
    relay: Option<Relay>,
    templates: TemplateStore,
    unsubscribe: Unsubscribe,
    /// Templates as read, each compiled once per read.
    cache: Fresh<Ready>,
}

impl Emails {
    pub fn new(relay: Option<Relay>, templates: TemplateStore, unsubscribe: Unsubscribe) -> Emails {
        Emails {
            relay,
            templates,
            unsubscribe,
            cache: Fresh::new(TEMPLATE_FRESH),
        }
    }

    async fn template(&self, name: &str) -> Result<Arc<Ready>, Settled> {
        if let Some(ready) = self.cache.get(name) {
            return Ok(ready);
        }
        let template = match self.templates.get(name).await {
            Ok(template) => template,
            Err(crate::versioned::StoreError::Nats(error)) => {
                tracing::warn!(%error, template = %name, "reading the template failed; retrying");
                return Err(Settled::Later(BUSY_DELAY));
            }
            Err(_) => {
                return Err(Settled::DeadLetter {
                    kind: "no_template",
                    reason: format!("no e-mail template `{name}` (add it, then re-drive)"),
                });
            }
        };
        // Stored templates compiled when saved; only a changed limit could refuse one now.
        let compiled = template
            .spec
            .compile(self.templates.limits().render_fuel)
            .map_err(|error| unrenderable(&template, error))?;
        Ok(self.cache.insert(name, Ready { template, compiled }))
    }
}

impl Transport for Emails {
    type Data = EmailData;
    type Prepared = Draft;

    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn describe(&self, relay: &str) -> String {
        format!("the SMTP relay {relay}")
    }

    async fn prepare(&self, data: EmailData) -> Result<Target<Draft>, Settled> {
        let Some(relay) = &self.relay else {
            return Err(Settled::DeadLetter {
                kind: "no_relay",
                reason: "no SMTP relay is configured (smtp_url); set one, then re-drive".into(),
            });
        };
        let to: Mailbox = data.to.parse().map_err(|e| Settled::DeadLetter {
            kind: "invalid_action",
            reason: format!("`to` is not an e-mail address ({:?}): {e}", data.to),
        })?;
        let ready = self.template(&data.template).await?;
        let profile = data.profile;
        let mut action = data.variables;
        action.insert("to".into(), json!(data.to));
        action.insert("template".into(), json!(data.template));
        let unsubscribe_url = self.unsubscribe.url(Channel::Email, &profile.id);
        let variables = templates::variables(action, &profile, &unsubscribe_url);
        let rendered = ready
            .compiled
            .render(&variables)
            .map_err(|error| unrenderable(&ready.template, error))?;
        Ok(Target {
            key: relay.address.clone(),
            rate_per_s: None,
            prepared: Draft {
                to,
                rendered,
                unsubscribe_url,
            },
        })
    }

    async fn send(&self, target: &Target<Draft>, action_id: &str, _: Bytes, _: i64) -> Answer {
        let started = Instant::now();
        let answer = |outcome, status, error| Answer {
            status,
            outcome,
            latency_ms: started.elapsed().as_millis() as u64,
            error,
            retry_after: None,
        };
        let Some(relay) = &self.relay else {
            return answer(Outcome::Refused, None, Some("no SMTP relay".into()));
        };
        let message = match build(relay, &target.prepared, action_id) {
            Ok(message) => message,
            Err(error) => return answer(Outcome::Refused, None, Some(error)),
        };
        match tokio::time::timeout(relay.timeout, relay.transport.send(message)).await {
            Ok(Ok(response)) => answer(Outcome::Delivered, Some(u16::from(response.code())), None),
            Ok(Err(error)) => {
                let status = error.status().map(u16::from);
                let outcome = if error.is_permanent() {
                    Outcome::Refused
                } else {
                    Outcome::Retry { after: None }
                };
                answer(outcome, status, Some(format!("{error}")))
            }
            Err(_) => answer(
                Outcome::Retry { after: None },
                None,
                Some(format!(
                    "no answer within {} ms (smtp_timeout_ms)",
                    relay.timeout.as_millis()
                )),
            ),
        }
    }
}

/// A template that does not render for an action goes to the DLQ, saying where and why.
fn unrenderable(template: &EmailTemplate, error: TemplateError) -> Settled {
    let detail = match error {
        TemplateError::Syntax {
            field,
            line,
            message,
        } => format!("{field}, line {line}: {message}"),
        other => other.to_string(),
    };
    Settled::DeadLetter {
        kind: "template_error",
        reason: format!(
            "template `{}` v{} does not render: {detail}",
            template.name, template.version
        ),
    }
}

/// The MIME message: text and HTML as alternatives (or whichever the template has).
fn build(relay: &Relay, draft: &Draft, action_id: &str) -> Result<Message, String> {
    let domain = relay.from.email.domain().to_owned();
    let builder = Message::builder()
        .from(relay.from.clone())
        .to(draft.to.clone())
        .subject(draft.rendered.subject.clone())
        .message_id(Some(format!("<{action_id}@{domain}>")))
        .raw_header(HeaderValue::new(
            LIST_UNSUBSCRIBE,
            format!("<{}>", draft.unsubscribe_url),
        ))
        .raw_header(HeaderValue::new(
            LIST_UNSUBSCRIBE_POST,
            "List-Unsubscribe=One-Click".into(),
        ));
    let Rendered { html, text, .. } = &draft.rendered;
    let built = match (html.trim().is_empty(), text.trim().is_empty()) {
        (false, false) => builder.multipart(MultiPart::alternative_plain_html(
            text.clone(),
            html.clone(),
        )),
        (false, true) => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(html.clone()),
        ),
        _ => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(text.clone()),
        ),
    };
    built.map_err(|e| format!("the message cannot be built: {e}"))
}
