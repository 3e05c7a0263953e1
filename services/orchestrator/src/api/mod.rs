//! The gRPC services callers talk to.

pub mod accounts;
pub mod convert;
pub mod jobs;
mod report;
pub mod studio;
mod upload;
mod watch;
mod webhooks;

use crate::error::ApiError;

/// Reads a page size: 0 means `default`, more than `max` is refused.
pub fn page_size(requested: u32, default: u64, max: u64) -> Result<u64, ApiError> {
    match u64::from(requested) {
        0 => Ok(default),
        n if n <= max => Ok(n),
        _ => Err(ApiError::field("page_size", format!("at most {max}"))),
    }
}
