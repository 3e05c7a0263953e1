//! Health and reflection, as a generic gRPC client sees them.

use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha as reflection_v1alpha;

use crate::helpers::{spawn_app, Backend};
use crate::on_both_databases;

on_both_databases!(health_serves_and_reflection_lists_only_what_is_served);

/// What the orchestrator serves: its reflection lists exactly these (sorted), in both versions.
const SERVED: [&str; 6] = [
    "atelier.v1.AccountService",
    "atelier.v1.JobService",
    "atelier.v1.StudioService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Asks reflection v1 for the file declaring `symbol`: `Ok` when it is described, else the error code
/// (tonic answers an unknown symbol by ending the stream with NOT_FOUND; other servers send an
/// `ErrorResponse`; both count).
async fn describe(channel: tonic::transport::Channel, symbol: &str) -> Result<(), tonic::Code> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .map_err(|s| s.code())?
        .into_inner();
    match responses.message().await.map_err(|s| s.code())? {
        Some(response) => match response.message_response {
            Some(MessageResponse::FileDescriptorResponse(f))
                if !f.file_descriptor_proto.is_empty() =>
            {
                Ok(())
            }
            Some(MessageResponse::ErrorResponse(e)) => Err(tonic::Code::from_i32(e.error_code)),
            other => panic!("unexpected answer for {symbol}: {other:?}"),
        },
        None => panic!("no answer for {symbol}"),
    }
}

async fn health_serves_and_reflection_lists_only_what_is_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in [
        "",
        "atelier.v1.JobService",
        "atelier.v1.AccountService",
        "atelier.v1.StudioService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    let not_here = health
        .check(HealthCheckRequest {
            service: "atelier.v1.ProcessorService".into(),
        })
        .await
        .expect_err("the processor's service is not served here");
    assert_eq!(not_here.code(), tonic::Code::NotFound);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("stream")
        .expect("response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("a service list")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort_unstable();
    assert_eq!(names, SERVED, "the list names what is served, nothing else");
    for name in SERVED {
        assert_eq!(describe(app.channel.clone(), name).await, Ok(()), "{name}");
    }
    for hidden in ["atelier.v1.ProcessorService", "atelier.v1.ProcessRequest"] {
        assert_eq!(
            describe(app.channel.clone(), hidden).await,
            Err(tonic::Code::NotFound),
            "the processor's contract is not described here: {hidden}"
        );
    }

    let mut reflection_v1alpha =
        reflection_v1alpha::server_reflection_client::ServerReflectionClient::new(
            app.channel.clone(),
        );
    let mut responses = reflection_v1alpha
        .server_reflection_info(tokio_stream::iter([
            reflection_v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    reflection_v1alpha::server_reflection_request::MessageRequest::ListServices(
                        String::new(),
                    ),
                ),
            },
        ]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("stream")
        .expect("response");
    let Some(
        reflection_v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list),
    ) = response.message_response
    else {
        panic!("a service list")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort_unstable();
    assert_eq!(names, SERVED);
}
