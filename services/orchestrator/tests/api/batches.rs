//! SubmitBatch: the jobs of one batch hold one unit of the active-jobs limit, entries are charged in
//! order (one the balance cannot pay fails alone, never overdrawing), a malformed entry refuses the
//! whole call, per-family prices, and the batch's one signed callback once every job is terminal.

use std::time::Duration;

use atelier_proto::v1 as pb;
use atelier_testkit::WebhookReceiver;

use crate::helpers::{
    as_account, bearer, code_of, spawn_app_with, transform_job, Backend, Tenant, TestApp,
};
use crate::on_both_databases;

on_both_databases!(
    a_batch_is_one_unit_of_the_active_job_limit,
    entries_the_balance_cannot_pay_fail_alone,
    a_malformed_entry_refuses_the_whole_batch,
    family_prices_override_kind_prices,
    the_batch_callback_arrives_once_signed,
    concurrent_batches_never_overdraw,
);

/// A transform job over `n` copies of the test image (it costs `n`).
fn job_of(app: &TestApp, n: usize) -> pb::SubmitJobRequest {
    transform_job(&vec![app.sources.url("/image.jpg"); n])
}

async fn submit_batch(
    app: &TestApp,
    tenant: &Tenant,
    account: &str,
    request: pb::SubmitBatchRequest,
) -> Result<pb::SubmitBatchResponse, tonic::Status> {
    app.jobs
        .clone()
        .submit_batch(as_account(request, &tenant.key, account))
        .await
        .map(tonic::Response::into_inner)
}

fn jobs_of(answer: &pb::SubmitBatchResponse) -> Vec<pb::Job> {
    answer
        .entries
        .iter()
        .filter_map(|e| match &e.result {
            Some(pb::batch_entry::Result::Job(job)) => Some(job.clone()),
            _ => None,
        })
        .collect()
}

async fn job_count(app: &TestApp, tenant: &Tenant, account: &str) -> usize {
    app.jobs
        .clone()
        .list_jobs(as_account(
            pb::ListJobsRequest {
                page_size: 100,
                ..Default::default()
            },
            &tenant.key,
            account,
        ))
        .await
        .expect("list")
        .into_inner()
        .jobs
        .len()
}

/// Nothing runs, so every job stays active while the test looks.
fn idle(config: &mut atelier_orchestrator::Config) {
    config.dispatch_concurrency = 0;
}

async fn a_batch_is_one_unit_of_the_active_job_limit(backend: Backend) {
    let app = spawn_app_with(backend, idle, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "bulk", 200).await;
    let answer = submit_batch(
        &app,
        &t,
        "bulk",
        pb::SubmitBatchRequest {
            jobs: (0..15).map(|_| job_of(&app, 1)).collect(),
            ..Default::default()
        },
    )
    .await
    .expect("a batch of 15 with a limit of 10 active jobs");
    assert!(!answer.batch_id.is_empty());
    let jobs = jobs_of(&answer);
    assert_eq!(jobs.len(), 15, "every entry queued: {answer:?}");
    assert!(jobs.iter().all(|j| j.batch_id == answer.batch_id));
    assert!(jobs.iter().all(|j| j.state == pb::JobState::Queued as i32));
    assert_eq!(app.account(&t, "bulk").await.balance, 185);

    // The batch holds one unit: nine plain jobs fit beside it, the tenth does not.
    for i in 0..9 {
        app.submit(&t, "bulk", job_of(&app, 1))
            .await
            .unwrap_or_else(|e| panic!("plain job {i} beside the batch: {e:?}"));
    }
    let err = app
        .submit(&t, "bulk", job_of(&app, 1))
        .await
        .expect_err("the limit is reached");
    assert_eq!(
        (err.code(), code_of(&err)),
        (tonic::Code::ResourceExhausted, 2003)
    );
    // A second batch needs a free unit too.
    let err = submit_batch(
        &app,
        &t,
        "bulk",
        pb::SubmitBatchRequest {
            jobs: vec![job_of(&app, 1)],
            ..Default::default()
        },
    )
    .await
    .expect_err("no unit left for a batch");
    assert_eq!(code_of(&err), 2003);
    assert_eq!(app.account(&t, "bulk").await.balance, 176);
    assert_eq!(app.ledger_sum(&t, "bulk").await, 176);

    // Cancelling the batch's jobs frees its unit once the last one ends.
    for job in &jobs[..14] {
        cancel(&app, &t, "bulk", &job.id).await;
    }
    assert_eq!(
        code_of(
            &app.submit(&t, "bulk", job_of(&app, 1))
                .await
                .expect_err("one job of the batch still holds its unit")
        ),
        2003
    );
    cancel(&app, &t, "bulk", &jobs[14].id).await;
    app.submit(&t, "bulk", job_of(&app, 1))
        .await
        .expect("the batch's unit is free again");
}

