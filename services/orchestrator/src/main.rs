//! The `atelier-orchestrator` binary: configuration, telemetry, signals; everything else is in the library.

use anyhow::Context;
use atelier_orchestrator::{app, Application, Cli, Command};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    atelier_telemetry::init(cli.config.log_format)
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => app::migrate(&cli.config)
            .await
            .context("migrating the database"),
        Command::Serve => {
            let shutdown = CancellationToken::new();
            tokio::spawn(atelier_telemetry::cancel_on_signal(shutdown.clone()));
            let app = Application::build(cli.config)
                .await
                .context("starting the orchestrator")?;
            tracing::info!(addr = %app.local_addr(), "orchestrator listening");
            app.run_until_stopped(shutdown).await.context("serving")
        }
    }
}
