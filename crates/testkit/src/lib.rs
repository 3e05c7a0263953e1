//! What integration tests of several services share: real test images (good and hostile), a real
//! HTTP/1.1 source server on 127.0.0.1 that can misbehave on purpose, a fake model provider
//! speaking the OpenAI Images API, and fake remote matting services (remove.bg, rembg).

#![allow(clippy::unwrap_used)]

pub mod images;
pub mod matting;
pub mod onnx;
pub mod provider;
pub mod source;

pub use matting::MattingServer;
pub use provider::ProviderServer;
pub use source::{Seen, SourceServer};
