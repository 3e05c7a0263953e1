//! A bench-only processor that answers every task at once over the real gRPC protocol: `accepted`,
//! one output naming a key under the attempt's prefix, `completed`. It stores nothing and runs no
//! engine, so a run against it measures the orchestrator alone, doing the same work per task as
//! graphile-worker's empty task function: claim, call, record.

use std::net::SocketAddr;

use atelier_proto::v1 as pb;
use atelier_proto::v1::processor_service_server::{ProcessorService, ProcessorServiceServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// The running instant processor; stops when dropped.
pub struct InstantProcessor {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl InstantProcessor {
    /// Serves on a free port of 127.0.0.1.
    pub async fn start(max_concurrency: u32) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let service = ProcessorServiceServer::new(Instant { max_concurrency });
        let stopping = stop.clone();
        tokio::spawn(async move {
            // Answers go out at once, as the real services' do (TCP_NODELAY).
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stopping.cancelled_owned())
                .await
            {
                eprintln!("bench: the instant processor stopped: {e}");
            }
        });
        Ok(Self { addr, stop })
    }

    /// Its gRPC address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for InstantProcessor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Instant {
    max_concurrency: u32,
}

type Events = futures::stream::Iter<std::vec::IntoIter<Result<pb::ProcessEvent, Status>>>;

#[tonic::async_trait]
impl ProcessorService for Instant {
    type ProcessStream = Events;

    async fn process(
        &self,
        request: Request<pb::ProcessRequest>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let request = request.into_inner();
        let event = |event| Ok(pb::ProcessEvent { event: Some(event) });
        let output = pb::Output {
            name: "result.jpg".into(),
            key: format!("{}/result.jpg", request.output_prefix),
            content_type: "image/jpeg".into(),
            width: 64,
            height: 48,
            bytes: 1024,
            ..Default::default()
        };
        Ok(Response::new(futures::stream::iter(vec![
            event(pb::process_event::Event::Accepted(pb::Accepted {
                processor_id: "instant".into(),
            })),
            event(pb::process_event::Event::Output(output)),
            event(pb::process_event::Event::Completed(pb::Completed::default())),
        ])))
    }

    async fn get_capabilities(
        &self,
        _request: Request<pb::GetCapabilitiesRequest>,
    ) -> Result<Response<pb::Capabilities>, Status> {
        Ok(Response::new(pb::Capabilities {
            processor_id: "instant".into(),
            kinds: vec![pb::JobKind::Transform as i32],
            providers: Vec::new(),
            max_concurrency: self.max_concurrency,
            version: "bench".into(),
        }))
    }

    async fn import_outputs(
        &self,
        _request: Request<pb::ImportOutputsRequest>,
    ) -> Result<Response<pb::ImportOutputsResponse>, Status> {
        Err(Status::unimplemented(
            "the instant processor imports nothing",
        ))
    }
}
