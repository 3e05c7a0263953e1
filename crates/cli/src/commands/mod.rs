//! One module per group of commands; [`dispatch`] runs the parsed command line.

pub mod account;
pub mod admin;
pub mod download;
pub mod health;
pub mod jobs;
pub mod models;
pub mod stats;
pub mod watch;
pub mod webhooks;

use crate::args::{Cli, Command};
use crate::client::Api;

/// Runs the command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let Cli { global, command } = cli;
    let as_json = global.json;
    if let Command::Health(args) = &command {
        return health::run(&global.endpoint, as_json, args).await;
    }
    let api = Api::connect(&global).await?;
    match &command {
        Command::Upload { file } => jobs::upload(&api, as_json, file).await,
        Command::Submit(args) => jobs::submit(&api, as_json, args).await,
        Command::Watch(args) => watch::follow(&api, as_json, &args.job_id, args.after).await,
        Command::Get { job_id } => jobs::get(&api, as_json, job_id).await,
        Command::Download { job_id, dir } => {
            download::run(&api, as_json, job_id, dir.as_deref()).await
        }
        Command::Delete { job_id } => jobs::delete(&api, as_json, job_id).await,
        Command::List(args) => jobs::list(&api, as_json, args).await,
        Command::Cancel { job_id } => jobs::cancel(&api, as_json, job_id).await,
        Command::Account(args) => account::account(&api, as_json, args).await,
        Command::Ledger(args) => account::ledger(&api, as_json, args).await,
        Command::Webhooks(command) => webhooks::run(&api, as_json, command).await,
        Command::Admin(command) => admin::run(&api, as_json, command).await,
        Command::Models => models::list(&api, as_json).await,
        Command::Stats(args) => stats::show(&api, as_json, args).await,
        Command::Health(_) => Ok(()),
    }
}
