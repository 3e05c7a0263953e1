//! Identity and isolation: keys, scoped keys, the admin token, and NOT_FOUND across tenants.

use atelier_proto::v1 as pb;
use tonic::Request;

use std::collections::BTreeSet;

use atelier_proto::v1::account_service_client::AccountServiceClient;
use atelier_proto::v1::job_service_client::JobServiceClient;
use atelier_proto::v1::studio_service_client::StudioServiceClient;
use prost::Message as _;
use tonic::transport::Channel;

use crate::helpers::{
    admin, as_account, bearer, code_of, spawn_app, transform_job, Backend, TestApp,
};
use crate::on_both_databases;

on_both_databases!(
    callers_without_valid_keys_are_refused,
    tenants_and_accounts_never_see_each_others_jobs,
    every_method_refuses_a_call_without_credentials,
    admin_methods_refuse_tenant_keys
);

/// One call of every method of the three services, each request made by `$request` (a function or
/// closure, expanded at every call) from the message's default: what is refused is the caller, before
/// any field is read.
macro_rules! every_method {
    ($jobs:expr, $accounts:expr, $studio:expr, $request:expr) => {{
        let (jobs, accounts, studio): (
            &mut JobServiceClient<Channel>,
            &mut AccountServiceClient<Channel>,
            &mut StudioServiceClient<Channel>,
        ) = ($jobs, $accounts, $studio);
        let mut answers: Vec<(&str, &str, Result<(), tonic::Status>)> = Vec::new();
        macro_rules! call {
            ($service:literal, $client:ident, $method:ident, $name:literal, $message:ty) => {
                answers.push((
                    $service,
                    $name,
                    $client
                        .$method(($request)(<$message>::default()))
                        .await
                        .map(|_| ()),
                ));
            };
        }
        call!(
            "JobService",
            jobs,
            submit_job,
            "SubmitJob",
            pb::SubmitJobRequest
        );
        call!("JobService", jobs, get_job, "GetJob", pb::GetJobRequest);
        call!(
            "JobService",
            jobs,
            list_jobs,
            "ListJobs",
            pb::ListJobsRequest
        );
        call!(
            "JobService",
            jobs,
            cancel_job,
            "CancelJob",
            pb::CancelJobRequest
        );
        call!(
            "JobService",
            jobs,
            watch_job,
            "WatchJob",
            pb::WatchJobRequest
        );
        call!(
            "JobService",
            jobs,
            watch_events,
            "WatchEvents",
            pb::WatchEventsRequest
        );
        call!(
            "JobService",
            jobs,
            list_job_logs,
            "ListJobLogs",
            pb::ListJobLogsRequest
        );
        answers.push((
            "JobService",
            "UploadSource",
            jobs.upload_source(($request)(tokio_stream::iter(vec![
                pb::UploadSourceRequest::default(),
            ])))
            .await
            .map(|_| ()),
        ));
        call!(
            "JobService",
            jobs,
            list_models,
            "ListModels",
            pb::ListModelsRequest
        );
        call!(
            "JobService",
            jobs,
            get_stats,
            "GetStats",
            pb::GetStatsRequest
        );
        call!(
            "JobService",
            jobs,
            delete_job,
            "DeleteJob",
            pb::DeleteJobRequest
        );
        call!(
            "JobService",
            jobs,
            delete_upload,
            "DeleteUpload",
            pb::DeleteUploadRequest
        );
        call!(
            "JobService",
            jobs,
            submit_batch,
            "SubmitBatch",
            pb::SubmitBatchRequest
        );
        call!(
            "JobService",
            jobs,
            report_task,
            "ReportTask",
            pb::ReportTaskRequest
        );
        call!(
            "AccountService",
            accounts,
            get_account,
            "GetAccount",
            pb::GetAccountRequest
        );
        call!(
            "AccountService",
            accounts,
            list_ledger,
            "ListLedger",
            pb::ListLedgerRequest
        );
        call!(
            "AccountService",
            accounts,
            create_tenant,
            "CreateTenant",
            pb::CreateTenantRequest
        );
        call!(
            "AccountService",
            accounts,
            create_api_key,
            "CreateApiKey",
            pb::CreateApiKeyRequest
        );
        call!(
            "AccountService",
            accounts,
            revoke_api_key,
            "RevokeApiKey",
            pb::RevokeApiKeyRequest
        );
        call!(
            "AccountService",
            accounts,
            upsert_account,
            "UpsertAccount",
            pb::UpsertAccountRequest
        );
        call!(
            "AccountService",
            accounts,
            grant_quota,
            "GrantQuota",
            pb::GrantQuotaRequest
        );
        call!(
            "AccountService",
            accounts,
            set_membership,
            "SetMembership",
            pb::SetMembershipRequest
        );
        call!(
            "AccountService",
            accounts,
            set_retention,
            "SetRetention",
            pb::SetRetentionRequest
        );
        call!(
            "AccountService",
            accounts,
            create_webhook_endpoint,
            "CreateWebhookEndpoint",
            pb::CreateWebhookEndpointRequest
        );
        call!(
            "AccountService",
            accounts,
            list_webhook_endpoints,
            "ListWebhookEndpoints",
            pb::ListWebhookEndpointsRequest
        );
        call!(
            "AccountService",
            accounts,
            delete_webhook_endpoint,
            "DeleteWebhookEndpoint",
            pb::DeleteWebhookEndpointRequest
        );
        call!(
            "AccountService",
            accounts,
            list_webhook_deliveries,
            "ListWebhookDeliveries",
            pb::ListWebhookDeliveriesRequest
        );
        call!(
            "StudioService",
            studio,
            create_workspace,
            "CreateWorkspace",
            pb::CreateWorkspaceRequest
        );
        call!(
            "StudioService",
            studio,
            get_workspace,
            "GetWorkspace",
            pb::GetWorkspaceRequest
        );
        call!(
            "StudioService",
            studio,
            list_workspaces,
            "ListWorkspaces",
            pb::ListWorkspacesRequest
        );
        call!(
            "StudioService",
            studio,
            add_pairs,
            "AddPairs",
            pb::AddPairsRequest
        );
        call!(
            "StudioService",
            studio,
            list_pairs,
            "ListPairs",
            pb::ListPairsRequest
        );
        call!(
            "StudioService",
            studio,
            review_pairs,
            "ReviewPairs",
            pb::ReviewPairsRequest
        );
        call!(
            "StudioService",
            studio,
            archive_workspace,
            "ArchiveWorkspace",
            pb::ArchiveWorkspaceRequest
        );
        call!(
            "StudioService",
            studio,
            activate_workspace,
            "ActivateWorkspace",
            pb::ActivateWorkspaceRequest
        );
        call!(
            "StudioService",
            studio,
            delete_files,
            "DeleteFiles",
            pb::DeleteFilesRequest
        );
        call!(
            "StudioService",
            studio,
            list_prompt_groups,
            "ListPromptGroups",
            pb::ListPromptGroupsRequest
        );
        call!(
            "StudioService",
            studio,
            get_prompt_group,
            "GetPromptGroup",
            pb::GetPromptGroupRequest
        );
        call!(
            "StudioService",
            studio,
            save_prompt_group,
            "SavePromptGroup",
            pb::SavePromptGroupRequest
        );
        call!(
            "StudioService",
            studio,
            set_active_prompt_group,
            "SetActivePromptGroup",
            pb::SetActivePromptGroupRequest
        );
        call!(
            "StudioService",
            studio,
            get_preferences,
            "GetPreferences",
            pb::GetPreferencesRequest
        );
        call!(
            "StudioService",
            studio,
            set_preferences,
            "SetPreferences",
            pb::SetPreferencesRequest
        );
        call!(
            "StudioService",
            studio,
            submit_studio_job,
            "SubmitStudioJob",
            pb::SubmitStudioJobRequest
        );
        call!(
            "StudioService",
            studio,
            get_studio_job,
            "GetStudioJob",
            pb::GetStudioJobRequest
        );
        answers
    }};
}

