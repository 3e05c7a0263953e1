//! The processors this orchestrator sends tasks to, chosen round-robin.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use atelier_proto::v1::processor_service_client::ProcessorServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

/// Lazily connected clients of every configured processor.
#[derive(Clone)]
pub struct Processors {
    clients: Arc<Vec<ProcessorServiceClient<Channel>>>,
    next: Arc<AtomicUsize>,
    token: MetadataValue<tonic::metadata::Ascii>,
}

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
        })
    }

    /// The next processor in turn.
    pub fn pick(&self) -> ProcessorServiceClient<Channel> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
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
