//! DeleteJob, DeleteUpload and the retention sweeper, on real storage and both databases.

use std::time::Duration;

use atelier_orchestrator::db::retention::purge_job;
use atelier_proto::v1 as pb;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};

use crate::helpers::{
    admin, as_account, code_of, count, exec, fresh_database, images, spawn_app, spawn_app_at,
    transform_job, Backend, Tenant, TestApp, ADMIN, SERVICE,
};
use crate::on_both_databases;

on_both_databases!(
    deleting_a_job_removes_what_only_it_uses,
    the_sweeper_removes_exactly_what_is_due_across_a_restart,
);

const DAY_MS: i64 = 86_400_000;

/// Every object key (outputs and thumbnails) of a job.
fn keys(job: &pb::Job) -> Vec<String> {
    job.tasks
        .iter()
        .flat_map(|t| &t.outputs)
        .flat_map(|o| {
            std::iter::once(o.key.clone()).chain(o.thumbnail.as_ref().map(|t| t.key.clone()))
        })
        .collect()
}

async fn all_exist(storage: &atelier_storage::Storage, keys: &[String]) -> bool {
    for key in keys {
        if !storage.exists(key).await.expect("exists") {
            return false;
        }
    }
    true
}

async fn none_exist(storage: &atelier_storage::Storage, keys: &[String]) -> bool {
    for key in keys {
        if storage.exists(key).await.expect("exists") {
            return false;
        }
    }
    true
}

