//! Versioned records in NATS KV, shared by rules and plugins: the current version per key in a
//! heads bucket, every version ever written in a versions bucket (`<key>.<version>`). Writes
//! compare-and-set on the head's revision, so two editors (or two instances) never overwrite each
//! other silently; a delete is a new version marked deleted, so numbering keeps counting up.

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a versioned store keeps: something with a key and a version number.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + Sync {
    /// What the record is, for error messages (`rule`, `plugin`).
    const NOUN: &'static str;
    fn key(&self) -> &str;
    fn version(&self) -> u64;
}

/// The value of a key in the heads bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "T: Record")]
pub struct Head<T> {
    #[serde(flatten)]
    pub record: T,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError<E: std::error::Error + 'static> {
    #[error("{noun} {id} not found")]
    NotFound { noun: &'static str, id: String },
    #[error("{noun} {id} is at version {actual}, not {expected}: reload and edit again")]
    Conflict {
        noun: &'static str,
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Invalid(#[from] E),
    #[error("{0}")]
    Nats(String),
}

#[derive(Clone)]
pub struct VersionedStore<T> {
    heads: kv::Store,
    versions: kv::Store,
    _record: std::marker::PhantomData<fn() -> T>,
}

impl<T: Record> VersionedStore<T> {
    pub fn new(heads: kv::Store, versions: kv::Store) -> Self {
        VersionedStore {
            heads,
            versions,
            _record: std::marker::PhantomData,
        }
    }

    pub fn heads(&self) -> &kv::Store {
        &self.heads
    }

    fn nats<E: std::error::Error + 'static>(&self, e: impl std::fmt::Display) -> StoreError<E> {
        StoreError::Nats(format!("{} store: {e}", T::NOUN))
    }

    pub fn not_found<E: std::error::Error + 'static>(id: impl Into<String>) -> StoreError<E> {
        StoreError::NotFound {
            noun: T::NOUN,
            id: id.into(),
        }
    }

    /// The head of `id` and its KV revision, deleted or not.
    pub async fn head<E: std::error::Error + 'static>(
        &self,
        id: &str,
    ) -> Result<Option<(Head<T>, u64)>, StoreError<E>> {
        let Some(entry) = self.heads.entry(id).await.map_err(|e| self.nats(e))? else {
            return Ok(None);
        };
        if entry.operation != Operation::Put {
            return Ok(None);
        }
        let head: Head<T> = serde_json::from_slice(&entry.value).map_err(|e| self.nats(e))?;
        Ok(Some((head, entry.revision)))
    }

