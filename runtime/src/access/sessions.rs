//! Browser sessions for `tower-sessions`, kept in KV `NUDGE_SESSIONS` so a session started on
//! one instance works on every other. Keys are SHA-256 digests of session ids: reading the
//! bucket does not hand out live cookies. The bucket's max age (`session_max_age_s`) purges
//! sessions nobody logged out of.

use async_nats::jetstream::kv;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result, SessionStore};

use super::{Role, digest};

/// What a session knows about its user; stored under [`SessionAuth::KEY`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionAuth {
    pub username: String,
    pub role: Role,
    /// Sent back in `X-CSRF-Token` on every state change.
    pub csrf: String,
    pub created_ms: i64,
    /// Last time the session was refreshed (idle timeout counts from here).
    pub seen_ms: i64,
}

impl SessionAuth {
    pub const KEY: &'static str = "auth";
}

#[derive(Clone)]
pub struct NatsSessionStore {
    kv: kv::Store,
}

impl std::fmt::Debug for NatsSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsSessionStore")
    }
}

impl NatsSessionStore {
    pub fn new(kv: kv::Store) -> Self {
        NatsSessionStore { kv }
    }
}

fn key(id: &Id) -> String {
    digest(&id.to_string())
}

fn backend(error: impl std::fmt::Display) -> Error {
    Error::Backend(error.to_string())
}

#[async_trait]
impl SessionStore for NatsSessionStore {
    async fn create(&self, record: &mut Record) -> Result<()> {
        let body = serde_json::to_vec(&*record).map_err(|e| Error::Encode(e.to_string()))?;
        // A colliding id (128 random bits: never in practice) gets a fresh one.
        loop {
            match self.kv.create(key(&record.id), body.clone().into()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    record.id = Id::default();
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }

    async fn save(&self, record: &Record) -> Result<()> {
        let body = serde_json::to_vec(record).map_err(|e| Error::Encode(e.to_string()))?;
        self.kv
            .put(key(&record.id), body.into())
            .await
            .map(drop)
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let Some(bytes) = self.kv.get(key(id)).await.map_err(backend)? else {
            return Ok(None);
        };
        let record: Record =
            serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))?;
        Ok(Some(record).filter(|r| r.expiry_date > OffsetDateTime::now_utc()))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        self.kv.purge(key(id)).await.map_err(backend)
    }
}
