//! `atelier-gateway`: parses the configuration, sets up logging and serves until SIGTERM or Ctrl-C.

use atelier_gateway::{Application, Config};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    atelier_telemetry::init(config.log_format).map_err(|e| anyhow::anyhow!(e))?;
    let app = Application::build(config).await?;
    tracing::info!(addr = %app.local_addr(), "gateway listening");
    let shutdown = CancellationToken::new();
    tokio::spawn(atelier_telemetry::cancel_on_signal(shutdown.clone()));
    app.run_until_stopped(shutdown).await
}
