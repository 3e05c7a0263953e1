//! Quota: charged at submit in the job's transaction, refunded for failed tasks, never negative, and
//! always equal to the ledger's sum.

use atelier_proto::v1 as pb;

use crate::helpers::{admin, code_of, spawn_app, spawn_app_with, transform_job, Backend};
use crate::on_both_databases;

on_both_databases!(
    charges_at_submit_and_refunds_failures,
    membership_and_balance_are_checked_before_anything_runs,
    active_jobs_per_account_are_limited,
    concurrent_submits_never_overdraw,
    an_empty_balance_is_the_reason_given_even_at_the_active_job_limit,
    the_active_job_limit_alone_is_still_2003,
);

async fn charges_at_submit_and_refunds_failures(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 3).await;
    let job = app
        .submit(
            &t,
            "alice",
            transform_job(&[app.sources.url("/image.jpg"), app.sources.url("/missing")]),
        )
        .await
        .expect("submit");
    assert_eq!(job.cost, 2);
    // The failing task may already be refunded by now, so the charge is read from the ledger.
    let ledger = app
        .accounts
        .clone()
        .list_ledger(crate::helpers::as_account(
            pb::ListLedgerRequest::default(),
            &t.key,
            "alice",
        ))
        .await
        .expect("ledger")
        .into_inner();
    let charge = ledger
        .entries
        .iter()
        .find(|e| e.kind == "charge")
        .expect("a charge row");
    assert_eq!(
        (charge.amount, charge.job_id.as_str()),
        (-2, job.id.as_str()),
        "charged at submit"
    );
    let done = app.finish(&t, "alice", &job.id).await;
    assert_eq!(done.state(), pb::JobState::PartiallySucceeded);
    assert_eq!(done.refunded, 1);
    let account = app.account(&t, "alice").await;
    assert_eq!(account.balance, 2, "the failed task is refunded");
    assert_eq!(account.active_jobs, 0);
    assert_eq!(app.ledger_sum(&t, "alice").await, 2);
    let ledger = app
        .accounts
        .clone()
        .list_ledger(crate::helpers::as_account(
            pb::ListLedgerRequest::default(),
            &t.key,
            "alice",
        ))
        .await
        .expect("ledger")
        .into_inner();
    let kinds: Vec<&str> = ledger.entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["refund", "charge", "grant"], "newest first");
}

async fn membership_and_balance_are_checked_before_anything_runs(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    let one = transform_job(&[app.sources.url("/image.jpg")]);

    let err = app
        .submit(&t, "stranger", one.clone())
        .await
        .expect_err("unknown account");
    assert_eq!(
        (err.code(), code_of(&err)),
        (tonic::Code::FailedPrecondition, 2001)
    );

    app.accounts
        .clone()
        .upsert_account(admin(pb::UpsertAccountRequest {
            tenant_id: t.id.clone(),
            external_id: "nomember".into(),
        }))
        .await
        .expect("account");
    app.accounts
        .clone()
        .grant_quota(admin(pb::GrantQuotaRequest {
            tenant_id: t.id.clone(),
            account: "nomember".into(),
            amount: 5,
            ..Default::default()
        }))
        .await
        .expect("grant");
    let err = app
        .submit(&t, "nomember", one.clone())
        .await
        .expect_err("no membership");
    assert_eq!(code_of(&err), 2001);
    assert_eq!(app.account(&t, "nomember").await.balance, 5);

    app.member(&t, "poor", 1).await;
    let two = transform_job(&[app.sources.url("/image.jpg"), app.sources.url("/image.jpg")]);
    let err = app
        .submit(&t, "poor", two)
        .await
        .expect_err("two units, one in balance");
    assert_eq!(
        (err.code(), code_of(&err)),
        (tonic::Code::ResourceExhausted, 2002)
    );
    assert_eq!(app.account(&t, "poor").await.balance, 1, "nothing charged");
    assert_eq!(app.ledger_sum(&t, "poor").await, 1);
    let jobs = app
        .jobs
        .clone()
        .list_jobs(crate::helpers::as_account(
            pb::ListJobsRequest::default(),
            &t.key,
            "poor",
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(jobs.jobs.is_empty(), "a refused job leaves nothing behind");
}

async fn active_jobs_per_account_are_limited(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.max_active_jobs = 2, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "busy", 10).await;
    let stall = transform_job(&[app.sources.url("/stall")]);
    let first = app.submit(&t, "busy", stall.clone()).await.expect("first");
    let second = app.submit(&t, "busy", stall.clone()).await.expect("second");
    let err = app.submit(&t, "busy", stall).await.expect_err("third");
    assert_eq!(
        (err.code(), code_of(&err)),
        (tonic::Code::ResourceExhausted, 2003)
    );
    for job in [first, second] {
        app.jobs
            .clone()
            .cancel_job(crate::helpers::as_account(
                pb::CancelJobRequest { job_id: job.id },
                &t.key,
                "busy",
            ))
            .await
            .expect("cancel");
    }
    assert_eq!(app.account(&t, "busy").await.balance, 10);
}

async fn concurrent_submits_never_overdraw(backend: Backend) {
    // Nothing runs during the rush: a finished job (a cache hit, say) would refund and let one more in.
    let app = spawn_app_with(
        backend,
        |c| {
            c.max_active_jobs = 100;
            c.dispatch_concurrency = 0;
        },
        |_| {},
    )
    .await;
    let t = app.tenant("shop").await;
    app.member(&t, "rush", 10).await;
    let request = transform_job(&[app.sources.url("/image.jpg")]);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let jobs = app.jobs.clone();
        let request = crate::helpers::as_account(request.clone(), &t.key, "rush");
        calls.spawn(async move {
            jobs.clone()
                .submit_job(request)
                .await
                .map(|r| r.into_inner())
        });
    }
    let mut accepted = Vec::new();
    while let Some(result) = calls.join_next().await {
        match result.expect("task") {
            Ok(job) => accepted.push(job),
            Err(status) => assert_eq!(code_of(&status), 2002, "only quota refusals: {status:?}"),
        }
    }
    assert_eq!(accepted.len(), 10, "exactly the balance is spent");
    assert_eq!(app.account(&t, "rush").await.balance, 0);
    assert_eq!(app.ledger_sum(&t, "rush").await, 0);
    for job in accepted {
        assert_eq!((job.state(), job.cost), (pb::JobState::Queued, 1));
    }
}

