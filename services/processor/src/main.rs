//! The `atelier-processor` binary: configuration, telemetry, signals; everything else is in the library.

use anyhow::Context;
use atelier_processor::{Application, Config};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    atelier_telemetry::init(config.log_format)
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(atelier_telemetry::cancel_on_signal(shutdown.clone()));
    let app = Application::build(config)
        .await
        .context("starting the processor")?;
    tracing::info!(addr = %app.local_addr(), metrics = %app.metrics_addr(), "processor listening");
    app.run_until_stopped(shutdown).await.context("serving")?;
    Ok(())
}
