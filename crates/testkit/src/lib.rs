//! What integration tests of several services share: real test images (good and hostile), a real
//! HTTP/1.1 source server on 127.0.0.1 that can misbehave on purpose, a fake model provider
//! speaking the OpenAI Images API, fake remote matting services (remove.bg, rembg), a webhook
//! receiver that records what it was sent, a private PostgreSQL server a test may stop and start,
//! tiny ONNX models with a known answer, and (feature `stack`) the whole product started for a test.

#![allow(clippy::unwrap_used)]

pub mod foreign;
pub mod images;
pub mod matting;
pub mod onnx;
pub mod postgres;
pub mod provider;
pub mod source;
#[cfg(feature = "stack")]
pub mod stack;
pub mod webhook;

pub use foreign::{ForeignServer, Speaks};
pub use matting::MattingServer;
pub use postgres::PrivatePostgres;
pub use provider::ProviderServer;
pub use source::{Seen, SourceServer};
pub use webhook::WebhookReceiver;
