//! Who may do what: users (argon2 passwords), API tokens (stored as SHA-256 digests), browser
//! sessions (in NATS KV, so every instance knows them) and the append-only audit log. The HTTP
//! layer (`http::auth`) turns a request into a [`Principal`] and checks it against the route's
//! role; this module holds the records and their rules.

pub mod audit;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod users;
pub mod write_keys;

use serde::{Deserialize, Serialize};

/// Roles, each including the ones before it: `viewer` reads; `marketer` also writes rules and
/// runs tests and backtests; `developer` also writes plugins and handles dead letters; `admin`
/// also manages users and tokens and reads the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Marketer,
    Developer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Marketer, Role::Developer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Marketer => "marketer",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether this role may do what `required` allows.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The `NUDGE_ADMIN_TOKEN` bearer token.
    Bootstrap,
    /// An API token (its id).
    Token(String),
    /// A browser session (cookie); state changes need its CSRF token.
    Session,
}

/// An authenticated caller.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub via: Via,
}

/// Random secret text (256 bits, URL-safe) for tokens, session CSRF tokens.
pub fn random_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256 of a secret: what is stored for API tokens (high-entropy, so a fast hash is
/// enough; passwords use argon2).
pub fn digest(secret: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// A record stored as JSON under `key` in `kv`, with its revision; `None` when there is none
/// (or it was deleted).
async fn read_record<T: serde::de::DeserializeOwned>(
    kv: &async_nats::jetstream::kv::Store,
    key: &str,
) -> Result<Option<(T, u64)>, users::AccessError> {
    use async_nats::jetstream::kv::Operation;
    let Some(entry) = kv.entry(key).await.map_err(users::AccessError::nats)? else {
        return Ok(None);
    };
    if entry.operation != Operation::Put {
        return Ok(None);
    }
    let record = serde_json::from_slice(&entry.value).map_err(users::AccessError::nats)?;
    Ok(Some((record, entry.revision)))
}

/// The stores behind access control, opened (and created if missing) at start.
#[derive(Clone)]
pub struct Access {
    pub users: users::UserStore,
    pub tokens: tokens::TokenStore,
    pub sessions: sessions::NatsSessionStore,
    pub login_throttle: std::sync::Arc<throttle::LoginThrottle>,
    pub write_keys: write_keys::WriteKeyStore,
}

impl Access {
    pub async fn open(
        js: &async_nats::jetstream::Context,
        settings: &crate::config::Settings,
    ) -> anyhow::Result<Access> {
        use crate::topology::{
            SESSIONS_BUCKET, TOKENS_BUCKET, USERS_BUCKET, WRITE_KEYS_BUCKET, ensure_bucket,
        };
        let write_keys = write_keys::WriteKeyStore::open(
            ensure_bucket(js, WRITE_KEYS_BUCKET, settings).await?,
            settings.write_key_limits(),
            settings.write_key.as_deref(),
        )
        .await?;
        let watched = write_keys.clone();
        tokio::spawn(async move {
            if let Err(error) = watched.watch().await {
                tracing::error!(%error, "watching NUDGE_WRITE_KEYS stopped: key changes no longer reach this instance");
            }
        });
        Ok(Access {
            write_keys,
            users: users::UserStore::new(ensure_bucket(js, USERS_BUCKET, settings).await?),
            tokens: tokens::TokenStore::new(ensure_bucket(js, TOKENS_BUCKET, settings).await?),
            sessions: sessions::NatsSessionStore::new(
                ensure_bucket(js, SESSIONS_BUCKET, settings).await?,
            ),
            login_throttle: std::sync::Arc::new(throttle::LoginThrottle::new(
                settings.login_attempts_per_minute,
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_lower_ones() {
        assert!(Role::Admin.allows(Role::Viewer));
        assert!(Role::Developer.allows(Role::Marketer));
        assert!(!Role::Marketer.allows(Role::Developer));
        assert!(!Role::Viewer.allows(Role::Marketer));
        assert_eq!(Role::parse("developer"), Some(Role::Developer));
        assert_eq!(Role::parse("root"), None);
    }
}
