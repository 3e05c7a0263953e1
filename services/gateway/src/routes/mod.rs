//! The HTTP handlers of `/v1` (REST JSON), `/healthz` and `/openapi.json`; the router that mounts
//! them with the compatibility families is [`crate::router`].

pub mod console;
pub mod events;
pub mod files;
pub mod jobs;
pub mod meta;
pub mod uploads;
pub mod webhooks;
