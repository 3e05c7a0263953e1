//! What every handler shares: gRPC clients of one lazily connected channel, the limits of what callers
//! may send, and the services the gateway itself runs (file links, the studio proxy).

use std::sync::Arc;
use std::time::Duration;

use atelier_netguard::download::Downloader;
use atelier_proto::v1::account_service_client::AccountServiceClient;
use atelier_proto::v1::job_service_client::JobServiceClient;
use atelier_proto::v1::studio_service_client::StudioServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use axum::extract::FromRef;

use crate::routes::files;

/// Limits of what callers may send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest JSON body.
    pub max_json_bytes: usize,
    /// Largest upload, counted while it streams.
    pub max_upload_bytes: u64,
    /// Interval of the SSE keep-alive comments.
    pub keep_alive: Duration,
    /// Requests a minute per key on seed 002's routes (0: no limit).
    pub generator_per_minute: u32,
}

/// What every handler shares: gRPC clients of one lazily connected channel, and the limits.
#[derive(Clone)]
pub struct AppState {
    pub jobs: JobServiceClient<Channel>,
    pub accounts: AccountServiceClient<Channel>,
    pub studio: StudioServiceClient<Channel>,
    pub health: HealthClient<Channel>,
    pub limits: Limits,
    /// Serves `/v1/files/{token}` when a local storage folder and link secret are configured.
    pub files: Option<Arc<files::FileServer>>,
    /// The guarded downloader of the studio proxy.
    pub proxy: Arc<Downloader>,
}

impl AppState {
    /// Clients over `channel`; `proxy` fetches what the studio proxy is asked for.
    pub fn new(channel: Channel, limits: Limits, proxy: Downloader) -> Self {
        Self {
            jobs: JobServiceClient::new(channel.clone()),
            accounts: AccountServiceClient::new(channel.clone()),
            studio: StudioServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            limits,
            files: None,
            proxy: Arc::new(proxy),
        }
    }
}

impl FromRef<AppState> for files::LocalFiles {
    fn from_ref(state: &AppState) -> Self {
        Self(state.files.clone())
    }
}
