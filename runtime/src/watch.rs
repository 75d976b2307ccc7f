//! `nudge watch`: print messages on a NATS subject as they arrive — by default every action nudge
//! publishes — so the output of a rule can be seen without any other NATS tool.

use std::io::Write as _;

use anyhow::Context as _;
use futures::StreamExt;

use crate::config::Settings;

/// Subscribes to `subject` on `nats_url` (with the settings' credentials and TLS) and prints one
/// line per message, `<subject> <payload>`, until interrupted or, with `max_messages`, after
/// that many.
pub async fn run(
    settings: &Settings,
    nats_url: &str,
    subject: &str,
    max_messages: Option<u64>,
) -> anyhow::Result<()> {
    let client = crate::connection::options(settings)
        .await?
        .connect(nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {nats_url}"))?;
    let mut messages = client.subscribe(subject.to_owned()).await?;
    client.flush().await?;
    eprintln!("watching {subject} on {nats_url} (Ctrl-C to stop)");
    let mut seen = 0;
    while let Some(message) = messages.next().await {
        let payload = String::from_utf8_lossy(&message.payload);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{} {payload}", message.subject)?;
        out.flush()?;
        seen += 1;
        if max_messages.is_some_and(|max| seen >= max) {
            break;
        }
    }
    Ok(())
}
