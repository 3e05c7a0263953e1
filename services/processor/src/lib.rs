//! Atelier image-processor: downloads a source image, runs the engine and uploads the results, serving
//! `atelier.v1.ProcessorService` to the orchestrator.

pub mod app;
pub mod auth;
pub mod config;
pub mod download;
pub mod process;

pub use app::{spawn, Application, RunningProcessor, StartError};
pub use config::{Config, LogFormat};
pub use download::IpNet;
