//! User accounts in KV `NUDGE_USERS` (key: the user name): role and an argon2id password hash.
//! Created by admins (`POST /api/users`); the first admin is created with the bootstrap token.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::Role;
use crate::rulestore::now_rfc3339;

pub const USERNAME_MAX_BYTES: usize = 64;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_BYTES: usize = 256;
/// Users `GET /api/users` lists at most.
pub const USERS_MAX: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("NATS: {0}")]
    Nats(String),
}

impl AccessError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AccessError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn nats(error: impl std::fmt::Display) -> Self {
        AccessError::Nats(error.to_string())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub role: Role,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub password_hash: String,
    pub created_at: String,
    pub created_by: String,
}

impl User {
    /// The record as the API shows it: never the hash.
    pub fn public(&self) -> User {
        User {
            password_hash: String::new(),
            ..self.clone()
        }
    }
}

fn validate_username(name: &str) -> Result<(), AccessError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > USERNAME_MAX_BYTES || !name.chars().all(ok_char) {
        return Err(AccessError::invalid(
            "username",
            format!("1 to {USERNAME_MAX_BYTES} characters: letters, digits, '.', '_', '-' or '@'"),
        ));
    }
    Ok(())
}

fn validate_password(password: &str) -> Result<(), AccessError> {
    if password.chars().count() < PASSWORD_MIN_CHARS || password.len() > PASSWORD_MAX_BYTES {
        return Err(AccessError::invalid(
            "password",
            format!("{PASSWORD_MIN_CHARS} characters at least, {PASSWORD_MAX_BYTES} bytes at most"),
        ));
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String, AccessError> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| AccessError::Nats(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccessError::invalid("password", e.to_string()))
}

/// Verifies against the stored hash; with no user, against a fixed hash, so the time taken
/// does not tell whether the user exists.
fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not-a-real-password").unwrap_or_default());
    let Ok(parsed) = PasswordHash::new(hash.unwrap_or(dummy)) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
        && hash.is_some()
}

#[derive(Clone)]
pub struct UserStore {
    kv: kv::Store,
}

impl UserStore {
    pub fn new(kv: kv::Store) -> Self {
        UserStore { kv }
    }

    pub async fn get(&self, username: &str) -> Result<Option<User>, AccessError> {
        if validate_username(username).is_err() {
            return Ok(None);
        }
        let Some(bytes) = self.kv.get(username).await.map_err(AccessError::nats)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(AccessError::nats)
    }

    pub async fn create(
        &self,
        username: &str,
        password: &str,
        role: Role,
        created_by: &str,
    ) -> Result<User, AccessError> {
        validate_username(username)?;
        validate_password(password)?;
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(AccessError::nats)??;
        let user = User {
            username: username.to_owned(),
            role,
            password_hash: hash,
            created_at: now_rfc3339(),
            created_by: created_by.to_owned(),
        };
        let body = serde_json::to_vec(&user).map_err(AccessError::nats)?;
        self.kv
            .create(username, body.into())
            .await
            .map_err(|e| match e.kind() {
                kv::CreateErrorKind::AlreadyExists => {
                    AccessError::Conflict(format!("user `{username}` already exists"))
                }
                _ => AccessError::nats(e),
            })?;
        Ok(user)
    }

    pub async fn list(&self) -> Result<Vec<User>, AccessError> {
        let mut keys = self.kv.keys().await.map_err(AccessError::nats)?;
        let mut users = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(AccessError::nats)?;
            if let Some(user) = self.get(&key).await? {
                users.push(user.public());
            }
            if users.len() >= USERS_MAX {
                break;
            }
        }
        users.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(users)
    }

    /// Removes a user; their sessions end at their next check (within a minute).
    pub async fn delete(&self, username: &str) -> Result<User, AccessError> {
        let user = self
            .get(username)
            .await?
            .ok_or_else(|| AccessError::NotFound(format!("no user `{username}`")))?;
        self.kv.purge(username).await.map_err(AccessError::nats)?;
        Ok(user.public())
    }

    /// The user if the password is theirs.
    pub async fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, AccessError> {
        let user = self.get(username).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, hash.as_deref()))
            .await
            .map_err(AccessError::nats)?;
        Ok(user.filter(|_| ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("wrong horse", Some(&hash)));
        assert!(!verify_password("correct horse", None));
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(validate_username("ana.marketer@shop").is_ok());
        assert!(validate_username("ana marketer").is_err());
        assert!(validate_username("").is_err());
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
    }
}
