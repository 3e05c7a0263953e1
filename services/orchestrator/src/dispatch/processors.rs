//! The processors this orchestrator sends tasks to, chosen round-robin among those that can run the
//! task, and the catalogue of what they offer (kinds, providers, models) from `GetCapabilities`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use atelier_proto::v1 as pb;
use atelier_proto::v1::processor_service_client::ProcessorServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Lazily connected clients of every configured processor.
#[derive(Clone)]
pub struct Processors {
    clients: Arc<Vec<ProcessorServiceClient<Channel>>>,
    next: Arc<AtomicUsize>,
    token: MetadataValue<tonic::metadata::Ascii>,
    catalog: Arc<RwLock<Catalog>>,
}

/// The last capabilities each processor reported (`None`: not reachable at the last look).
#[derive(Default)]
struct Catalog {
    capabilities: Vec<Option<pb::Capabilities>>,
    refreshed_at: Option<Instant>,
}

/// How long a catalogue is trusted before a submit for a model kind looks again.
const CATALOG_MAX_AGE: Duration = Duration::from_secs(30);
/// Never ask the processors more often than this, however many submits name an unknown model.
const CATALOG_MIN_AGE: Duration = Duration::from_secs(2);

impl Processors {
    /// Clients for `addresses` (e.g. `http://127.0.0.1:50052`), authenticating with the service token.
    pub fn new(addresses: &[String], token: &str) -> anyhow::Result<Self> {
        if addresses.is_empty() {
            anyhow::bail!("give at least one processor address");
        }
        let mut clients = Vec::new();
        for address in addresses {
            let endpoint = Endpoint::from_shared(address.clone())?
                .connect_timeout(Duration::from_secs(5))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(20))
                .keep_alive_while_idle(true);
            clients.push(
                ProcessorServiceClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(16 << 20),
            );
        }
        let token = token
            .parse()
            .map_err(|_| anyhow::anyhow!("the service token must be printable ASCII"))?;
        Ok(Self {
            clients: Arc::new(clients),
            next: Arc::new(AtomicUsize::new(0)),
            token,
            catalog: Arc::default(),
        })
    }

    /// The next processor in turn.
    pub fn pick(&self) -> ProcessorServiceClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// The next processor in turn among those known to offer `kind` (and `model`, when named); any
    /// processor when none is known to (it answers 3006 itself if it cannot).
    pub fn pick_for(&self, kind: pb::JobKind, model: &str) -> ProcessorServiceClient<Channel> {
        if is_local(kind) {
            return self.pick();
        }
        let able: Vec<usize> = match self.catalog.read() {
            Ok(catalog) => catalog
                .capabilities
                .iter()
                .enumerate()
                .filter(|(_, c)| c.as_ref().is_some_and(|c| offers(c, kind, model)))
                .map(|(i, _)| i)
                .collect(),
            Err(_) => Vec::new(),
        };
        if able.is_empty() {
            return self.pick();
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % able.len();
        self.clients[able[i]].clone()
    }

    /// Asks every processor for its capabilities (2 s each, concurrently) and keeps the answers.
    pub async fn refresh(&self) {
        let calls = self.clients.iter().map(|client| {
            let mut client = client.clone();
            let request = self.request(pb::GetCapabilitiesRequest {}, Duration::from_secs(2));
            async move {
                client
                    .get_capabilities(request)
                    .await
                    .ok()
                    .map(|r| r.into_inner())
            }
        });
        let capabilities = futures::future::join_all(calls).await;
        if let Ok(mut catalog) = self.catalog.write() {
            catalog.capabilities = capabilities;
            catalog.refreshed_at = Some(Instant::now());
        }
    }

    /// Refreshes the catalogue when it is older than `max_age` (and not younger than 2 s).
    async fn refresh_if_older(&self, max_age: Duration) {
        let age = self
            .catalog
            .read()
            .ok()
            .and_then(|c| c.refreshed_at)
            .map(|t| t.elapsed());
        if age.is_none_or(|age| age > max_age.max(CATALOG_MIN_AGE)) {
            self.refresh().await;
        }
    }

    /// Whether some processor runs `kind` (with `model`, when named). The engine kinds are always
    /// offered; model kinds are looked up in the catalogue, refreshed first when it is stale or
    /// does not know the answer yet.
    pub async fn offers(&self, kind: pb::JobKind, model: &str) -> bool {
        if is_local(kind) {
            return true;
        }
        self.refresh_if_older(CATALOG_MAX_AGE).await;
        if self.known_to_offer(kind, model) {
            return true;
        }
        // A processor may have gained a provider since the last look.
        self.refresh_if_older(CATALOG_MIN_AGE).await;
        self.known_to_offer(kind, model)
    }

    fn known_to_offer(&self, kind: pb::JobKind, model: &str) -> bool {
        self.catalog.read().is_ok_and(|catalog| {
            catalog
                .capabilities
                .iter()
                .flatten()
                .any(|c| offers(c, kind, model))
        })
    }

    /// Every model some processor offers, once each, sorted by provider and id.
    pub async fn models(&self) -> Vec<pb::Model> {
        self.refresh_if_older(CATALOG_MAX_AGE).await;
        let mut models: Vec<pb::Model> = match self.catalog.read() {
            Ok(catalog) => catalog
                .capabilities
                .iter()
                .flatten()
                .flat_map(|c| c.providers.iter())
                .flat_map(|p| {
                    p.models.iter().map(|m| pb::Model {
                        provider: if m.provider.is_empty() {
                            p.name.clone()
                        } else {
                            m.provider.clone()
                        },
                        ..m.clone()
                    })
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        models.sort_by(|a, b| (&a.provider, &a.id).cmp(&(&b.provider, &b.id)));
        models.dedup_by(|a, b| a.provider == b.provider && a.id == b.id);
        models
    }

    /// A request carrying the service token.
    pub fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("x-api-key", self.token.clone());
        request.set_timeout(timeout);
        request
    }
}

/// Kinds the engine runs on every processor, without a provider.
fn is_local(kind: pb::JobKind) -> bool {
    matches!(kind, pb::JobKind::Transform | pb::JobKind::BasicClean)
}

/// Whether one processor's capabilities cover `kind` with `model` (any model when empty).
fn offers(capabilities: &pb::Capabilities, kind: pb::JobKind, model: &str) -> bool {
    let kind_listed = capabilities.kinds.contains(&(kind as i32));
    if model.is_empty() {
        return kind_listed;
    }
    capabilities
        .providers
        .iter()
        .flat_map(|p| p.models.iter())
        .any(|m| m.id == model && m.kinds.contains(&(kind as i32)))
}
