//! Integration tests of the job-orchestrator against a real processor, real storage and real HTTP
//! sources, on SQLite and on PostgreSQL (a fresh database per test; the fault tests bring their own
//! PostgreSQL and S3-compatible servers).

/// Each test body on SQLite and on PostgreSQL.
pub(crate) use atelier_testkit::on_both_databases;

mod helpers;

mod accounts;
mod auth;
mod batches;
mod crashes;
mod faults;
mod foreign_providers;
mod insight;
mod jobs;
mod ledger;
mod limits;
mod models;
mod ops;
mod quota;
mod replicas;
mod report;
mod retention;
mod retries;
mod shutdown;
mod storage;
mod studio;
mod timeouts;
mod watch;
mod webhooks;
