//! Serving the API, ingest, UI and metrics: plain HTTP, or HTTPS with rustls when `tls_cert` and
//! `tls_key` are set — the certificate read at start (a bad one stops start-up, naming the
//! setting) and again on SIGHUP, so a renewed certificate is served without a restart.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

/// The certificate and key nudge serves, and where they are read from again.
pub struct Tls {
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
}

impl Tls {
    /// Reads `tls_cert` and `tls_key`; `None` when HTTPS is not configured.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Option<Tls>> {
        let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
            return Ok(None);
        };
        let config = RustlsConfig::from_pem_file(cert, key)
            .await
            .with_context(|| certificate_error(cert, key))?;
        Ok(Some(Tls {
            config,
            cert: cert.clone(),
            key: key.clone(),
        }))
    }

    /// Reads the files again on every SIGHUP until `shutdown`; a failed read keeps the
    /// certificate being served and is logged.
    fn reload_on_sighup(&self, shutdown: CancellationToken) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
        let (config, cert, key) = (self.config.clone(), self.cert.clone(), self.key.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = hangups.recv() => {}
                }
                match config.reload_from_pem_file(&cert, &key).await {
                    Ok(()) => {
                        tracing::info!(cert = %cert.display(), "SIGHUP: serving the certificate read again")
                    }
                    Err(error) => tracing::error!(
                        %error,
                        "SIGHUP: {}; still serving the previous certificate",
                        certificate_error(&cert, &key)
                    ),
                }
            }
        });
        Ok(())
    }
}

fn certificate_error(cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "reading the HTTPS certificate {} (tls_cert) and key {} (tls_key)",
        cert.display(),
        key.display()
    )
}

/// Serves `app` on `listener` until `shutdown`, then lets requests in flight finish within
/// `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Tls>,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    };
    tls.reload_on_sighup(shutdown.clone())
        .map_err(std::io::Error::other)?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopping.graceful_shutdown(Some(grace));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls.config)?
        .handle(handle)
        .serve(app.into_make_service())
        .await
}
