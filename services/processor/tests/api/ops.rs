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

#[tokio::test]
async fn reflection_v1_lists_the_processor_service() {
    use reflection_v1::server_reflection_client::ServerReflectionClient;
    use reflection_v1::server_reflection_request::MessageRequest;
    use reflection_v1::server_reflection_response::MessageResponse;
    use reflection_v1::ServerReflectionRequest;

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
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.iter().any(|n| n == SERVICE_NAME), "{names:?}");
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "atelier.v1.JobService"),
        "{names:?}"
    );
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_processor_service() {
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
    assert!(list.service.iter().any(|s| s.name == SERVICE_NAME));
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