async fn cancel(app: &TestApp, t: &Tenant, account: &str, job_id: &str) {
    app.jobs
        .clone()
        .cancel_job(as_account(
            pb::CancelJobRequest {
                job_id: job_id.into(),
            },
            &t.key,
            account,
        ))
        .await
        .expect("cancel");
}

async fn entries_the_balance_cannot_pay_fail_alone(backend: Backend) {
    let app = spawn_app_with(backend, idle, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "thrifty", 14).await;
    // Costs 5, 10, 3, 20, 1 against 14: the first, third and fifth are paid, in order.
    let answer = submit_batch(
        &app,
        &t,
        "thrifty",
        pb::SubmitBatchRequest {
            jobs: [5, 10, 3, 20, 1].map(|n| job_of(&app, n)).to_vec(),
            batch_id: "order-17".into(),
            ..Default::default()
        },
    )
    .await
    .expect("part of the batch is paid");
    assert_eq!(answer.batch_id, "order-17");
    let shape: Vec<Result<u64, u32>> = answer
        .entries
        .iter()
        .map(|e| match &e.result {
            Some(pb::batch_entry::Result::Job(job)) => Ok(job.cost),
            Some(pb::batch_entry::Result::Failure(f)) => {
                assert_eq!(f.reason, "QUOTA_EXHAUSTED", "{f:?}");
                assert!(!f.message.is_empty());
                Err(f.code)
            }
            None => panic!("an empty entry"),
        })
        .collect();
    assert_eq!(shape, [Ok(5), Err(2002), Ok(3), Err(2002), Ok(1)]);
    assert_eq!(app.account(&t, "thrifty").await.balance, 5);
    assert_eq!(app.ledger_sum(&t, "thrifty").await, 5);
    assert_eq!(job_count(&app, &t, "thrifty").await, 3);

    // The same batch id again is refused.
    let err = submit_batch(
        &app,
        &t,
        "thrifty",
        pb::SubmitBatchRequest {
            jobs: vec![job_of(&app, 1)],
            batch_id: "order-17".into(),
            ..Default::default()
        },
    )
    .await
    .expect_err("a batch id is unique per account");
    assert_eq!(code_of(&err), 1003);

    // When no entry can be paid, the call fails with the first entry's error and leaves nothing.
    let err = submit_batch(
        &app,
        &t,
        "thrifty",
        pb::SubmitBatchRequest {
            jobs: vec![job_of(&app, 6), job_of(&app, 7)],
            ..Default::default()
        },
    )
    .await
    .expect_err("nothing payable");
    assert_eq!(
        (err.code(), code_of(&err)),
        (tonic::Code::ResourceExhausted, 2002)
    );
    assert!(err.message().contains("costs 6"), "{}", err.message());
    assert_eq!(app.account(&t, "thrifty").await.balance, 5);
    assert_eq!(app.ledger_sum(&t, "thrifty").await, 5);
    assert_eq!(job_count(&app, &t, "thrifty").await, 3);
}

