//! How nudge connects to NATS: the settings' credentials (a `.creds` file, user and password,
//! token or nkey seed) and TLS (a CA to trust, a client certificate, TLS required) as
//! async-nats connect options. At most one kind of credentials; half of a pair is an error.

use async_nats::ConnectOptions;

use crate::config::Settings;

/// The one way nudge proves who it is to NATS, if any.
enum Credentials<'a> {
    None,
    CredsFile(&'a std::path::Path),
    UserPassword(&'a str, &'a str),
    Token(&'a str),
    NkeySeed(&'a str),
}

fn credentials(settings: &Settings) -> anyhow::Result<Credentials<'_>> {
    let mut given = Vec::new();
    if let Some(path) = &settings.nats_creds_file {
        given.push(("nats_creds_file", Credentials::CredsFile(path)));
    }
    match (&settings.nats_user, &settings.nats_password) {
        (Some(user), Some(password)) => {
            given.push(("nats_user", Credentials::UserPassword(user, password)))
        }
        (None, None) => {}
        (Some(_), None) => anyhow::bail!("nats_user is set without nats_password"),
        (None, Some(_)) => anyhow::bail!("nats_password is set without nats_user"),
    }
    if let Some(token) = &settings.nats_token {
        given.push(("nats_token", Credentials::Token(token)));
    }
    if let Some(seed) = &settings.nats_nkey_seed {
        given.push(("nats_nkey_seed", Credentials::NkeySeed(seed)));
    }
    if given.len() > 1 {
        let names: Vec<&str> = given.iter().map(|(name, _)| *name).collect();
        anyhow::bail!(
            "NATS credentials are given more than one way ({}): set one",
            names.join(", ")
        );
    }
    Ok(given.pop().map_or(Credentials::None, |(_, given)| given))
}

/// Checks the NATS settings without reading any file (`nudge config check`, start-up).
pub fn check(settings: &Settings) -> anyhow::Result<()> {
    credentials(settings)?;
    anyhow::ensure!(
        settings.nats_tls_cert.is_some() == settings.nats_tls_key.is_some(),
        "nats_tls_cert and nats_tls_key go together (a client certificate and its key)"
    );
    Ok(())
}

/// The connect options the settings ask for (reads a `.creds` file).
pub async fn options(settings: &Settings) -> anyhow::Result<ConnectOptions> {
    check(settings)?;
    let mut options = match credentials(settings)? {
        Credentials::None => ConnectOptions::new(),
        Credentials::CredsFile(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| anyhow::anyhow!("nats_creds_file {}: {e}", path.display()))?,
        Credentials::UserPassword(user, password) => {
            ConnectOptions::with_user_and_password(user.into(), password.into())
        }
        Credentials::Token(token) => ConnectOptions::with_token(token.into()),
        Credentials::NkeySeed(seed) => ConnectOptions::with_nkey(seed.into()),
    };
    if let Some(ca) = &settings.nats_tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&settings.nats_tls_cert, &settings.nats_tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options.require_tls(settings.nats_tls_required))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_given_one_way_and_pairs_whole() {
        assert!(check(&Settings::default()).is_ok());
        let both = Settings {
            nats_token: Some("t".into()),
            nats_nkey_seed: Some("SU…".into()),
            ..Settings::default()
        };
        let error = check(&both).unwrap_err().to_string();
        assert!(error.contains("nats_token, nats_nkey_seed"), "{error}");
        let half = Settings {
            nats_user: Some("nudge".into()),
            ..Settings::default()
        };
        assert!(
            check(&half)
                .unwrap_err()
                .to_string()
                .contains("nats_password")
        );
        let lonely_cert = Settings {
            nats_tls_cert: Some("client.pem".into()),
            ..Settings::default()
        };
        assert!(
            check(&lonely_cert)
                .unwrap_err()
                .to_string()
                .contains("nats_tls_key")
        );
    }
}