async fn run(app: &TestApp, t: &Tenant, urls: &[String]) -> pb::Job {
    let job = app
        .submit(t, "alice", transform_job(urls))
        .await
        .expect("submit");
    let done = app.finish(t, "alice", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    done
}

async fn delete(
    app: &TestApp,
    t: &Tenant,
    job_id: &str,
) -> Result<pb::DeleteJobResponse, tonic::Status> {
    app.jobs
        .clone()
        .delete_job(as_account(
            pb::DeleteJobRequest {
                job_id: job_id.into(),
            },
            &t.key,
            "alice",
        ))
        .await
        .map(|r| r.into_inner())
}

async fn get(app: &TestApp, t: &Tenant, job_id: &str) -> Result<pb::Job, tonic::Status> {
    app.jobs
        .clone()
        .get_job(as_account(
            pb::GetJobRequest {
                job_id: job_id.into(),
            },
            &t.key,
            "alice",
        ))
        .await
        .map(|r| r.into_inner())
}

async fn deleting_a_job_removes_what_only_it_uses(backend: Backend) {
    let app = spawn_app(backend).await;
    let db = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("database");
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 20).await;
    let image = app.sources.url("/image.jpg");
    let first = run(&app, &t, std::slice::from_ref(&image)).await;
    let second = run(&app, &t, std::slice::from_ref(&image)).await;
    assert!(
        second.tasks[0].from_cache,
        "the same request is served from the cache"
    );
    let shared = keys(&first);
    assert_eq!(
        keys(&second),
        shared,
        "a cache hit names the first job's objects"
    );
    assert!(shared.len() >= 2, "an output and its thumbnail: {shared:?}");
    let other = run(&app, &t, &[app.sources.url("/small-ok.png")]).await;
    let other_keys = keys(&other);
    assert!(all_exist(&app.storage, &shared).await && all_exist(&app.storage, &other_keys).await);

    // Unfinished jobs cannot be deleted.
    let held = app
        .submit(
            &t,
            "alice",
            transform_job(&[app.sources.url("/held/delete")]),
        )
        .await
        .expect("submit");
    let refused = delete(&app, &t, &held.id).await.expect_err("refused");
    assert_eq!(code_of(&refused), 1003, "{refused:?}");
    assert!(
        refused.message().contains("cancel"),
        "{}",
        refused.message()
    );
    assert!(get(&app, &t, &held.id).await.is_ok());
    let ledger_before = app.ledger_sum(&t, "alice").await;

    // Another tenant cannot see, so cannot delete, the job.
    let stranger = app.tenant("stranger").await;
    app.member(&stranger, "alice", 1).await;
    let hidden = delete(&app, &stranger, &first.id)
        .await
        .expect_err("not theirs");
    assert_eq!(code_of(&hidden), 1004);

    // The first job goes; the objects the second still names stay.
    let deleted = delete(&app, &t, &first.id).await.expect("delete");
    assert_eq!(deleted.objects_deleted, 0);
    assert_eq!(deleted.objects_kept as usize, shared.len());
    assert_eq!(
        code_of(&get(&app, &t, &first.id).await.expect_err("gone")),
        1004
    );
    assert_eq!(
        code_of(&delete(&app, &t, &first.id).await.expect_err("gone")),
        1004
    );
    assert!(
        all_exist(&app.storage, &shared).await,
        "the second job still uses them"
    );
    let kept = get(&app, &t, &second.id)
        .await
        .expect("the second job stays");
    assert_eq!(
        kept.tasks[0].outputs[0].sha256,
        second.tasks[0].outputs[0].sha256
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM job_events WHERE job_id = ?",
            &first.id
        )
        .await,
        0,
        "events are removed"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM tasks WHERE job_id = ?",
            &first.id
        )
        .await,
        0
    );
    assert!(
        count(
            &db,
            "SELECT COUNT(*) FROM ledger WHERE job_id = ?",
            &first.id
        )
        .await
            > 0,
        "the ledger keeps its rows"
    );
    assert_eq!(app.ledger_sum(&t, "alice").await, ledger_before);
    let listed = app
        .jobs
        .clone()
        .list_jobs(as_account(pb::ListJobsRequest::default(), &t.key, "alice"))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.jobs.iter().all(|j| j.id != first.id));

    // The last job naming them goes: now the objects go too; unrelated ones stay.
    let deleted = delete(&app, &t, &second.id).await.expect("delete");
    assert_eq!(deleted.objects_deleted as usize, shared.len());
    assert_eq!(deleted.objects_kept, 0);
    assert!(
        none_exist(&app.storage, &shared).await,
        "no job names them any more"
    );
    assert!(all_exist(&app.storage, &other_keys).await);
    assert!(get(&app, &t, &other.id).await.is_ok());

    // Uploads: the object and the record go; the second time it is unknown.
    let upload = app
        .upload(&t, "alice", images::jpeg())
        .await
        .expect("upload");
    let upload_key: String = {
        let backend = db.get_database_backend();
        let sql = if backend == sea_orm::DatabaseBackend::Postgres {
            "SELECT object_key FROM uploads WHERE id = $1"
        } else {
            "SELECT object_key FROM uploads WHERE id = ?"
        };
        db.query_one(Statement::from_sql_and_values(
            backend,
            sql,
            [upload.id.clone().into()],
        ))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index(0)
        .expect("key")
    };
    assert!(app.storage.exists(&upload_key).await.expect("exists"));
    let delete_upload = |id: String| {
        let mut jobs = app.jobs.clone();
        let key = t.key.clone();
        async move {
            jobs.delete_upload(as_account(
                pb::DeleteUploadRequest { upload_id: id },
                &key,
                "alice",
            ))
            .await
        }
    };
    delete_upload(upload.id.clone())
        .await
        .expect("delete upload");
    assert!(!app.storage.exists(&upload_key).await.expect("exists"));
    let again = delete_upload(upload.id.clone()).await.expect_err("gone");
    assert_eq!(code_of(&again), 1004);
    app.sources.release_held();
}

