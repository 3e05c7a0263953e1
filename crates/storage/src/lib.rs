//! Object storage for Atelier: a local folder or any S3-compatible store (AWS S3, Cloudflare R2,
//! MinIO, Garage), behind one small enum.

mod key;
mod links;
mod local;
mod s3;
#[cfg(feature = "testing")]
pub mod testing;

use bytes::Bytes;

pub use key::MAX_KEY_BYTES;
pub use links::{
    unix_now, FileGrant, LinkSigner, Links, TokenError, DEFAULT_LINK_TTL, MAX_LINK_TTL,
};
pub use local::LocalFs;
pub use s3::{S3Options, S3Store};

/// Where objects live: exactly the backends that exist.
#[derive(Clone, Debug)]
pub enum Storage {
    /// Objects are files under a local folder.
    LocalFs(LocalFs),
    /// Objects live in an S3-compatible bucket.
    S3(S3Store),
}

/// What can go wrong when storing or fetching an object.
#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    /// The key is not a relative, `/`-separated path of at most 512 bytes.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// No object has this key.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The object is bigger than the caller accepts.
    #[error("object {key} is larger than {limit} bytes")]
    TooLarge {
        /// Key of the object.
        key: String,
        /// Largest size the caller accepted, in bytes.
        limit: u64,
    },
    /// The backend failed (I/O error, network, S3 service error).
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The storage location or options are unusable.
    #[error("storage configuration error: {0}")]
    Config(String),
}

impl Storage {
    /// "s3://bucket[/prefix]" selects S3, anything else is a local folder path (created if missing).
    pub async fn open(location: &str, s3: &S3Options) -> Result<Storage, StorageError> {
        match location.strip_prefix("s3://") {
            Some(bucket_and_prefix) => Ok(Storage::S3(S3Store::new(bucket_and_prefix, s3)?)),
            None => Ok(Storage::LocalFs(LocalFs::open(location).await?)),
        }
    }

    /// Stores `data` under `key`, replacing any previous object.
    pub async fn put(
        &self,
        key: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        key::validate(key)?;
        match self {
            Storage::LocalFs(store) => store.put(key, data).await,
            Storage::S3(store) => store.put(key, data, content_type).await,
        }
    }

    /// Fails with TooLarge (without reading everything) when the object is bigger than max_bytes.
    pub async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes, StorageError> {
        key::validate(key)?;
        match self {
            Storage::LocalFs(store) => store.get(key, max_bytes).await,
            Storage::S3(store) => store.get(key, max_bytes).await,
        }
    }

    /// Tells whether an object has this key.
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        key::validate(key)?;
        match self {
            Storage::LocalFs(store) => store.exists(key).await,
            Storage::S3(store) => store.exists(key).await,
        }
    }

    /// Removes the object; removing a missing object succeeds, as on S3.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        key::validate(key)?;
        match self {
            Storage::LocalFs(store) => store.delete(key).await,
            Storage::S3(store) => store.delete(key).await,
        }
    }

    /// Where a caller finds the object: file:// URL of the absolute path, public_base_url/key, or s3://bucket/key.
    pub fn url(&self, key: &str) -> String {
        match self {
            Storage::LocalFs(store) => store.url(key),
            Storage::S3(store) => store.url(key),
        }
    }

    /// Answers once the backend is reachable (folder writable / bucket exists), for readiness.
    pub async fn check(&self) -> Result<(), StorageError> {
        match self {
            Storage::LocalFs(store) => store.check().await,
            Storage::S3(store) => store.check().await,
        }
    }
}
