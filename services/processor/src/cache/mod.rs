//! The content cache (SPEC §4 Cache), shared by stateless processors through the object storage.
//!
//! A task's result is recorded, after its outputs are uploaded, as a manifest at
//! `t/{tenant_id}/cache/{key}`: a prost-encoded list of the outputs (keys, sizes, hashes, thumbnails).
//! A later task of the same tenant with the same key reuses those objects without running the engine
//! or calling a provider. A manifest that is missing, unreadable, or names an object that is gone is
//! a miss, never an error. Identical tasks in flight at once on one processor run once
//! ([`Inflight`]); across processors they may both run (the second then simply overwrites the
//! manifest with an equivalent one).

mod inflight;
mod key;

use atelier_proto::v1;
use atelier_storage::{Storage, StorageError};
use bytes::Bytes;
use prost::Message;

pub use inflight::{Inflight, LeaderGuard, Turn, Waiter};
pub use key::cache_key;

/// Largest manifest read back.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// What the cache stores per entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Manifest {
    /// The key it was stored under, checked on read.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The task kind, for people reading the bucket.
    #[prost(string, tag = "2")]
    pub kind: String,
    /// The outputs as they were reported.
    #[prost(message, repeated, tag = "3")]
    pub outputs: Vec<v1::Output>,
}

/// One cache entry's place: the tenant's key and its storage location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The tenant scope.
    pub tenant_id: String,
    /// 64 hex digits.
    pub key: String,
}

impl Slot {
    /// The entry for `key` in `tenant_id`'s scope; `None` when the tenant id cannot be part of a
    /// storage key (then the task simply is not cached).
    pub fn new(tenant_id: &str, key: String) -> Option<Self> {
        let safe = !tenant_id.is_empty()
            && tenant_id.len() <= 128
            && tenant_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && tenant_id != "."
            && tenant_id != "..";
        safe.then(|| Self {
            tenant_id: tenant_id.to_string(),
            key,
        })
    }

    /// `t/{tenant_id}/cache/{key}`.
    pub fn location(&self) -> String {
        format!("t/{}/cache/{}", self.tenant_id, self.key)
    }
}

/// Reads and writes manifests.
#[derive(Clone, Debug)]
pub struct ContentCache {
    storage: Storage,
}

impl ContentCache {
    /// A cache in `storage`.
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }

    /// The stored outputs for `slot`, marked `from_cache`, if the entry and every object it names
    /// are there.
    pub async fn lookup(&self, slot: &Slot) -> Option<Vec<v1::Output>> {
        let location = slot.location();
        let bytes = match self.storage.get(&location, MAX_MANIFEST_BYTES).await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound(_)) => return None,
            Err(err) => {
                tracing::warn!(error = %err, %location, "cache entry unreadable; treated as a miss");
                return None;
            }
        };
        let manifest = match Manifest::decode(bytes) {
            Ok(m) if m.key == slot.key && !m.outputs.is_empty() => m,
            Ok(_) => {
                tracing::warn!(%location, "cache entry does not match its key; treated as a miss");
                return None;
            }
            Err(err) => {
                tracing::warn!(error = %err, %location, "cache entry is corrupt; treated as a miss");
                return None;
            }
        };
        let mut outputs = Vec::with_capacity(manifest.outputs.len());
        for mut output in manifest.outputs {
            let thumb_key = output.thumbnail.as_ref().map(|t| t.key.clone());
            for key in std::iter::once(output.key.clone()).chain(thumb_key) {
                if !self.object_present(&key).await {
                    tracing::info!(%location, missing = %key, "cached object is gone; treated as a miss");
                    return None;
                }
            }
            output.url = self.storage.url(&output.key);
            if let Some(thumb) = output.thumbnail.as_mut() {
                thumb.url = self.storage.url(&thumb.key);
            }
            output.from_cache = true;
            outputs.push(output);
        }
        Some(outputs)
    }

    async fn object_present(&self, key: &str) -> bool {
        if key.is_empty() {
            return false;
        }
        match self.storage.exists(key).await {
            Ok(present) => present,
            Err(err) => {
                tracing::warn!(error = %err, key, "cannot check a cached object; treated as a miss");
                false
            }
        }
    }

    /// Records `outputs` under `slot`; a failure is logged, never reported (the task succeeded).
    pub async fn store(&self, slot: &Slot, kind: &str, outputs: &[v1::Output]) {
        let manifest = Manifest {
            key: slot.key.clone(),
            kind: kind.to_string(),
            outputs: outputs
                .iter()
                .map(|o| v1::Output {
                    from_cache: false,
                    ..o.clone()
                })
                .collect(),
        };
        let location = slot.location();
        let body = Bytes::from(manifest.encode_to_vec());
        match self
            .storage
            .put(&location, body, "application/x-protobuf")
            .await
        {
            Ok(()) => tracing::info!(%location, "result cached"),
            Err(err) => tracing::warn!(error = %err, %location, "cannot store the cache entry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_tenant_ids_get_a_slot() {
        let slot = Slot::new("tenant-1", "ab".into()).expect("safe");
        assert_eq!(slot.location(), "t/tenant-1/cache/ab");
        for bad in ["", "..", "a/b", "a b", "ü"] {
            assert!(Slot::new(bad, "ab".into()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn manifests_round_trip() {
        let manifest = Manifest {
            key: "k".into(),
            kind: "transform".into(),
            outputs: vec![v1::Output {
                name: "image.jpg".into(),
                key: "t/x/jobs/j/t/1/image.jpg".into(),
                ..Default::default()
            }],
        };
        let decoded = Manifest::decode(manifest.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(decoded, manifest);
        assert!(Manifest::decode(&b"\xff\xff\xff"[..]).is_err());
    }
}
