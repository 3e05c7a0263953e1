//! Objects as files under a local folder.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::StorageError;

/// Distinguishes temporary files written concurrently by this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A local folder holding one file per object; keys are paths relative to it.
#[derive(Clone, Debug)]
pub struct LocalFs {
    root: Arc<PathBuf>,
}

impl LocalFs {
    /// Opens (creating if missing) the folder at `location`.
    pub(crate) async fn open(location: &str) -> Result<LocalFs, StorageError> {
        if location.trim().is_empty() {
            return Err(StorageError::Config("storage location is empty".into()));
        }
        fs::create_dir_all(location).await.map_err(|err| {
            StorageError::Backend(format!("cannot create storage folder {location}: {err}"))
        })?;
        // Absolute and canonical so that url() names the same file whatever the current directory.
        let root = fs::canonicalize(location).await.map_err(|err| {
            StorageError::Backend(format!("cannot resolve storage folder {location}: {err}"))
        })?;
        Ok(LocalFs {
            root: Arc::new(root),
        })
    }

    /// The absolute folder holding the objects.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        // Keys are validated: relative, no `..`, so the path stays under the root.
        self.root.join(key)
    }

    pub(crate) async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let path = self.path(key);
        let Some(folder) = path.parent() else {
            return Err(StorageError::InvalidKey(key.to_owned()));
        };
        fs::create_dir_all(folder)
            .await
            .map_err(|err| io_error("create folder for", key, err))?;
        // Readers never see a half-written object: write aside in the same folder (same file
        // system), flush to disk, then rename over the final name in one step.
        let (temp_path, mut file) = create_temp_file(folder, key).await?;
        let written = async {
            file.write_all(&data).await?;
            file.sync_all().await?;
            drop(file);
            fs::rename(&temp_path, &path).await
        }
        .await;
        if let Err(err) = written {
            // Best effort: the write already failed, the leftover temp file is only clutter.
            let _ = fs::remove_file(&temp_path).await;
            return Err(io_error("write", key, err));
        }
        tracing::debug!(key, bytes = data.len(), "stored object in local folder");
        Ok(())
    }

    pub(crate) async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes, StorageError> {
        let file = match fs::File::open(self.path(key)).await {
            Ok(file) => file,
            Err(err) if is_missing(&err) => return Err(StorageError::NotFound(key.to_owned())),
            Err(err) => return Err(io_error("open", key, err)),
        };
        let metadata = file
            .metadata()
            .await
            .map_err(|err| io_error("stat", key, err))?;
        if !metadata.is_file() {
            return Err(StorageError::NotFound(key.to_owned()));
        }
        let too_large = || StorageError::TooLarge {
            key: key.to_owned(),
            limit: max_bytes,
        };
        if metadata.len() > max_bytes {
            return Err(too_large());
        }
        // The size may change between stat and read (another writer renames over it only, but a
        // foreign process could append): cap the read one byte past the limit to detect it.
        let capacity = usize::try_from(metadata.len()).unwrap_or(0);
        let mut buffer = Vec::with_capacity(capacity);
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut buffer)
            .await
            .map_err(|err| io_error("read", key, err))?;
        if u64::try_from(buffer.len()).map_or(true, |len| len > max_bytes) {
            return Err(too_large());
        }
        Ok(Bytes::from(buffer))
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match fs::metadata(self.path(key)).await {
            Ok(metadata) => Ok(metadata.is_file()),
            Err(err) if is_missing(&err) => Ok(false),
            Err(err) => Err(io_error("stat", key, err)),
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(err) if is_missing(&err) => Ok(()),
            Err(err) => Err(io_error("delete", key, err)),
        }
    }

    pub(crate) fn url(&self, key: &str) -> String {
        let path = self.path(key);
        match url::Url::from_file_path(&path) {
            Ok(url) => url.to_string(),
            // Only for relative paths, which the canonical root rules out.
            Err(()) => format!("file://{}", path.display()),
        }
    }

    pub(crate) async fn check(&self) -> Result<(), StorageError> {
        let folder: &Path = &self.root;
        let (temp_path, file) = create_temp_file(folder, "readiness-check").await?;
        drop(file);
        fs::remove_file(&temp_path)
            .await
            .map_err(|err| io_error("remove", "readiness check file", err))
    }
}

/// Creates a new, uniquely named hidden file in `folder`.
async fn create_temp_file(folder: &Path, key: &str) -> Result<(PathBuf, fs::File), StorageError> {
    const ATTEMPTS: u32 = 16;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let name = format!(
            ".atelier-tmp.{}.{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let temp_path = folder.join(name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .await
        {
            Ok(file) => return Ok((temp_path, file)),
            // Left behind by an earlier process with the same id: try the next name.
            Err(err) if err.kind() == ErrorKind::AlreadyExists => last_error = Some(err),
            Err(err) => return Err(io_error("create temporary file for", key, err)),
        }
    }
    let err = last_error.unwrap_or_else(|| ErrorKind::AlreadyExists.into());
    Err(io_error("create temporary file for", key, err))
}

fn is_missing(err: &std::io::Error) -> bool {
    // NotADirectory: a leading segment of the key is a file, so the object cannot exist.
    matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

fn io_error(action: &str, key: &str, err: std::io::Error) -> StorageError {
    StorageError::Backend(format!("cannot {action} {key}: {err}"))
}
