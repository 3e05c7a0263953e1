//! Downloads: HTTP failures, timeouts, redirects and address checks.
//!
//! Too many redirects is answered with 3002 DOWNLOAD_FAILED, not retried: the chain is a property of the
//! source, not of where it lives. A redirect *to* a blocked address is 3005 SOURCE_BLOCKED.

use std::time::Duration;

use atelier_codes::ErrorCode;

use crate::helpers::{request, spawn_app, spawn_app_with, transform, url};

#[tokio::test]
async fn not_found_is_a_download_failure_not_retried() {
    let app = spawn_app().await;
    let failure = app.run_err(app.transform_url("/missing.jpg")).await;
    assert_eq!(failure.code, ErrorCode::DownloadFailed);
    assert!(!failure.transient);
    assert!(failure.message.contains("404"), "{}", failure.message);
}

#[tokio::test]
async fn server_errors_are_transient() {
    let app = spawn_app().await;
    let failure = app.run_err(app.transform_url("/error-500")).await;
    assert_eq!(failure.code, ErrorCode::DownloadFailed);
    assert!(failure.transient);
}

#[tokio::test]
async fn a_stalled_body_times_out_as_transient() {
    let app = spawn_app_with(|c| c.download_timeout = Duration::from_millis(500)).await;
    let failure = app.run_err(app.transform_url("/stall")).await;
    assert_eq!(failure.code, ErrorCode::DownloadFailed);
    assert!(failure.transient);
    assert!(failure.message.contains("timed out"), "{}", failure.message);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let app = spawn_app().await;
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let req = request(
        transform(Default::default()),
        url(format!("http://127.0.0.1:{port}/x.jpg")),
        "jobs/j/t",
    );
    let failure = app.run_err(req).await;
    assert_eq!(failure.code, ErrorCode::DownloadFailed);
    assert!(failure.transient);
}

#[tokio::test]
async fn three_redirects_are_followed() {
    let app = spawn_app().await;
    // /redirect/2 -> /redirect/1 -> /redirect/0 -> /image.jpg: three hops.
    let (_, outputs) = app.run_ok(app.transform_url("/redirect/2")).await;
    assert_eq!(outputs.len(), 1);
}

#[tokio::test]
async fn four_redirects_are_too_many() {
    let app = spawn_app().await;
    let failure = app.run_err(app.transform_url("/redirect/3")).await;
    assert_eq!(failure.code, ErrorCode::DownloadFailed);
    assert!(!failure.transient);
    assert!(
        failure.message.contains("redirected more than 3"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn private_and_metadata_addresses_are_blocked() {
    let app = spawn_app().await;
    for target in [
        "http://10.0.0.1/image.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/x",
    ] {
        let req = request(
            transform(Default::default()),
            url(target.into()),
            "jobs/j/t",
        );
        let failure = app.run_err(req).await;
        assert_eq!(failure.code, ErrorCode::SourceBlocked, "{target}");
    }
}

#[tokio::test]
async fn every_redirect_hop_is_checked() {
    let app = spawn_app().await;
    for path in ["/redirect/to-10.0.0.1", "/redirect/to-metadata"] {
        let failure = app.run_err(app.transform_url(path)).await;
        assert_eq!(failure.code, ErrorCode::SourceBlocked, "{path}");
    }
}

#[tokio::test]
async fn loopback_is_blocked_without_the_allow_list() {
    let app = spawn_app_with(|c| c.allow_private_sources.clear()).await;
    // An IP literal, checked before the request.
    let failure = app.run_err(app.transform_url("/image.jpg")).await;
    assert_eq!(failure.code, ErrorCode::SourceBlocked);
    // A host name, refused by the resolver at connect time.
    let by_name = format!("http://localhost:{}/image.jpg", app.sources.port());
    let req = request(transform(Default::default()), url(by_name), "jobs/j/t");
    let failure = app.run_err(req).await;
    assert_eq!(
        failure.code,
        ErrorCode::SourceBlocked,
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn trailing_dot_spellings_of_localhost_are_blocked_like_localhost() {
    let app = spawn_app_with(|c| c.allow_private_sources.clear()).await;
    let port = app.sources.port();
    for host in ["localhost.", "LocalHost..", "img.localhost."] {
        let by_name = format!("http://{host}:{port}/image.jpg");
        let req = request(transform(Default::default()), url(by_name), "jobs/j/t");
        let failure = app.run_err(req).await;
        assert_eq!(
            failure.code,
            ErrorCode::SourceBlocked,
            "{host}: {}",
            failure.message
        );
        assert!(failure.message.contains("loopback"), "{}", failure.message);
    }
    // With loopback allowed they are localhost, which is then fetched.
    let app = spawn_app().await;
    let by_name = format!("http://localhost.:{}/image.jpg", app.sources.port());
    let req = request(transform(Default::default()), url(by_name), "jobs/j/t");
    let (_, outputs) = app.run_ok(req).await;
    assert_eq!(outputs.len(), 1);
}

/// 127.0.0.1 in NAT64 form is refused before any connection, even where 127.0.0.1 itself is allowed:
/// it would be reached through a translator, not at the address the operator allowed. A connection
/// attempt would end as 3002 (nothing routes 64:ff9b::/96 here), never 3005.
#[tokio::test]
async fn ipv6_forms_of_loopback_are_blocked_before_connecting() {
    let app = spawn_app().await;
    let port = app.sources.port();
    for (host, form) in [
        ("[64:ff9b::7f00:1]", "NAT64"),
        ("[64:ff9b::127.0.0.1]", "NAT64"),
        ("[2002:7f00:1::1]", "6to4"),
        ("[::127.0.0.1]", "IPv4-compatible"),
    ] {
        let target = format!("http://{host}:{port}/image.jpg");
        let req = request(transform(Default::default()), url(target), "jobs/j/t");
        let failure = app.run_err(req).await;
        assert_eq!(
            failure.code,
            ErrorCode::SourceBlocked,
            "{host}: {}",
            failure.message
        );
        assert!(!failure.transient);
        assert!(
            failure
                .message
                .contains(&format!("the {form} form of 127.0.0.1, a loopback address")),
            "{}",
            failure.message
        );
    }
}

#[tokio::test]
async fn only_http_and_https_are_fetched() {
    let app = spawn_app().await;
    for target in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/image.jpg",
        "gopher://127.0.0.1/",
    ] {
        let req = request(
            transform(Default::default()),
            url(target.into()),
            "jobs/j/t",
        );
        let failure = app.run_err(req).await;
        assert_eq!(failure.code, ErrorCode::SourceBlocked, "{target}");
        assert!(
            failure.message.contains("http or https"),
            "{}",
            failure.message
        );
    }
}
