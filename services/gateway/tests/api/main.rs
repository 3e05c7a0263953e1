//! The gateway's integration tests: a real gateway in front of a real orchestrator and processor.

/// Each test body on SQLite and on PostgreSQL.
pub(crate) use atelier_testkit::on_both_databases;

mod compat_generator;
mod compat_image_edit;
mod compat_image_editor;
mod compat_image_studio;
mod compat_jwt;
mod compat_task_api;
mod console;
mod errors;
mod events;
mod files;
mod helpers;
mod jobs;
mod meta;
mod trace;
mod uploads;
mod webhooks;
mod webp;
