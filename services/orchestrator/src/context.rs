//! What every part of a running orchestrator shares.

use std::collections::HashMap;
use std::sync::Arc;

use atelier_storage::{Links, Storage};
use sea_orm::DatabaseConnection;

use crate::auth::Auth;
use crate::dispatch::{DispatchHandle, Processors};
use crate::domain::Kind;
use crate::events::EventBus;

/// Settings that shape the API's answers.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Quota units per task (generate: per image) by kind.
    pub prices: HashMap<Kind, i64>,
    /// Most jobs an account may have queued or running (2003 beyond).
    pub max_active_jobs: u32,
    /// Largest upload accepted by UploadSource.
    pub max_upload_bytes: u64,
}

/// Shared state of the services and the dispatcher.
#[derive(Clone)]
pub struct Context {
    pub db: DatabaseConnection,
    pub auth: Auth,
    pub bus: EventBus,
    pub storage: Storage,
    /// Mints the result links of outputs when jobs and events are read.
    pub links: Links,
    pub policy: Arc<Policy>,
    pub dispatch: DispatchHandle,
    /// The processors and what they offer (3006 at submit, ListModels).
    pub processors: Processors,
    pub metrics: crate::metrics::Metrics,
    /// Retention defaults and the sweeper's pace.
    pub retention: crate::retention::Settings,
}
