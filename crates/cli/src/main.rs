//! The `atelier` binary: parses the command line (usage errors exit 2) and runs it.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    atelier_cli::run(atelier_cli::Cli::parse()).await
}
