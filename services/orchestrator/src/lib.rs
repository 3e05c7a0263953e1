//! The job-orchestrator: owns the database, accounts, quota, job and task state, retries and progress
//! events, and sends tasks to image-processors.

pub mod api;
pub mod app;
pub mod auth;
pub mod callbacks;
pub mod config;
pub mod context;
pub mod db;
pub mod dispatch;
pub mod domain;
pub mod error;
pub mod events;
pub mod health;
pub mod jobs;
pub mod layers;
pub mod links;
pub mod listener;
pub mod metrics;
pub mod observer;
pub mod retention;
pub mod webhooks;

pub use app::{spawn, Application, RunningOrchestrator, StartError};
pub use config::{Cli, Command, Config};