/// `service/method` of every method the API's descriptors name in the three services.
fn described_methods() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(atelier_proto::API_FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    set.file
        .iter()
        .filter(|f| f.package() == "atelier.v1")
        .flat_map(|f| f.service.iter())
        .filter(|s| ["JobService", "AccountService", "StudioService"].contains(&s.name()))
        .flat_map(|s| {
            s.method
                .iter()
                .map(move |m| format!("{}/{}", s.name(), m.name()))
        })
        .collect()
}

fn clients(
    app: &TestApp,
) -> (
    JobServiceClient<Channel>,
    AccountServiceClient<Channel>,
    StudioServiceClient<Channel>,
) {
    (app.jobs.clone(), app.accounts.clone(), app.studio.clone())
}

async fn every_method_refuses_a_call_without_credentials(backend: Backend) {
    let app = spawn_app(backend).await;
    let (mut jobs, mut accounts, mut studio) = clients(&app);
    let answers = every_method!(&mut jobs, &mut accounts, &mut studio, Request::new);
    let called: BTreeSet<String> = answers
        .iter()
        .map(|(service, method, _)| format!("{service}/{method}"))
        .collect();
    assert_eq!(called, described_methods(), "every method is called once");
    assert_eq!(called.len(), answers.len());
    for (service, method, answer) in answers {
        let err = answer.expect_err(&format!("{service}/{method} without credentials"));
        assert_eq!(
            (err.code(), code_of(&err), err.message()),
            (
                tonic::Code::Unauthenticated,
                1001,
                "missing credentials: send authorization: Bearer <api key>"
            ),
            "{service}/{method}"
        );
    }

    // A malformed header and an unknown key are refused alike, by every method.
    let answers = every_method!(&mut jobs, &mut accounts, &mut studio, |m| bearer(
        m,
        "atl_unknown"
    ));
    for (service, method, answer) in answers {
        let err = answer.expect_err(&format!("{service}/{method} with an unknown key"));
        assert_eq!(
            (code_of(&err), err.message()),
            (1001, "invalid or revoked API key"),
            "{service}/{method}"
        );
    }
}

