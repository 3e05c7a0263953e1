//! Health and reflection, served without the service token.

use atelier_proto::v1::processor_service_server::SERVICE_NAME;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use tonic_reflection::pb::{v1 as reflection_v1, v1alpha as reflection_v1alpha};

use crate::helpers::{channel, spawn_app};

#[tokio::test]
async fn health_answers_serving() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(channel(&app.processor).await);
    for service in ["", SERVICE_NAME] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
}

/// What the processor serves: its reflection lists exactly these (sorted), in both versions.
const SERVED: [&str; 4] = [
    "atelier.v1.ProcessorService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Asks reflection v1 for the file declaring `symbol`: `Ok` when it is described, else the error code
/// (tonic answers an unknown symbol by ending the stream with NOT_FOUND; other servers send an
/// `ErrorResponse`; both count).
async fn describe(channel: tonic::transport::Channel, symbol: &str) -> Result<(), tonic::Code> {
    use reflection_v1::server_reflection_client::ServerReflectionClient;
    use reflection_v1::server_reflection_request::MessageRequest;
    use reflection_v1::server_reflection_response::MessageResponse;
    use reflection_v1::ServerReflectionRequest;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
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

#[tokio::test]
async fn reflection_v1_lists_and_describes_only_what_is_served() {
    use reflection_v1::server_reflection_client::ServerReflectionClient;
    use reflection_v1::server_reflection_request::MessageRequest;
    use reflection_v1::server_reflection_response::MessageResponse;
    use reflection_v1::ServerReflectionRequest;

    let app = spawn_app().await;
    let channel = channel(&app.processor).await;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("stream")
        .expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected response {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort_unstable();
    assert_eq!(names, SERVED, "the list names what is served, nothing else");
    for name in SERVED {
        assert_eq!(describe(channel.clone(), name).await, Ok(()), "{name}");
    }
    // The orchestrator's services live in a file the processor imports for its messages only.
    for hidden in ["atelier.v1.JobService", "atelier.v1.AccountService"] {
        assert_eq!(
            describe(channel.clone(), hidden).await,
            Err(tonic::Code::NotFound),
            "{hidden}"
        );
    }
    assert_eq!(
        describe(channel.clone(), "atelier.v1.JobParams").await,
        Ok(()),
        "the messages it uses are described"
    );
}

#[tokio::test]
async fn reflection_v1alpha_lists_only_what_is_served() {
    use reflection_v1alpha::server_reflection_client::ServerReflectionClient;
    use reflection_v1alpha::server_reflection_request::MessageRequest;
    use reflection_v1alpha::server_reflection_response::MessageResponse;
    use reflection_v1alpha::ServerReflectionRequest;

    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(channel(&app.processor).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("stream")
        .expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected response {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort_unstable();
    assert_eq!(names, SERVED);
}

#[tokio::test]
async fn stop_shuts_the_server_down() {
    let app = spawn_app().await;
    let crate::helpers::TestApp {
        processor, client, ..
    } = app;
    drop(client);
    let (grpc, metrics) = (processor.addr(), processor.metrics_addr());
    assert!(
        tokio::net::TcpStream::connect(grpc).await.is_ok(),
        "serving before the stop"
    );
    processor.stop().await.expect("clean stop");
    // Once stop returns, nothing listens any more: new connections are refused.
    for addr in [grpc, metrics] {
        let refused = tokio::net::TcpStream::connect(addr).await;
        assert!(
            refused.is_err(),
            "{addr} still accepts connections after stop"
        );
    }
}
