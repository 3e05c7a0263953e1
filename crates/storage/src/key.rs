//! Object keys: the one place that decides which keys are acceptable, before any I/O.

use crate::StorageError;

/// Longest accepted key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;

/// Checks that `key` is relative, `/`-separated, without empty, `.` or `..` segments and at most
/// [`MAX_KEY_BYTES`] long, so that it maps to a path inside the storage root on every backend.
pub fn validate(key: &str) -> Result<(), StorageError> {
    let reason = if key.is_empty() {
        Some("is empty")
    } else if key.len() > MAX_KEY_BYTES {
        Some("is longer than 512 bytes")
    } else if key.starts_with('/') {
        Some("starts with '/'")
    } else if key.contains(['\\', '\0']) {
        // A backslash is a separator on Windows and NUL ends a path on every OS.
        Some("contains '\\' or NUL")
    } else if key.split('/').any(str::is_empty) {
        Some("has an empty segment")
    } else if key
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        Some("has a '.' or '..' segment")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StorageError::InvalidKey(format!("key {key:?} {reason}"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(key: &str) -> bool {
        matches!(validate(key), Err(StorageError::InvalidKey(_)))
    }

    #[test]
    fn accepts_relative_keys() {
        for key in ["a", "jobs/0190/image.jpg", "a.b/c..d/.hidden", "x y/é.png"] {
            assert!(validate(key).is_ok(), "{key}");
        }
        assert!(validate(&"k".repeat(MAX_KEY_BYTES)).is_ok());
    }

    #[test]
    fn rejects_escaping_or_malformed_keys() {
        for key in [
            "", "/abs", "../x", "a/../b", "a/..", "./a", "a/./b", "a//b", "a/", "a\\b", "a\0b",
        ] {
            assert!(rejected(key), "{key:?}");
        }
    }

    #[test]
    fn rejects_keys_over_512_bytes() {
        assert!(rejected(&"k".repeat(MAX_KEY_BYTES + 1)));
        // 257 two-byte characters: 257 chars but 514 bytes.
        assert!(rejected(&"é".repeat(257)));
    }
}
