//! Webhooks through the outbox: signed, retried through failures and an outage that spans an
//! orchestrator restart, each event delivered once to a receiver that answered 2xx, every attempt
//! listed; blocked addresses refused; endpoint management per tenant and account.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_proto::v1 as pb;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Request as HttpRequest, Response as HttpResponse};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::helpers::*;
use crate::on_both_databases;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    event_id: String,
    body: serde_json::Value,
    signature_ok: bool,
    status: u16,
}

#[derive(Default)]
struct ReceiverState {
    /// Secret per path ("/endpoint", "/callback").
    secrets: Mutex<HashMap<String, String>>,
    fail_next: AtomicU32,
    log: Mutex<Vec<Received>>,
    changed: Notify,
}

/// A real HTTP webhook receiver on 127.0.0.1 that checks signatures, can fail on purpose and can be
/// taken down and brought back on the same port.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: Option<JoinHandle<()>>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(ReceiverState::default());
        let task = Some(tokio::spawn(serve(listener, Arc::clone(&state))));
        Self { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn secret(&self, path: &str, secret: &str) {
        self.state
            .secrets
            .lock()
            .expect("lock")
            .insert(path.into(), secret.into());
    }

    fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Stops answering: the port is closed, connections are dropped.
    fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Answers again on the same port.
    async fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        self.task = Some(tokio::spawn(serve(listener, Arc::clone(&self.state))));
    }

    fn log(&self) -> Vec<Received> {
        self.state.log.lock().expect("lock").clone()
    }

    /// Waits (up to a minute) until the log satisfies `done`.
    async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.state.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let log = self.log();
            if done(&log) {
                return log;
            }
            tokio::time::timeout_at(deadline, notified)
                .await
                .unwrap_or_else(|_| panic!("receiver never saw {what}; got {log:#?}"));
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<ReceiverState>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(req, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: HttpRequest<hyper::body::Incoming>,
    state: &ReceiverState,
) -> HttpResponse<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let signature = header("atelier-signature");
    let event_id = header("atelier-event-id");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let secret = state
        .secrets
        .lock()
        .expect("lock")
        .get(&path)
        .cloned()
        .unwrap_or_default();
    let signature_ok = verify(&secret, &signature, &body);
    let status = if state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        500
    } else {
        200
    };
    state.log.lock().expect("lock").push(Received {
        path,
        event_id,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        signature_ok,
        status,
    });
    state.changed.notify_waiters();
    let mut response = HttpResponse::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    response
}