/// 64 submits of one unit each at once, as the account; returns the accepted jobs and the codes of the
/// refusals.
async fn rush(
    app: &crate::helpers::TestApp,
    t: &crate::helpers::Tenant,
    account: &str,
) -> (Vec<pb::Job>, Vec<u32>) {
    let request = transform_job(&[app.sources.url("/image.jpg")]);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let jobs = app.jobs.clone();
        let request = crate::helpers::as_account(request.clone(), &t.key, account);
        calls.spawn(async move {
            jobs.clone()
                .submit_job(request)
                .await
                .map(|r| r.into_inner())
        });
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    while let Some(result) = calls.join_next().await {
        match result.expect("task") {
            Ok(job) => accepted.push(job),
            Err(status) => refused.push(code_of(&status)),
        }
    }
    (accepted, refused)
}

/// Every charge on the account's ledger: one per accepted job, none twice.
async fn charged_jobs(
    app: &crate::helpers::TestApp,
    t: &crate::helpers::Tenant,
    account: &str,
) -> Vec<String> {
    let ledger = app
        .accounts
        .clone()
        .list_ledger(crate::helpers::as_account(
            pb::ListLedgerRequest {
                page_size: 500,
                ..Default::default()
            },
            &t.key,
            account,
        ))
        .await
        .expect("ledger")
        .into_inner();
    assert!(ledger.next_page_token.is_empty(), "one page holds it all");
    let mut jobs: Vec<String> = ledger
        .entries
        .into_iter()
        .filter(|e| e.kind == "charge")
        .map(|e| e.job_id)
        .collect();
    jobs.sort_unstable();
    jobs
}

/// The defaults: a balance of 10 and 10 active jobs allowed. Once ten jobs are in, both limits apply to
/// every later submit; the caller is told the one they can act on, the balance (2002), not 2003.
async fn an_empty_balance_is_the_reason_given_even_at_the_active_job_limit(backend: Backend) {
    // Nothing runs during the rush, so the ten accepted jobs stay active.
    let app = spawn_app_with(
        backend,
        |c| {
            c.max_active_jobs = 10;
            c.dispatch_concurrency = 0;
        },
        |_| {},
    )
    .await;
    let t = app.tenant("shop").await;
    app.member(&t, "rush", 10).await;
    let (accepted, refused) = rush(&app, &t, "rush").await;
    assert_eq!(accepted.len(), 10, "exactly the balance is spent");
    assert_eq!(refused.len(), 54);
    assert!(
        refused.iter().all(|&code| code == 2002),
        "every loser hears of the balance: {refused:?}"
    );
    let account = app.account(&t, "rush").await;
    assert_eq!((account.balance, account.active_jobs), (0, 10));
    assert_eq!(app.ledger_sum(&t, "rush").await, 0);
    let mut ids: Vec<String> = accepted.iter().map(|j| j.id.clone()).collect();
    ids.sort_unstable();
    assert_eq!(
        charged_jobs(&app, &t, "rush").await,
        ids,
        "each charged once"
    );
}

/// Enough balance for all: the active-job limit alone refuses, with 2003.
async fn the_active_job_limit_alone_is_still_2003(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.max_active_jobs = 10;
            c.dispatch_concurrency = 0;
        },
        |_| {},
    )
    .await;
    let t = app.tenant("shop").await;
    app.member(&t, "busy", 100).await;
    let (accepted, refused) = rush(&app, &t, "busy").await;
    assert_eq!(accepted.len(), 10, "exactly the limit is active");
    assert_eq!(refused.len(), 54);
    assert!(
        refused.iter().all(|&code| code == 2003),
        "every loser hears of the limit: {refused:?}"
    );
    let account = app.account(&t, "busy").await;
    assert_eq!((account.balance, account.active_jobs), (90, 10));
    assert_eq!(app.ledger_sum(&t, "busy").await, 90);
    let mut ids: Vec<String> = accepted.iter().map(|j| j.id.clone()).collect();
    ids.sort_unstable();
    assert_eq!(
        charged_jobs(&app, &t, "busy").await,
        ids,
        "each charged once"
    );
}
