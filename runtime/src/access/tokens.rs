//! API tokens in KV `NUDGE_TOKENS` (key: the token id). A token reads `nudge_<id>_<secret>`;
//! only the SHA-256 of the whole token is stored, it is shown once, and revoking keeps the
//! record (with `revoked_at`) so the list and the audit log still name it.

use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::users::AccessError;
use super::{Role, digest, random_secret};
use crate::rulestore::now_rfc3339;

pub const TOKEN_NAME_MAX_BYTES: usize = 100;
/// Tokens `GET /api/tokens` lists at most.
pub const TOKENS_MAX: usize = 10_000;
const PREFIX: &str = "nudge_";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

impl ApiToken {
    pub fn public(&self) -> ApiToken {
        ApiToken {
            digest: String::new(),
            ..self.clone()
        }
    }
}

#[derive(Clone)]
pub struct TokenStore {
    kv: kv::Store,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

impl TokenStore {
    pub fn new(kv: kv::Store) -> Self {
        TokenStore { kv }
    }

    async fn get(&self, id: &str) -> Result<Option<(ApiToken, u64)>, AccessError> {
        if !valid_id(id) {
            return Ok(None);
        }
        super::read_record(&self.kv, id).await
    }

    /// Creates a token; answers the record and the secret token text (shown once).
    pub async fn create(
        &self,
        name: &str,
        role: Role,
        created_by: &str,
    ) -> Result<(ApiToken, String), AccessError> {
        if name.trim().is_empty() || name.len() > TOKEN_NAME_MAX_BYTES {
            return Err(AccessError::invalid(
                "name",
                format!("1 to {TOKEN_NAME_MAX_BYTES} bytes, saying what the token is for"),
            ));
        }
        let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        let secret = format!("{PREFIX}{id}_{}", random_secret());
        let token = ApiToken {
            id: id.clone(),
            name: name.trim().to_owned(),
            role,
            created_at: now_rfc3339(),
            created_by: created_by.to_owned(),
            revoked_at: None,
            revoked_by: None,
            digest: digest(&secret),
        };
        let body = serde_json::to_vec(&token).map_err(AccessError::nats)?;
        self.kv
            .create(&id, body.into())
            .await
            .map_err(AccessError::nats)?;
        Ok((token.public(), secret))
    }

    /// The token's record if `secret` is a live token.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<ApiToken>, AccessError> {
        let Some((id, _)) = secret
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        let Some((token, _)) = self.get(id).await? else {
            return Ok(None);
        };
        let matches = token.digest == digest(secret);
        Ok(Some(token).filter(|t| matches && t.revoked_at.is_none()))
    }

    /// Marks the token revoked; answers (before, after).
    pub async fn revoke(&self, id: &str, by: &str) -> Result<(ApiToken, ApiToken), AccessError> {
        let Some((before, revision)) = self.get(id).await? else {
            return Err(AccessError::NotFound(format!("no token `{id}`")));
        };
        let mut after = before.clone();
        if after.revoked_at.is_none() {
            after.revoked_at = Some(now_rfc3339());
            after.revoked_by = Some(by.to_owned());
            let body = serde_json::to_vec(&after).map_err(AccessError::nats)?;
            self.kv
                .update(id, body.into(), revision)
                .await
                .map_err(|e| {
                    AccessError::Conflict(format!("token `{id}` changed meanwhile: {e}"))
                })?;
        }
        Ok((before.public(), after.public()))
    }

    pub async fn list(&self) -> Result<Vec<ApiToken>, AccessError> {
        let mut keys = self.kv.keys().await.map_err(AccessError::nats)?;
        let mut tokens = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(AccessError::nats)?;
            if let Some((token, _)) = self.get(&key).await? {
                tokens.push(token.public());
            }
            if tokens.len() >= TOKENS_MAX {
                break;
            }
        }
        tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(tokens)
    }
}
