//! Atelier's REST gateway: HTTP/JSON, Server-Sent Events and the replaced systems' routes, translated
//! to the orchestrator's gRPC. It holds no state; keys are checked by the orchestrator.

pub mod app;
pub mod call;
pub mod compat;
pub mod config;
pub mod error;
pub mod extract;
pub mod model;
pub mod openapi;
pub mod request_id;
pub mod router;
pub mod routes;
pub mod state;

pub use app::{spawn, spawn_on, Application, RunningGateway};
pub use config::Config;