async fn a_malformed_entry_refuses_the_whole_batch(backend: Backend) {
    let app = spawn_app_with(backend, idle, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "careless", 50).await;
    let mut no_sources = job_of(&app, 1);
    no_sources.sources.clear();
    let mut keyed = job_of(&app, 1);
    keyed.idempotency_key = "k-1".into();
    let err = submit_batch(
        &app,
        &t,
        "careless",
        pb::SubmitBatchRequest {
            jobs: vec![job_of(&app, 1), no_sources, keyed],
            ..Default::default()
        },
    )
    .await
    .expect_err("malformed entries");
    assert_eq!(code_of(&err), 1003);
    let fields = violations(&err);
    assert!(
        fields.contains(&"jobs[1].sources".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"jobs[2].idempotency_key".to_string()),
        "{fields:?}"
    );
    for (request, field) in [
        (
            pb::SubmitBatchRequest {
                jobs: Vec::new(),
                ..Default::default()
            },
            "jobs",
        ),
        (
            pb::SubmitBatchRequest {
                jobs: (0..101).map(|_| job_of(&app, 1)).collect(),
                ..Default::default()
            },
            "jobs",
        ),
        (
            pb::SubmitBatchRequest {
                jobs: vec![job_of(&app, 1)],
                family: "django".into(),
                ..Default::default()
            },
            "family",
        ),
        (
            pb::SubmitBatchRequest {
                jobs: vec![job_of(&app, 1)],
                callback_url: "ftp://example.com/x".into(),
                ..Default::default()
            },
            "callback_url",
        ),
    ] {
        let err = submit_batch(&app, &t, "careless", request)
            .await
            .expect_err(field);
        assert_eq!(code_of(&err), 1003, "{err:?}");
        assert_eq!(violations(&err), [field], "{err:?}");
    }
    // A job's own unknown family is 1003 too.
    let mut request = job_of(&app, 1);
    request.family = "django".into();
    let err = app
        .submit(&t, "careless", request)
        .await
        .expect_err("unknown family");
    assert_eq!(
        (code_of(&err), violations(&err)),
        (1003, vec!["family".into()])
    );
    assert_eq!(app.account(&t, "careless").await.balance, 50);
    assert_eq!(job_count(&app, &t, "careless").await, 0);
}

fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

async fn family_prices_override_kind_prices(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            idle(c);
            c.family_prices = vec!["image_editor:transform=3".into()];
        },
        |_| {},
    )
    .await;
    let t = app.tenant("shop").await;
    app.member(&t, "fam", 100).await;
    let plain = app.submit(&t, "fam", job_of(&app, 2)).await.expect("plain");
    assert_eq!((plain.cost, plain.family.as_str()), (2, ""));
    let mut request = job_of(&app, 2);
    request.family = "image_editor".into();
    let priced = app.submit(&t, "fam", request).await.expect("family");
    assert_eq!((priced.cost, priced.family.as_str()), (6, "image_editor"));
    // A family without its own price pays the kind's.
    let mut request = job_of(&app, 2);
    request.family = "generator".into();
    assert_eq!(app.submit(&t, "fam", request).await.expect("other").cost, 2);
    // In a batch the batch's family applies to every entry, whatever the entry says.
    let mut entry = job_of(&app, 1);
    entry.family = "task_api".into();
    let answer = submit_batch(
        &app,
        &t,
        "fam",
        pb::SubmitBatchRequest {
            jobs: vec![entry, job_of(&app, 1)],
            family: "image_editor".into(),
            ..Default::default()
        },
    )
    .await
    .expect("batch");
    let jobs = jobs_of(&answer);
    assert!(jobs
        .iter()
        .all(|j| j.cost == 3 && j.family == "image_editor"));
    assert_eq!(app.account(&t, "fam").await.balance, 100 - 2 - 6 - 2 - 6);
}

