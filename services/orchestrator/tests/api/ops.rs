//! Health and reflection, as a generic gRPC client sees them.

use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

use crate::helpers::{spawn_app, Backend};
use crate::on_both_databases;

on_both_databases!(health_serves_and_reflection_lists_the_services);

async fn health_serves_and_reflection_lists_the_services(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "atelier.v1.JobService", "atelier.v1.AccountService"] {
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
    let mut reflection = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
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
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "atelier.v1.JobService",
        "atelier.v1.AccountService",
        "atelier.v1.ProcessorService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}
