//! What integration tests of several services share: real test images (good and hostile) and a
//! real HTTP/1.1 source server on 127.0.0.1 that can misbehave on purpose.

#![allow(clippy::unwrap_used)]

pub mod images;
pub mod source;

pub use source::{Seen, SourceServer};