/// Reads a counter of the replica's `/metrics`, 0 when absent.
async fn removed(metrics: std::net::SocketAddr, what: &str) -> u64 {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = format!("atelier_retention_removed_total{{what=\"{what}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn the_sweeper_removes_exactly_what_is_due_across_a_restart(backend: Backend) {
    let root = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database(backend, root.path()).await;
    let retention = |c: &mut atelier_orchestrator::Config| {
        c.retention_output_days = 30;
        c.retention_upload_days = 7;
        c.retention_event_days = 30;
        // This replica never sweeps: the test sets the stage, the next one sweeps.
        c.retention_sweep_seconds = 0.0;
    };
    let app = spawn_app_at(root, database_url.clone(), retention, |_| {}).await;
    let db = sea_orm::Database::connect(&database_url)
        .await
        .expect("database");
    let a = app.tenant("defaults").await;
    app.member(&a, "alice", 20).await;
    let b = app.tenant("short").await;
    app.member(&b, "alice", 20).await;
    let set = app
        .accounts
        .clone()
        .set_retention(admin(pb::SetRetentionRequest {
            retention: Some(pb::Retention {
                tenant_id: b.id.clone(),
                output_days: 2,
                upload_days: 0,
                event_days: 1,
            }),
        }))
        .await
        .expect("set retention")
        .into_inner();
    assert_eq!(
        (set.output_days, set.upload_days, set.event_days),
        (2, 0, 1)
    );
    let unknown = app
        .accounts
        .clone()
        .set_retention(admin(pb::SetRetentionRequest {
            retention: Some(pb::Retention {
                tenant_id: "no-such-tenant".into(),
                ..Default::default()
            }),
        }))
        .await
        .expect_err("unknown tenant");
    assert_eq!(code_of(&unknown), 1004);

    let image = app.sources.url("/image.jpg");
    // Tenant a (30 days): an old job whose objects a recent cache hit still names, an old job of
    // its own (removed "before the crash"), a recent job; an old and a recent upload.
    let a_old_shared = run(&app, &a, std::slice::from_ref(&image)).await;
    let a_recent_hit = run(&app, &a, std::slice::from_ref(&image)).await;
    assert!(a_recent_hit.tasks[0].from_cache);
    let a_old_alone = run(&app, &a, &[app.sources.url("/small-ok.png")]).await;
    let a_recent = run(&app, &a, &[app.sources.url("/wide.png")]).await;
    let old_upload = app
        .upload(&a, "alice", images::jpeg())
        .await
        .expect("upload");
    let new_upload = app
        .upload(&a, "alice", images::png(64, 64))
        .await
        .expect("upload");
    // Tenant b (2 days of jobs, 1 day of events): a job 3 days old, one 36 hours old.
    let b_old = run(&app, &b, std::slice::from_ref(&image)).await;
    let b_mid = run(&app, &b, &[app.sources.url("/small-ok.png")]).await;

    let age = |id: String, days_ms: i64| {
        let db = db.clone();
        async move {
            exec(
                &db,
                "UPDATE jobs SET finished_at = finished_at - ? WHERE id = ?",
                vec![days_ms.into(), id.clone().into()],
            )
            .await;
            exec(
                &db,
                "UPDATE job_events SET created_at = created_at - ? WHERE job_id = ?",
                vec![days_ms.into(), id.into()],
            )
            .await;
        }
    };
    age(a_old_shared.id.clone(), 40 * DAY_MS).await;
    age(a_old_alone.id.clone(), 40 * DAY_MS).await;
    age(b_old.id.clone(), 3 * DAY_MS).await;
    age(b_mid.id.clone(), 3 * DAY_MS / 2).await;
    exec(
        &db,
        "UPDATE uploads SET created_at = created_at - ? WHERE id = ?",
        vec![(8 * DAY_MS).into(), old_upload.id.clone().into()],
    )
    .await;
    let b_mid_events = count(
        &db,
        "SELECT COUNT(*) FROM job_events WHERE job_id = ?",
        &b_mid.id,
    )
    .await;
    assert!(b_mid_events > 0);
    let upload_key = |id: &str| {
        let db = db.clone();
        let id = id.to_string();
        async move {
            let backend = db.get_database_backend();
            let sql = if backend == sea_orm::DatabaseBackend::Postgres {
                "SELECT object_key FROM uploads WHERE id = $1"
            } else {
                "SELECT object_key FROM uploads WHERE id = ?"
            };
            db.query_one(Statement::from_sql_and_values(backend, sql, [id.into()]))
                .await
                .expect("query")
                .expect("row")
                .try_get_by_index::<String>(0)
                .expect("key")
        }
    };
    let old_upload_key = upload_key(&old_upload.id).await;
    let new_upload_key = upload_key(&new_upload.id).await;

    // A sweep that crashed right after removing a_old_alone's rows: its objects are still stored,
    // queued in the outbox.
    let txn = db.begin().await.expect("begin");
    let purged = purge_job(&txn, &a.id, &a_old_alone.id)
        .await
        .expect("purge");
    txn.commit().await.expect("commit");
    assert_eq!(purged.queued.len(), keys(&a_old_alone).len());
    assert!(
        all_exist(&app.storage, &keys(&a_old_alone)).await,
        "the crash left the objects"
    );

    // The replica goes; another comes up with its sweeper on, in batches of one.
    let processor_url = app.processor.url();
    let objects = app.objects.clone();
    let objects_dir = objects.clone();
    let store = app.storage.clone();
    app.orchestrator.stop().await.expect("stop");
    let mut config =
        atelier_orchestrator::Config::new(database_url.clone(), objects, vec![processor_url]);
    config.admin_token = ADMIN.into();
    config.service_token = SERVICE.into();
    config.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    config.retention_output_days = 30;
    config.retention_upload_days = 7;
    config.retention_event_days = 30;
    config.retention_sweep_seconds = 0.05;
    config.retention_batch = 1;
    let restarted = atelier_orchestrator::spawn(config).await.expect("restart");
    let metrics = restarted.metrics_addr().expect("metrics");
    // Uploads are the last part of a round: once one is counted, the round is over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while removed(metrics, "uploads").await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweeper did not finish a round"
        );
        // Polling the counter, not waiting for a guessed time.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(removed(metrics, "jobs").await, 2, "a_old_shared and b_old");
    assert_eq!(removed(metrics, "uploads").await, 1);
    assert_eq!(removed(metrics, "events").await, b_mid_events as u64);
    let objects_removed = keys(&a_old_alone).len() + keys(&b_old).len() + 1;
    assert_eq!(removed(metrics, "objects").await, objects_removed as u64);

    // Exactly what was due is gone.
    let channel = tonic::transport::Channel::from_shared(restarted.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let jobs = atelier_proto::v1::job_service_client::JobServiceClient::new(channel);
    let get = |t: &Tenant, id: &str| {
        let mut jobs = jobs.clone();
        let request = as_account(pb::GetJobRequest { job_id: id.into() }, &t.key, "alice");
        async move { jobs.get_job(request).await.map(|r| r.into_inner()) }
    };
    for (t, gone) in [(&a, &a_old_shared), (&a, &a_old_alone), (&b, &b_old)] {
        let err = get(t, &gone.id).await.expect_err("removed");
        assert_eq!(code_of(&err), 1004, "{}", gone.id);
    }
    for (t, kept) in [(&a, &a_recent_hit), (&a, &a_recent), (&b, &b_mid)] {
        let job = get(t, &kept.id).await.expect("kept");
        assert_eq!(job.tasks[0].outputs.len(), kept.tasks[0].outputs.len());
        assert!(
            all_exist(&store, &keys(kept)).await,
            "{} keeps its objects",
            kept.id
        );
    }
    assert!(
        all_exist(&store, &keys(&a_old_shared)).await,
        "a recent cache hit still names them"
    );
    assert!(
        none_exist(&store, &keys(&a_old_alone)).await,
        "the crashed deletion finished"
    );
    assert!(none_exist(&store, &keys(&b_old)).await);
    assert!(!store.exists(&old_upload_key).await.expect("exists"));
    assert!(store.exists(&new_upload_key).await.expect("exists"));
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM uploads WHERE id = ?",
            &new_upload.id
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM job_events WHERE job_id = ?",
            &b_mid.id
        )
        .await,
        0,
        "b's events past a day"
    );
    assert!(
        count(
            &db,
            "SELECT COUNT(*) FROM job_events WHERE job_id = ?",
            &a_recent.id
        )
        .await
            > 0
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM object_deletions WHERE object_key <> ?",
            ""
        )
        .await,
        0
    );
    // A further round finds nothing more.
    let storage =
        atelier_storage::Storage::open(&objects_dir, &atelier_storage::S3Options::default())
            .await
            .expect("storage");
    let again = atelier_orchestrator::retention::sweep_once(
        &db,
        &storage,
        &atelier_orchestrator::metrics::Metrics::new(),
        &atelier_orchestrator::retention::Settings {
            defaults: atelier_orchestrator::db::retention::Defaults {
                output_days: 30,
                upload_days: 7,
                event_days: 30,
            },
            every: Duration::from_secs(1),
            batch: 10,
        },
    )
    .await
    .expect("sweep");
    assert_eq!(
        (again.jobs, again.objects, again.events, again.uploads),
        (0, 0, 0, 0)
    );
    restarted.stop().await.expect("stop");
}
