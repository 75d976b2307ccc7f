//! The plugin registry in NATS: code in the object store `NUDGE_PLUGIN_CODE` (one object per
//! SHA-256, immutable, shared by every version with that code), versions in the KV buckets
//! `NUDGE_PLUGINS` (current) and `NUDGE_PLUGIN_VERSIONS` (all). Nothing is stored that the host
//! would not load: the code must compile, link against what nudge grants and export the world.

use std::sync::Arc;

use async_nats::jetstream::object_store::ObjectStore;
use bytes::Bytes;
use nudge_rules::RuleError;
use tokio::io::AsyncReadExt;

use super::host::PluginHost;
use super::manifest::{Manifest, PluginRecord, validate_name};
use crate::versioned::{self, VersionedStore, now_rfc3339};

pub type Head = versioned::Head<PluginRecord>;
pub type StoreError = versioned::StoreError<RuleError>;

/// A write: new code, a new manifest, or both (what is missing is kept from the current version).
pub struct PluginWrite {
    pub wasm: Option<Bytes>,
    pub manifest: Option<Manifest>,
}

#[derive(Clone)]
pub struct PluginStore {
    records: VersionedStore<PluginRecord>,
    code: ObjectStore,
    host: Arc<PluginHost>,
    max_wasm_bytes: usize,
}

impl PluginStore {
    pub fn new(
        records: VersionedStore<PluginRecord>,
        code: ObjectStore,
        host: Arc<PluginHost>,
        max_wasm_bytes: usize,
    ) -> PluginStore {
        PluginStore {
            records,
            code,
            host,
            max_wasm_bytes,
        }
    }

    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    pub fn heads(&self) -> &async_nats::jetstream::kv::Store {
        self.records.heads()
    }

    pub async fn get(&self, name: &str) -> Result<PluginRecord, StoreError> {
        validate_name(name)?;
        self.records.get(name).await
    }

    pub async fn list(&self) -> Result<Vec<PluginRecord>, StoreError> {
        self.records.list().await
    }

    pub async fn versions(&self, name: &str, limit: u64) -> Result<Vec<Head>, StoreError> {
        validate_name(name)?;
        self.records.versions(name, limit).await
    }

    /// Refuses what is not a plugin nudge can run, with the reason under `field` `wasm`;
    /// answers the code's SHA-256 and the contract version it was built against.
    pub fn check_code(&self, wasm: &[u8]) -> Result<(String, &'static str), RuleError> {
        if wasm.len() > self.max_wasm_bytes {
            return Err(RuleError::invalid(
                "wasm",
                format!(
                    "is {} bytes; the limit is {} (plugin_max_wasm_bytes)",
                    wasm.len(),
                    self.max_wasm_bytes
                ),
            ));
        }
        let compiled = self
            .host
            .compile(wasm)
            .map_err(|reason| RuleError::invalid("wasm", reason))?;
        Ok((compiled.sha256.clone(), compiled.contract_version()))
    }

    /// Writes a new version. `expected_version`, when given, must be the current version.
    pub async fn put(
        &self,
        name: &str,
        write: PluginWrite,
        actor: &str,
        expected_version: Option<u64>,
    ) -> Result<PluginRecord, StoreError> {
        validate_name(name)?;
        let current = self
            .records
            .current_for_write(name, expected_version)
            .await?;
        let live = current
            .as_ref()
            .filter(|(h, _)| !h.deleted)
            .map(|(h, _)| &h.record);
        let manifest = match (write.manifest, live) {
            (Some(manifest), _) => manifest,
            (None, Some(record)) => record.manifest.clone(),
            (None, None) => Manifest::default(),
        };
        manifest.validate()?;
        let (sha256, size_bytes, contract) = match (write.wasm, live) {
            (Some(wasm), _) => {
                let (sha256, contract) = self.check_code(&wasm)?;
                self.store_code(&sha256, &wasm).await?;
                (sha256, wasm.len() as u64, contract.to_owned())
            }
            (None, Some(record)) => (
                record.sha256.clone(),
                record.size_bytes,
                record.contract.clone(),
            ),
            (None, None) => {
                return Err(RuleError::invalid("wasm", "a new plugin needs its .wasm code").into());
            }
        };
        let previous_version = current.as_ref().map_or(0, |(h, _)| h.record.version);
        let record = PluginRecord {
            name: name.to_owned(),
            version: previous_version + 1,
            sha256,
            size_bytes,
            contract,
            manifest,
            updated_by: actor.to_owned(),
            updated_at: now_rfc3339(),
        };
        let head = Head {
            record,
            deleted: false,
        };
        self.records
            .commit(head, current.map(|(_, r)| r), previous_version)
            .await
    }

    /// Marks a plugin deleted; every instance unloads it. Its versions and code stay.
    pub async fn delete(&self, name: &str, actor: &str) -> Result<PluginRecord, StoreError> {
        validate_name(name)?;
        let Some((head, revision)) = self.records.head(name).await?.filter(|(h, _)| !h.deleted)
        else {
            return Err(VersionedStore::<PluginRecord>::not_found(name));
        };
        let previous = head.record.version;
        let mut record = head.record;
        record.version += 1;
        record.updated_by = actor.to_owned();
        record.updated_at = now_rfc3339();
        let head = Head {
            record,
            deleted: true,
        };
        self.records.commit(head, Some(revision), previous).await
    }

    async fn store_code(&self, sha256: &str, wasm: &Bytes) -> Result<(), StoreError> {
        if self.code.info(sha256).await.is_ok() {
            return Ok(());
        }
        let mut reader = wasm.as_ref();
        self.code
            .put(sha256, &mut reader)
            .await
            .map_err(|e| StoreError::Nats(format!("plugin code store: {e}")))?;
        Ok(())
    }

    /// The code of a stored version.
    pub async fn code(&self, sha256: &str) -> Result<Bytes, StoreError> {
        let nats =
            |e: &dyn std::fmt::Display| StoreError::Nats(format!("plugin code {sha256}: {e}"));
        let mut object = self.code.get(sha256).await.map_err(|e| nats(&e))?;
        let mut wasm = Vec::new();
        object.read_to_end(&mut wasm).await.map_err(|e| nats(&e))?;
        Ok(Bytes::from(wasm))
    }
}