    /// The current version of `id`, unless deleted.
    pub async fn get<E: std::error::Error + 'static>(&self, id: &str) -> Result<T, StoreError<E>> {
        match self.head(id).await? {
            Some((head, _)) if !head.deleted => Ok(head.record),
            _ => Err(Self::not_found(id)),
        }
    }

    /// Every record's current version, by key.
    pub async fn list<E: std::error::Error + 'static>(&self) -> Result<Vec<T>, StoreError<E>> {
        let mut ids: Vec<String> = match self.heads.keys().await {
            Ok(keys) => keys.try_collect().await.map_err(|e| self.nats(e))?,
            Err(e) => return Err(self.nats(e)),
        };
        ids.sort();
        let heads = futures::stream::iter(ids)
            .map(|id| async move { self.head(&id).await })
            .buffered(16)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(heads
            .into_iter()
            .flatten()
            .filter(|(h, _)| !h.deleted)
            .map(|(h, _)| h.record)
            .collect())
    }

    /// The version a new write would replace; `expected`, when given, must be it.
    pub async fn current_for_write<E: std::error::Error + 'static>(
        &self,
        id: &str,
        expected: Option<u64>,
    ) -> Result<Option<(Head<T>, u64)>, StoreError<E>> {
        let current = self.head(id).await?;
        let actual = current.as_ref().map_or(0, |(h, _)| h.record.version());
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(StoreError::Conflict {
                noun: T::NOUN,
                id: id.into(),
                expected,
                actual,
            });
        }
        Ok(current)
    }

    /// Compare-and-set on the head (at `revision`, or created if `None`), then records the
    /// version. The head is the commit point: if a crash comes in between, `version()` serves that
    /// version from the head instead.
    pub async fn commit<E: std::error::Error + 'static>(
        &self,
        head: Head<T>,
        revision: Option<u64>,
        previous_version: u64,
    ) -> Result<T, StoreError<E>> {
        let id = head.record.key().to_owned();
        let value = Bytes::from(serde_json::to_vec(&head).map_err(|e| self.nats(e))?);
        let written = match revision {
            Some(revision) => self
                .heads
                .update(&id, value.clone(), revision)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => self
                .heads
                .create(&id, value.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(error) = written {
            let actual = self
                .head::<E>(&id)
                .await?
                .map_or(0, |(h, _)| h.record.version());
            if actual != previous_version {
                return Err(StoreError::Conflict {
                    noun: T::NOUN,
                    id,
                    expected: previous_version,
                    actual,
                });
            }
            return Err(self.nats(error));
        }
        self.versions
            .put(version_key(&id, head.record.version()), value)
            .await
            .map_err(|e| self.nats(e))?;
        Ok(head.record)
    }

    /// One version, deleted versions included.
    pub async fn version<E: std::error::Error + 'static>(
        &self,
        id: &str,
        version: u64,
    ) -> Result<Head<T>, StoreError<E>> {
        if let Some(value) = self
            .versions
            .get(version_key(id, version))
            .await
            .map_err(|e| self.nats(e))?
        {
            return serde_json::from_slice(&value).map_err(|e| self.nats(e));
        }
        match self.head(id).await? {
            Some((head, _)) if head.record.version() == version => Ok(head),
            _ => Err(Self::not_found(format!("{id} version {version}"))),
        }
    }

    /// The newest `limit` versions, newest first.
    pub async fn versions<E: std::error::Error + 'static>(
        &self,
        id: &str,
        limit: u64,
    ) -> Result<Vec<Head<T>>, StoreError<E>> {
        let Some((head, _)) = self.head(id).await? else {
            return Err(Self::not_found(id));
        };
        let newest = head.record.version();
        let oldest = newest.saturating_sub(limit.max(1) - 1).max(1);
        let found: Vec<Option<Head<T>>> = futures::stream::iter((oldest..=newest).rev())
            .map(|v| async move {
                match self.version(id, v).await {
                    Ok(head) => Ok(Some(head)),
                    Err(StoreError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(16)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }
}

fn version_key(id: &str, version: u64) -> String {
    format!("{id}.{version}")
}

/// How long a change's answer waits for this instance to run the change.
pub const LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits (at most [`LIVE_WAIT`]) until this instance's watch has applied a change just stored
/// — `running()` (the version of `key` this instance uses) reaches `version`, or with `None`
/// is gone — so whoever made it can send an event right after and see it decided with the
/// change here (other instances follow their own watch within milliseconds). Warns if it did
/// not arrive in time.
pub async fn wait_live(
    noun: &str,
    key: &str,
    version: Option<u64>,
    running: impl Fn() -> Option<u64>,
) {
    let deadline = tokio::time::Instant::now() + LIVE_WAIT;
    loop {
        let arrived = match (version, running()) {
            (Some(version), running) => running.is_some_and(|v| v >= version),
            (None, running) => running.is_none(),
        };
        if arrived {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                noun,
                key,
                ?version,
                "the change is stored but not yet used here"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Follows a heads bucket until `shutdown`: replays every key, then every change, through
/// `apply`. `loaded` turns true once the replay reached the present. A broken watch (the
/// broker restarted) resumes from a full replay; `apply` must tolerate seeing a version again.
pub async fn follow<F>(
    heads: &kv::Store,
    noun: &'static str,
    loaded: &std::sync::atomic::AtomicBool,
    shutdown: &tokio_util::sync::CancellationToken,
    mut apply: impl FnMut(kv::Entry) -> F,
) where
    F: std::future::Future<Output = ()>,
{
    use std::sync::atomic::Ordering;
    while !shutdown.is_cancelled() {
        let watched = async {
            let mut watch = heads.watch_with_history(">").await?;
            if heads.status().await?.values() == 0 {
                loaded.store(true, Ordering::Release);
            }
            loop {
                let entry = tokio::select! {
                    _ = shutdown.cancelled() => return anyhow::Ok(()),
                    entry = watch.next() => entry,
                };
                let Some(entry) = entry else {
                    anyhow::bail!("watch ended");
                };
                let entry = entry?;
                let caught_up = entry.delta == 0;
                apply(entry).await;
                if caught_up {
                    loaded.store(true, Ordering::Release);
                }
            }
        }
        .await;
        if let Err(error) = watched {
            tracing::warn!(%error, "{noun} watch interrupted; resuming");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }
}
