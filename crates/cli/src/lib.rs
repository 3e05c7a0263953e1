//! The `atelier` command-line client: every command calls the orchestrator's gRPC API
//! (JobService, AccountService, webhooks included) or a service's health check, and prints for people or, with
//! `--json`, one JSON object per result.

pub mod args;
pub mod client;
pub mod commands;
pub mod error;
pub mod progress;
pub mod render;
pub mod requests;

use std::process::ExitCode;

pub use args::Cli;

/// Runs a parsed command line and turns its outcome into the exit code: 0 on success, 1 when a
/// call or the job failed, 2 for usage mistakes.
pub async fn run(cli: Cli) -> ExitCode {
    let endpoint = client::normalize_endpoint(&cli.global.endpoint);
    match commands::dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => error::report(&err, &endpoint),
    }
}
