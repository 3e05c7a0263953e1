//! Atelier image-processor: downloads a source image, runs the engine or a remote model provider and
//! uploads the results, serving `atelier.v1.ProcessorService` to the orchestrator. Results are reused
//! through a tenant-scoped content cache in the object storage.

pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod download;
pub mod matting;
pub mod metrics;
pub mod process;
pub mod providers;

pub use app::{spawn, Application, RunningProcessor, StartError};
pub use config::{Config, LogFormat};
pub use download::IpNet;
pub use providers::{ModelConfig, ModelKind, Protocol, ProviderConfig};