async fn admin_methods_refuse_tenant_keys(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    let (mut jobs, mut accounts, mut studio) = clients(&app);
    let admin_only = [
        "CreateTenant",
        "CreateApiKey",
        "RevokeApiKey",
        "UpsertAccount",
        "GrantQuota",
        "SetMembership",
        "SetRetention",
    ];
    let answers = every_method!(&mut jobs, &mut accounts, &mut studio, |m| as_account(
        m, &t.key, "alice"
    ));
    let mut refused = Vec::new();
    for (service, method, answer) in answers {
        if !admin_only.contains(&method) {
            // The tenant's calls get past authentication: whatever they answer, it is not 1001/1002
            // (ReportTask, which also needs the service token, aside).
            if let Err(err) = &answer {
                if method != "ReportTask" {
                    assert!(
                        ![1001, 1002].contains(&code_of(err)),
                        "{service}/{method}: {err:?}"
                    );
                }
            }
            continue;
        }
        let err = answer.expect_err(&format!("{service}/{method} with a tenant key"));
        assert_eq!(
            (err.code(), code_of(&err), err.message()),
            (
                tonic::Code::PermissionDenied,
                1002,
                "this call needs the admin token"
            ),
            "{service}/{method}"
        );
        refused.push(method);
    }
    assert_eq!(refused, admin_only);

    // The admin token, for its part, is no tenant.
    let err = jobs
        .list_jobs(admin(pb::ListJobsRequest::default()))
        .await
        .expect_err("admin lists no jobs");
    assert_eq!(
        (code_of(&err), err.message()),
        (
            1002,
            "the admin token cannot act as a tenant; use an API key"
        )
    );
    let err = accounts
        .list_webhook_endpoints(admin(pb::ListWebhookEndpointsRequest::default()))
        .await
        .expect_err("admin has no webhooks");
    assert_eq!(
        (code_of(&err), err.message()),
        (
            1002,
            "webhook endpoints belong to a tenant: call with the tenant's API key"
        )
    );
}

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
