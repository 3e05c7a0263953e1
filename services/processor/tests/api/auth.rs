//! The service token guards ProcessorService.

use atelier_codes::ErrorCode;
use atelier_proto::v1;

use crate::helpers::{client_with_key, spawn_app};

#[tokio::test]
async fn calls_without_the_token_are_unauthenticated() {
    let app = spawn_app().await;
    for key in [None, Some("wrong-token"), Some("")] {
        let mut client = client_with_key(&app.processor, key).await;
        let status = client
            .get_capabilities(v1::GetCapabilitiesRequest {})
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{key:?}");
        assert_eq!(
            atelier_codes::decode(&status).code,
            ErrorCode::Unauthenticated
        );
        let info = tonic_types::StatusExt::get_details_error_info(&status).expect("ErrorInfo");
        assert_eq!(info.metadata.get("code").map(String::as_str), Some("1001"));

        let status = client
            .process(app.transform_url("/image.jpg"))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
}

#[tokio::test]
async fn the_token_opens_the_service() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    let caps = client
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner();
    assert_eq!(caps.processor_id, "test-processor");
    assert_eq!(
        caps.kinds,
        [
            v1::JobKind::Transform as i32,
            v1::JobKind::BasicClean as i32
        ]
    );
    assert!(caps.providers.is_empty());
    assert_eq!(caps.max_concurrency, 4);
    assert!(!caps.version.is_empty());
}
