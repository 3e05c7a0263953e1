//! The REST JSON shapes: lower-case snake_case enums, RFC 3339 timestamps, null for what is unset.

pub mod enums;
pub mod event;
pub mod job;
pub mod other;
pub mod params;
pub mod time;
pub mod webhook;