async fn the_batch_callback_arrives_once_signed(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.webhook_allow_private = vec!["127.0.0.1/32".parse().expect("cidr")];
            c.webhook_retry_base_seconds = 0.05;
        },
        |_| {},
    )
    .await;
    let receiver = WebhookReceiver::start().await;
    let t = app.tenant("shop").await;
    app.member(&t, "batcher", 20).await;
    let answer = submit_batch(
        &app,
        &t,
        "batcher",
        pb::SubmitBatchRequest {
            jobs: vec![
                job_of(&app, 1),
                transform_job(&[app.sources.url("/missing")]),
                job_of(&app, 2),
            ],
            callback_url: receiver.url("/batch"),
            ..Default::default()
        },
    )
    .await
    .expect("batch");
    let jobs = jobs_of(&answer);
    assert_eq!(jobs.len(), 3);
    for job in &jobs {
        app.finish(&t, "batcher", &job.id).await;
    }
    let log = receiver
        .wait_until("the batch callback", Duration::from_secs(60), |log| {
            log.iter().any(|d| d.path == "/batch" && d.status == 200)
        })
        .await;
    let secret = app
        .accounts
        .clone()
        .list_webhook_endpoints(bearer(pb::ListWebhookEndpointsRequest {}, &t.key))
        .await
        .expect("endpoints")
        .into_inner()
        .endpoints
        .into_iter()
        .find(|e| e.url.is_empty())
        .expect("the callback endpoint")
        .secret;
    let delivered: Vec<_> = log.iter().filter(|d| d.path == "/batch").collect();
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    let delivery = delivered[0];
    assert!(delivery.signed_with(&secret), "{delivery:#?}");
    assert!(!delivery.signed_with("whsec_other"));
    let body = &delivery.json;
    assert_eq!(body["type"], "batch.finished", "{body:#}");
    assert_eq!(body["id"], delivery.event_id.as_str());
    assert!(
        delivery.event_id.starts_with("batch_"),
        "{}",
        delivery.event_id
    );
    assert_eq!(body["batch_id"], answer.batch_id.as_str());
    assert_eq!(body["data"]["total"], 3);
    let states: Vec<&str> = body["data"]["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, ["succeeded", "failed", "succeeded"], "{body:#}");
    // Fresh links to the outputs, minted as it was sent.
    assert!(body["data"]["jobs"][0]["tasks"][0]["outputs"][0]["url"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));

    // The outbox holds it once; a later job's callback is not confused with it.
    let mut request = job_of(&app, 1);
    request.callback_url = receiver.url("/later");
    let later = app.submit(&t, "batcher", request).await.expect("later");
    app.finish(&t, "batcher", &later.id).await;
    let log = receiver
        .wait_until("the later job's callback", Duration::from_secs(60), |log| {
            log.iter().any(|d| d.path == "/later" && d.status == 200)
        })
        .await;
    assert_eq!(log.iter().filter(|d| d.path == "/batch").count(), 1);
    // Cache hits are refunded, so the balance is read against the ledger.
    assert_eq!(
        app.account(&t, "batcher").await.balance,
        app.ledger_sum(&t, "batcher").await
    );
}

async fn concurrent_batches_never_overdraw(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            idle(c);
            c.max_active_jobs = 100;
        },
        |_| {},
    )
    .await;
    let t = app.tenant("shop").await;
    app.member(&t, "rush", 17).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let jobs = app.jobs.clone();
        let request = pb::SubmitBatchRequest {
            jobs: (0..5).map(|_| job_of(&app, 1)).collect(),
            ..Default::default()
        };
        let key = t.key.clone();
        calls.spawn(async move {
            jobs.clone()
                .submit_batch(as_account(request, &key, "rush"))
                .await
                .map(tonic::Response::into_inner)
        });
    }
    let mut accepted = 0;
    while let Some(done) = calls.join_next().await {
        match done.expect("join") {
            Ok(answer) => accepted += jobs_of(&answer).len(),
            Err(status) => assert_eq!(code_of(&status), 2002, "{status:?}"),
        }
    }
    assert_eq!(accepted, 17, "exactly the balance's worth");
    assert_eq!(app.account(&t, "rush").await.balance, 0);
    assert_eq!(app.ledger_sum(&t, "rush").await, 0);
}
