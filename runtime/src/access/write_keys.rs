//! Named ingest write keys in KV `NUDGE_WRITE_KEYS` (key: the name). A key's secret is shown
//! once and only its SHA-256 is stored; rotating gives a new secret and keeps the previous one
//! valid for a grace period; revoking keeps the record, so the list and the audit log still name
//! it. Each key has its own rate limit (requests per second and a burst, per instance: GCRA from
//! `governor`). Every instance holds all keys in memory, rebuilt on each change seen by a KV watch,
//! so ingest reads no KV and a revocation reaches every instance within the watch's delay.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_nats::jetstream::kv;
use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use super::users::AccessError;
use super::{digest, random_secret};
use crate::rulestore::now_rfc3339;

const PREFIX: &str = "wk_";
/// The name the `write_key` setting's key goes by in refusals and metrics.
pub const BOOTSTRAP_NAME: &str = "write_key";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WriteKey {
    pub name: String,
    /// Requests per second this key may send to one instance, and how many at once.
    pub rate_per_s: u32,
    pub burst: u32,
    pub created_at: String,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_by: Option<String>,
    /// Until when (Unix ms) the secret before the last rotation is still accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_valid_until_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_digest: String,
}

impl WriteKey {
    /// The record without its digests, as the API shows it.
    pub fn public(&self) -> WriteKey {
        WriteKey {
            digest: String::new(),
            previous_digest: String::new(),
            ..self.clone()
        }
    }
}

/// Bounds and defaults of write keys, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub keys_max: usize,
    pub rate_per_s: u32,
    pub burst: u32,
    pub rotation_grace_s: u64,
}

/// Why a presented key was not accepted.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    Unknown,
    Revoked {
        name: String,
    },
    /// The secret before a rotation, after its grace period.
    Rotated {
        name: String,
    },
    RateLimited {
        name: String,
        retry_after_ms: u64,
    },
}

/// How one digest is accepted.
enum Standing {
    Live,
    Revoked,
    PreviousUntil(i64),
}

struct Accepting {
    name: String,
    standing: Standing,
    limiter: Arc<DefaultDirectRateLimiter>,
}

/// The in-memory view ingest consults: digest → how it is accepted.
#[derive(Default)]
struct Live {
    by_digest: HashMap<String, Accepting>,
    /// Limiters by (name, rate, burst), kept across rebuilds so a change elsewhere resets none.
    limiters: HashMap<(String, u32, u32), Arc<DefaultDirectRateLimiter>>,
}

