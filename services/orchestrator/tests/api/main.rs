//! Integration tests of the job-orchestrator against a real processor, real storage and real HTTP
//! sources, on SQLite and on PostgreSQL (a fresh database per test).

mod helpers;

mod accounts;
mod auth;
mod crashes;
mod insight;
mod jobs;
mod ledger;
mod models;
mod ops;
mod quota;
mod replicas;
mod retries;
mod storage;
mod timeouts;
mod watch;
mod webhooks;