/// Checks `t=<unix>,v1=<hex>` as the README tells receivers to: HMAC-SHA256 of "t.body", recent t.
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = chrono::Utc::now().timestamp();
    if (now - t).abs() > 300 {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

fn webhook_config(config: &mut atelier_orchestrator::Config) {
    config.webhook_allow_private = vec!["127.0.0.1/32".parse().expect("cidr")];
    config.webhook_retry_base_seconds = 0.05;
    config.webhook_timeout_seconds = 5.0;
}

async fn endpoints(
    app_accounts: &mut pb::account_service_client::AccountServiceClient<tonic::transport::Channel>,
    key: &str,
) -> Vec<pb::WebhookEndpoint> {
    app_accounts
        .list_webhook_endpoints(bearer(pb::ListWebhookEndpointsRequest {}, key))
        .await
        .expect("list endpoints")
        .into_inner()
        .endpoints
}

async fn attempts_of(
    accounts: &mut pb::account_service_client::AccountServiceClient<tonic::transport::Channel>,
    key: &str,
    job_id: &str,
) -> Vec<pb::WebhookDelivery> {
    accounts
        .list_webhook_deliveries(bearer(
            pb::ListWebhookDeliveriesRequest {
                job_id: job_id.into(),
                page_size: 100,
                ..Default::default()
            },
            key,
        ))
        .await
        .expect("deliveries")
        .into_inner()
        .deliveries
}

/// The job's attempts once `done` holds (the API is read every 50 ms, for up to 30 s).
async fn attempts_until(
    accounts: &mut pb::account_service_client::AccountServiceClient<tonic::transport::Channel>,
    key: &str,
    job_id: &str,
    done: impl Fn(&[pb::WebhookDelivery]) -> bool,
) -> Vec<pb::WebhookDelivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempts = attempts_of(accounts, key, job_id).await;
        if done(&attempts) {
            return attempts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the attempts never got there: {attempts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Delivered 2xx answers per (path, event id).
fn successes(log: &[Received], job_id: &str) -> HashMap<(String, String), usize> {
    let mut seen = HashMap::new();
    for r in log
        .iter()
        .filter(|r| r.status == 200 && r.body["job_id"] == job_id)
    {
        *seen
            .entry((r.path.clone(), r.event_id.clone()))
            .or_default() += 1;
    }
    seen
}

async fn signed_retried_and_survives_an_outage_across_a_restart(backend: Backend) {
    let app = spawn_app_with(backend, webhook_config, |_| {}).await;
    let tenant = app.tenant("hooks").await;
    app.member(&tenant, "shop", 10).await;
    let mut receiver = Receiver::start().await;
    let mut accounts = app.accounts.clone();

    let endpoint = accounts
        .create_webhook_endpoint(bearer(
            pb::CreateWebhookEndpointRequest {
                url: receiver.url("/endpoint"),
                account: String::new(),
                events: vec![],
            },
            &tenant.key,
        ))
        .await
        .expect("create endpoint")
        .into_inner();
    assert!(endpoint.secret.starts_with("whsec_"));
    assert_eq!(endpoint.events, ["terminal"]);
    receiver.secret("/endpoint", &endpoint.secret);
    let listed = endpoints(&mut accounts, &tenant.key).await;
    let callback = listed
        .iter()
        .find(|e| e.url.is_empty())
        .expect("callback endpoint");
    assert!(
        callback.secret.starts_with("whsec_"),
        "the callback secret is readable by the tenant"
    );
    let registered = listed.iter().find(|e| e.id == endpoint.id).expect("listed");
    assert!(
        registered.secret.is_empty(),
        "secrets of endpoints are shown only at creation"
    );
    receiver.secret("/callback", &callback.secret);

    // The first two calls fail; the retries go through.
    receiver.fail_next(2);
    let mut request = transform_job(&[app.sources.url("/image.jpg")]);
    request.callback_url = receiver.url("/callback");
    let first = app.submit(&tenant, "shop", request).await.expect("submit");
    let first = app.finish(&tenant, "shop", &first.id).await;
    assert_eq!(first.state, pb::JobState::Succeeded as i32);
    let log = receiver
        .wait_until("both deliveries of the first job", |log| {
            successes(log, &first.id).len() == 2
        })
        .await;
    assert!(
        log.iter().all(|r| r.signature_ok),
        "every request is signed: {log:#?}"
    );
    assert_eq!(log.iter().filter(|r| r.status == 500).count(), 2);
    let delivered = log.iter().find(|r| r.status == 200).expect("a delivery");
    assert_eq!(delivered.body["type"], "job.succeeded");
    assert_eq!(delivered.body["data"]["state"], "succeeded");
    assert_eq!(delivered.body["id"], delivered.event_id);
    assert!(delivered.body["data"]["tasks"][0]["outputs"][0]["url"].is_string());

    // The receiver goes down; the second job's deliveries fail until after a restart.
    receiver.down();
    let mut request = transform_job(&[app.sources.url("/small-ok.png")]);
    request.callback_url = receiver.url("/callback");
    let second = app.submit(&tenant, "shop", request).await.expect("submit");
    let second = app.finish(&tenant, "shop", &second.id).await;
    let attempts = attempts_until(&mut accounts, &tenant.key, &second.id, |a| {
        a.iter().filter(|a| a.status == 0).count() >= 4
    })
    .await;
    assert!(attempts.iter().all(|a| !a.delivered && !a.error.is_empty()));
    assert!(
        attempts.iter().all(|a| a.next_attempt_at.is_some()),
        "network errors are retried"
    );
    let TestApp {
        orchestrator,
        processor,
        database_url,
        objects,
        ..
    } = app;
    orchestrator.stop().await.expect("graceful stop");
    let mut config =
        atelier_orchestrator::Config::new(database_url, objects, vec![processor.url()]);
    config.admin_token = ADMIN.into();
    config.service_token = SERVICE.into();
    config.poll_seconds = 0.05;
    webhook_config(&mut config);
    let restarted = atelier_orchestrator::spawn(config).await.expect("restart");
    let channel = tonic::transport::Channel::from_shared(restarted.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut accounts = pb::account_service_client::AccountServiceClient::new(channel);
    receiver.up().await;
    let log = receiver
        .wait_until("both deliveries of the second job", |log| {
            successes(log, &second.id).len() == 2
        })
        .await;

    // Exactly one 2xx per event and URL, for both jobs, across the restart.
    for job in [&first.id, &second.id] {
        let seen = successes(&log, job);
        assert_eq!(seen.len(), 2, "endpoint and callback: {seen:?}");
        assert!(
            seen.values().all(|n| *n == 1),
            "never sent twice after a 2xx: {seen:?}"
        );
    }
    assert!(log.iter().all(|r| r.signature_ok));
    // The receiver logs a request before the orchestrator has read the answer and recorded it.
    let attempts = attempts_until(&mut accounts, &tenant.key, &second.id, |a| {
        a.iter().filter(|a| a.delivered).count() == 2
    })
    .await;
    let delivered: Vec<_> = attempts.iter().filter(|a| a.delivered).collect();
    assert!(delivered
        .iter()
        .all(|a| a.status == 200 && a.attempt > 1 && a.next_attempt_at.is_none()));
    let first_attempts = attempts_until(&mut accounts, &tenant.key, &first.id, |a| {
        a.iter().filter(|a| a.delivered).count() == 2
    })
    .await;
    assert_eq!(first_attempts.iter().filter(|a| a.status == 500).count(), 2);
    assert_eq!(first_attempts.iter().filter(|a| a.delivered).count(), 2);
    restarted.stop().await.expect("stop");
}

async fn blocked_addresses_are_refused_and_endpoints_belong_to_their_owner(backend: Backend) {
    // No private range allowed here: loopback and link-local are refused like source downloads.
    let app = spawn_app_with(backend, |c| c.webhook_retry_base_seconds = 0.05, |_| {}).await;
    let tenant = app.tenant("strict").await;
    app.member(&tenant, "shop", 10).await;
    app.member(&tenant, "other", 0).await;
    let mut accounts = app.accounts.clone();
    let blocked = accounts
        .create_webhook_endpoint(bearer(
            pb::CreateWebhookEndpointRequest {
                url: "http://169.254.169.254/latest/meta-data".into(),
                account: "shop".into(),
                events: vec!["terminal".into(), "progress".into()],
            },
            &tenant.key,
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(blocked.account, "shop");
    let job = app
        .submit(
            &tenant,
            "shop",
            transform_job(&[app.sources.url("/small-ok.png")]),
        )
        .await
        .expect("submit");
    app.finish(&tenant, "shop", &job.id).await;
    // Progress events and the terminal one: every delivery is tried once and given up.
    let attempts = attempts_until(&mut accounts, &tenant.key, &job.id, |a| {
        a.iter().any(|a| a.error.contains("link-local"))
    })
    .await;
    assert!(
        attempts.iter().all(|a| !a.delivered
            && a.status == 0
            && a.next_attempt_at.is_none()
            && a.attempt == 1),
        "{attempts:#?}"
    );

    // Bad input and ownership.
    let bad = accounts
        .create_webhook_endpoint(bearer(
            pb::CreateWebhookEndpointRequest {
                url: "ftp://example.com/hook".into(),
                account: String::new(),
                events: vec!["everything".into()],
            },
            &tenant.key,
        ))
        .await
        .expect_err("refused");
    assert_eq!(code_of(&bad), 1003);
    let admin_call = accounts
        .list_webhook_endpoints(admin(pb::ListWebhookEndpointsRequest {}))
        .await
        .expect_err("admin has no tenant");
    assert_eq!(code_of(&admin_call), 1002);
    let scoped = accounts
        .create_api_key(admin(pb::CreateApiKeyRequest {
            tenant_id: tenant.id.clone(),
            account: "other".into(),
        }))
        .await
        .expect("key")
        .into_inner()
        .secret;
    let seen_by_other = endpoints(&mut accounts, &scoped).await;
    assert!(
        seen_by_other.is_empty(),
        "another account sees none of shop's endpoints: {seen_by_other:?}"
    );
    let denied = accounts
        .delete_webhook_endpoint(bearer(
            pb::DeleteWebhookEndpointRequest {
                endpoint_id: blocked.id.clone(),
            },
            &scoped,
        ))
        .await
        .expect_err("not theirs");
    assert_eq!(code_of(&denied), 1004);
    let other_attempts = accounts
        .list_webhook_deliveries(bearer(pb::ListWebhookDeliveriesRequest::default(), &scoped))
        .await
        .expect("list")
        .into_inner();
    assert!(other_attempts.deliveries.is_empty());
    accounts
        .delete_webhook_endpoint(bearer(
            pb::DeleteWebhookEndpointRequest {
                endpoint_id: blocked.id.clone(),
            },
            &tenant.key,
        ))
        .await
        .expect("owner deletes");
    assert!(endpoints(&mut accounts, &tenant.key)
        .await
        .iter()
        .all(|e| e.id != blocked.id));
}

/// Other spellings of a refused address are refused like the address, before any connection: each
/// delivery is tried once, given up, and the receiver behind them never hears a thing.
async fn other_spellings_of_loopback_are_refused(backend: Backend) {
    // Not even loopback allowed: the trailing-dot name, NAT64 and 6to4 forms point at the receiver.
    let app = spawn_app_with(backend, |c| c.webhook_retry_base_seconds = 0.05, |_| {}).await;
    let receiver = Receiver::start().await;
    let port = receiver.addr.port();
    let tenant = app.tenant("strict").await;
    app.member(&tenant, "shop", 10).await;
    let mut accounts = app.accounts.clone();
    let urls = [
        format!("http://localhost.:{port}/dot"),
        format!("http://[64:ff9b::7f00:1]:{port}/nat64"),
        format!("http://[2002:7f00:1::1]:{port}/6to4"),
    ];
    let mut ids = Vec::new();
    for url in &urls {
        let endpoint = accounts
            .create_webhook_endpoint(bearer(
                pb::CreateWebhookEndpointRequest {
                    url: url.clone(),
                    account: "shop".into(),
                    events: vec!["terminal".into()],
                },
                &tenant.key,
            ))
            .await
            .expect("create")
            .into_inner();
        ids.push(endpoint.id);
    }
    let job = app
        .submit(
            &tenant,
            "shop",
            transform_job(&[app.sources.url("/small-ok.png")]),
        )
        .await
        .expect("submit");
    app.finish(&tenant, "shop", &job.id).await;
    let attempts = attempts_until(&mut accounts, &tenant.key, &job.id, |a| {
        ids.iter().all(|id| {
            a.iter()
                .any(|a| &a.endpoint_id == id && a.next_attempt_at.is_none())
        })
    })
    .await;
    for (url, id) in urls.iter().zip(&ids) {
        let mine: Vec<_> = attempts.iter().filter(|a| &a.endpoint_id == id).collect();
        assert!(
            mine.iter().all(|a| !a.delivered
                && a.status == 0
                && a.attempt == 1
                && a.next_attempt_at.is_none()
                && a.error.contains("loopback")),
            "{url}: {mine:#?}"
        );
    }
    assert!(receiver.log().is_empty(), "{:#?}", receiver.log());
}

on_both_databases!(
    signed_retried_and_survives_an_outage_across_a_restart,
    blocked_addresses_are_refused_and_endpoints_belong_to_their_owner,
    other_spellings_of_loopback_are_refused,
);