fn limiter(rate_per_s: u32, burst: u32) -> Arc<DefaultDirectRateLimiter> {
    let rate = NonZeroU32::new(rate_per_s).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[derive(Clone)]
pub struct WriteKeyStore {
    kv: kv::Store,
    limits: Limits,
    live: Arc<ArcSwap<Live>>,
    /// The `write_key` setting's digest and limiter, if set.
    bootstrap: Option<(String, Arc<DefaultDirectRateLimiter>)>,
}

impl WriteKeyStore {
    /// Opens the store and loads every key; [`WriteKeyStore::watch`] keeps them current.
    pub async fn open(
        kv: kv::Store,
        limits: Limits,
        bootstrap: Option<&str>,
    ) -> Result<Self, AccessError> {
        let store = WriteKeyStore {
            kv,
            limits,
            live: Arc::default(),
            bootstrap: bootstrap.map(|key| (digest(key), limiter(limits.rate_per_s, limits.burst))),
        };
        store.reload().await?;
        Ok(store)
    }

    /// Rebuilds the in-memory view on every change until the watch ends.
    pub async fn watch(self) -> Result<(), AccessError> {
        let mut changes = self.kv.watch_all().await.map_err(AccessError::nats)?;
        while let Some(change) = changes.next().await {
            change.map_err(AccessError::nats)?;
            self.reload().await?;
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), AccessError> {
        let keys = self.all().await?;
        let old = self.live.load();
        let mut live = Live::default();
        for key in keys {
            let id = (key.name.clone(), key.rate_per_s, key.burst);
            let shared = old
                .limiters
                .get(&id)
                .cloned()
                .unwrap_or_else(|| limiter(key.rate_per_s, key.burst));
            live.limiters.insert(id, shared.clone());
            let revoked = key.revoked_at.is_some();
            let mut accept = |digest: &str, standing: Standing| {
                if !digest.is_empty() {
                    live.by_digest.insert(
                        digest.to_owned(),
                        Accepting {
                            name: key.name.clone(),
                            standing,
                            limiter: shared.clone(),
                        },
                    );
                }
            };
            accept(
                &key.previous_digest,
                match (revoked, key.previous_valid_until_ms) {
                    (false, Some(until_ms)) => Standing::PreviousUntil(until_ms),
                    (false, None) => Standing::PreviousUntil(0),
                    (true, _) => Standing::Revoked,
                },
            );
            accept(
                &key.digest,
                if revoked {
                    Standing::Revoked
                } else {
                    Standing::Live
                },
            );
        }
        self.live.store(Arc::new(live));
        Ok(())
    }

    /// Accepts `presented` (a write key as sent) at `now_ms` and spends one request of its
    /// rate; a refusal names the key. Nothing is allocated for an accepted key.
    pub fn authenticate(&self, presented: &str, now_ms: i64) -> Result<(), Refusal> {
        let presented_digest = digest(presented);
        let spend = |name: &str, limiter: &DefaultDirectRateLimiter| {
            limiter.check().map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Refusal::RateLimited {
                    name: name.to_owned(),
                    retry_after_ms: wait.as_millis().max(1) as u64,
                }
            })
        };
        // Digests, not secrets, are compared: a timing difference tells nothing of the key.
        if let Some((bootstrap, limiter)) = &self.bootstrap
            && *bootstrap == presented_digest
        {
            return spend(BOOTSTRAP_NAME, limiter);
        }
        let live = self.live.load();
        let Some(accepting) = live.by_digest.get(&presented_digest) else {
            return Err(Refusal::Unknown);
        };
        let name = || accepting.name.clone();
        match accepting.standing {
            Standing::Revoked => Err(Refusal::Revoked { name: name() }),
            Standing::PreviousUntil(until_ms) if until_ms <= now_ms => {
                Err(Refusal::Rotated { name: name() })
            }
            _ => spend(&accepting.name, &accepting.limiter),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<(WriteKey, u64)>, AccessError> {
        if !valid_name(name) {
            return Ok(None);
        }
        super::read_record(&self.kv, name).await
    }

    async fn all(&self) -> Result<Vec<WriteKey>, AccessError> {
        let mut names = self.kv.keys().await.map_err(AccessError::nats)?;
        let mut keys = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(AccessError::nats)?;
            if let Some((key, _)) = self.get(&name).await? {
                keys.push(key);
            }
            if keys.len() >= self.limits.keys_max {
                break;
            }
        }
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(keys)
    }

    /// Every key, revoked ones too, without digests.
    pub async fn list(&self) -> Result<Vec<WriteKey>, AccessError> {
        Ok(self.all().await?.iter().map(WriteKey::public).collect())
    }

    fn check_rate(
        &self,
        rate_per_s: Option<u32>,
        burst: Option<u32>,
    ) -> Result<(u32, u32), AccessError> {
        let rate = rate_per_s.unwrap_or(self.limits.rate_per_s);
        let burst = burst.unwrap_or(self.limits.burst);
        if rate == 0 {
            return Err(AccessError::invalid(
                "rate_per_s",
                "must be at least 1 request per second",
            ));
        }
        if burst == 0 {
            return Err(AccessError::invalid("burst", "must be at least 1 request"));
        }
        Ok((rate, burst))
    }

    /// Creates a key; answers its record and its secret (shown once).
    pub async fn create(
        &self,
        name: &str,
        rate_per_s: Option<u32>,
        burst: Option<u32>,
        by: &str,
    ) -> Result<(WriteKey, String), AccessError> {
        if !valid_name(name) {
            return Err(AccessError::invalid(
                "name",
                "1 to 64 letters, digits, `-` or `_` (the source that sends with it: `shop-web`)",
            ));
        }
        let (rate_per_s, burst) = self.check_rate(rate_per_s, burst)?;
        if self.all().await?.len() >= self.limits.keys_max {
            return Err(AccessError::Conflict(format!(
                "there are {} write keys already (write_keys_max); revoked ones count too",
                self.limits.keys_max
            )));
        }
        let secret = format!("{PREFIX}{}", random_secret());
        let key = WriteKey {
            name: name.to_owned(),
            rate_per_s,
            burst,
            created_at: now_rfc3339(),
            created_by: by.to_owned(),
            rotated_at: None,
            rotated_by: None,
            previous_valid_until_ms: None,
            revoked_at: None,
            revoked_by: None,
            digest: digest(&secret),
            previous_digest: String::new(),
        };
        let body = serde_json::to_vec(&key).map_err(AccessError::nats)?;
        self.kv.create(name, body.into()).await.map_err(|_| {
            AccessError::Conflict(format!(
                "a write key named `{name}` exists (revoked ones keep their name)"
            ))
        })?;
        self.reload().await?;
        Ok((key.public(), secret))
    }

    /// Applies `change` to the key `name`; answers (before, after).
    async fn change(
        &self,
        name: &str,
        change: impl FnOnce(&mut WriteKey) -> Result<(), AccessError>,
    ) -> Result<(WriteKey, WriteKey), AccessError> {
        let Some((before, revision)) = self.get(name).await? else {
            return Err(AccessError::NotFound(format!("no write key `{name}`")));
        };
        let mut after = before.clone();
        change(&mut after)?;
        if after != before {
            let body = serde_json::to_vec(&after).map_err(AccessError::nats)?;
            self.kv
                .update(name, body.into(), revision)
                .await
                .map_err(|e| {
                    AccessError::Conflict(format!("write key `{name}` changed meanwhile: {e}"))
                })?;
            self.reload().await?;
        }
        Ok((before.public(), after.public()))
    }

    /// A new secret for `name`; the previous one stays valid for `grace_s` (default
    /// `write_key_rotation_grace_s`). Answers (before, after, new secret).
    pub async fn rotate(
        &self,
        name: &str,
        grace_s: Option<u64>,
        now_ms: i64,
        by: &str,
    ) -> Result<(WriteKey, WriteKey, String), AccessError> {
        let secret = format!("{PREFIX}{}", random_secret());
        let grace_ms = grace_s
            .unwrap_or(self.limits.rotation_grace_s)
            .saturating_mul(1_000);
        let (before, after) = self
            .change(name, |key| {
                if key.revoked_at.is_some() {
                    return Err(AccessError::Conflict(format!(
                        "write key `{name}` is revoked; create a new one"
                    )));
                }
                key.previous_digest = std::mem::replace(&mut key.digest, digest(&secret));
                key.previous_valid_until_ms = Some(now_ms.saturating_add(grace_ms as i64));
                key.rotated_at = Some(now_rfc3339());
                key.rotated_by = Some(by.to_owned());
                Ok(())
            })
            .await?;
        Ok((before, after, secret))
    }

    /// Sets the key's rate and burst (each left alone when `None`).
    pub async fn set_rate(
        &self,
        name: &str,
        rate_per_s: Option<u32>,
        burst: Option<u32>,
    ) -> Result<(WriteKey, WriteKey), AccessError> {
        self.change(name, |key| {
            let (rate, burst) = self.check_rate(
                rate_per_s.or(Some(key.rate_per_s)),
                burst.or(Some(key.burst)),
            )?;
            key.rate_per_s = rate;
            key.burst = burst;
            Ok(())
        })
        .await
    }

    /// Revokes the key (both secrets); the record stays.
    pub async fn revoke(&self, name: &str, by: &str) -> Result<(WriteKey, WriteKey), AccessError> {
        self.change(name, |key| {
            if key.revoked_at.is_none() {
                key.revoked_at = Some(now_rfc3339());
                key.revoked_by = Some(by.to_owned());
            }
            Ok(())
        })
        .await
    }
}
