//! Identity and isolation: keys, scoped keys, the admin token, and NOT_FOUND across tenants.

use atelier_proto::v1 as pb;
use tonic::Request;

use crate::helpers::{admin, as_account, bearer, code_of, spawn_app, transform_job, Backend};
use crate::on_both_databases;

on_both_databases!(
    callers_without_valid_keys_are_refused,
    tenants_and_accounts_never_see_each_others_jobs
);

async fn callers_without_valid_keys_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let mut jobs = app.jobs.clone();

    let err = jobs
        .get_job(Request::new(pb::GetJobRequest { job_id: "x".into() }))
        .await
        .expect_err("no key");
    assert_eq!(
        (err.code(), code_of(&err)),
        (tonic::Code::Unauthenticated, 1001)
    );
    let err = jobs
        .get_job(bearer(
            pb::GetJobRequest { job_id: "x".into() },
            "atl_wrong",
        ))
        .await
        .expect_err("wrong key");
    assert_eq!(code_of(&err), 1001);
    let err = jobs
        .submit_job(admin(transform_job(&[app.sources.url("/image.jpg")])))
        .await
        .expect_err("admin is no tenant");
    assert_eq!(code_of(&err), 1002);
    let err = app
        .accounts
        .clone()
        .create_tenant(bearer(pb::CreateTenantRequest { name: "x".into() }, &t.key))
        .await
        .expect_err("tenant is no admin");
    assert_eq!(code_of(&err), 1002);
    let err = app
        .submit(&t, "", transform_job(&[app.sources.url("/image.jpg")]))
        .await;
    assert!(err.is_err(), "an empty account name is refused");

    // A revoked key stops working at once.
    let issued = app
        .accounts
        .clone()
        .create_api_key(admin(pb::CreateApiKeyRequest {
            tenant_id: t.id.clone(),
            account: String::new(),
        }))
        .await
        .expect("key")
        .into_inner();
    assert!(issued.secret.starts_with("atl_") && issued.secret.len() == 68);
    jobs.list_jobs(as_account(
        pb::ListJobsRequest::default(),
        &issued.secret,
        "alice",
    ))
    .await
    .expect("works");
    let key_id = issued.key.expect("key").id;
    app.accounts
        .clone()
        .revoke_api_key(admin(pb::RevokeApiKeyRequest { key_id }))
        .await
        .expect("revoke");
    let err = jobs
        .list_jobs(as_account(
            pb::ListJobsRequest::default(),
            &issued.secret,
            "alice",
        ))
        .await
        .expect_err("revoked");
    assert_eq!(code_of(&err), 1001);
}

async fn tenants_and_accounts_never_see_each_others_jobs(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    app.member(&a, "alice", 5).await;
    app.member(&a, "amos", 5).await;
    app.member(&b, "alice", 5).await;
    let job = app
        .submit(&a, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("submit");
    let mut jobs = app.jobs.clone();

    // Another tenant, even with the same account name, sees NOT_FOUND, as for an id that does not exist.
    let err = jobs
        .get_job(as_account(
            pb::GetJobRequest {
                job_id: job.id.clone(),
            },
            &b.key,
            "alice",
        ))
        .await
        .expect_err("other tenant");
    assert_eq!((err.code(), code_of(&err)), (tonic::Code::NotFound, 1004));
    let missing = jobs
        .get_job(as_account(
            pb::GetJobRequest {
                job_id: uuid::Uuid::new_v4().to_string(),
            },
            &b.key,
            "alice",
        ))
        .await
        .expect_err("missing");
    assert_eq!(
        missing.message(),
        err.message(),
        "foreign and missing ids look the same"
    );
    let err = jobs
        .cancel_job(as_account(
            pb::CancelJobRequest {
                job_id: job.id.clone(),
            },
            &b.key,
            "alice",
        ))
        .await
        .expect_err("cancel foreign");
    assert_eq!(code_of(&err), 1004);
    let err = jobs
        .watch_job(as_account(
            pb::WatchJobRequest {
                job_id: job.id.clone(),
                after_sequence: 0,
            },
            &b.key,
            "alice",
        ))
        .await
        .expect_err("watch foreign");
    assert_eq!(code_of(&err), 1004);
    let listed = jobs
        .list_jobs(as_account(pb::ListJobsRequest::default(), &b.key, "alice"))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.jobs.is_empty());

    // A key scoped to one account acts only as that account.
    let scoped = app
        .accounts
        .clone()
        .create_api_key(admin(pb::CreateApiKeyRequest {
            tenant_id: a.id.clone(),
            account: "amos".into(),
        }))
        .await
        .expect("scoped key")
        .into_inner()
        .secret;
    let err = jobs
        .get_job(bearer(
            pb::GetJobRequest {
                job_id: job.id.clone(),
            },
            &scoped,
        ))
        .await
        .expect_err("alice's job");
    assert_eq!(code_of(&err), 1004);
    let err = jobs
        .get_job(as_account(
            pb::GetJobRequest {
                job_id: job.id.clone(),
            },
            &scoped,
            "alice",
        ))
        .await
        .expect_err("posing");
    assert_eq!(code_of(&err), 1002);
    // The tenant-wide key sees it, with or without naming the account.
    jobs.get_job(bearer(
        pb::GetJobRequest {
            job_id: job.id.clone(),
        },
        &a.key,
    ))
    .await
    .expect("tenant-wide");
    let err = jobs
        .get_job(as_account(
            pb::GetJobRequest {
                job_id: job.id.clone(),
            },
            &a.key,
            "amos",
        ))
        .await
        .expect_err("other account");
    assert_eq!(code_of(&err), 1004);
    app.finish(&a, "alice", &job.id).await;
}
