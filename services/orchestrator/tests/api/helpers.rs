//! `spawn_app()`: a fresh database, a real processor and a real orchestrator on free ports, with
//! typed clients and helpers that read like the product.

#![allow(dead_code)]

use atelier_orchestrator::{Config, RunningOrchestrator};
use atelier_processor::RunningProcessor;
use atelier_proto::v1 as pb;
use atelier_proto::v1::account_service_client::AccountServiceClient;
use atelier_proto::v1::job_service_client::JobServiceClient;
use atelier_proto::v1::studio_service_client::StudioServiceClient;
use atelier_storage::{S3Options, Storage};
use atelier_testkit::stack::Stack;
use atelier_testkit::SourceServer;
use sea_orm::ConnectionTrait;
use tonic::transport::Channel;
use tonic::Request;

pub use atelier_testkit::images;

pub use atelier_testkit::stack::{fresh_database, Backend, ADMIN, SERVICE};

/// A running pair and what tests need around it.
pub struct TestApp {
    pub orchestrator: RunningOrchestrator,
    pub processor: RunningProcessor,
    pub jobs: JobServiceClient<Channel>,
    pub accounts: AccountServiceClient<Channel>,
    pub studio: StudioServiceClient<Channel>,
    pub channel: Channel,
    pub storage: Storage,
    pub sources: SourceServer,
    pub database_url: String,
    /// The storage folder shared by the services.
    pub objects: String,
    _root: tempfile::TempDir,
}

/// A tenant with its tenant-wide key.
pub struct Tenant {
    pub id: String,
    pub key: String,
}

/// Starts a processor and an orchestrator on a fresh database and a temp storage folder.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}, |_| {}).await
}

/// Like [`spawn_app`], with both configurations adjusted first.
pub async fn spawn_app_with(
    backend: Backend,
    orchestrator: impl FnOnce(&mut Config),
    processor: impl FnOnce(&mut atelier_processor::Config),
) -> TestApp {
    started(
        Stack::builder(backend)
            .orchestrator(orchestrator)
            .processor(processor),
    )
    .await
}

/// Like [`spawn_app_with`], on a database the test brings (`root` is kept as long as the app).
pub async fn spawn_app_at(
    root: tempfile::TempDir,
    database_url: String,
    orchestrator: impl FnOnce(&mut Config),
    processor: impl FnOnce(&mut atelier_processor::Config),
) -> TestApp {
    started(
        Stack::builder_on(root, database_url)
            .orchestrator(orchestrator)
            .processor(processor),
    )
    .await
}

/// Starts the stack (no gateway) with clients around it.
async fn started(builder: atelier_testkit::stack::Builder<'_>) -> TestApp {
    let stack = builder.start().await;
    let channel = Channel::from_shared(stack.orchestrator.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let objects = stack.objects.display().to_string();
    let storage = Storage::open(&objects, &S3Options::default())
        .await
        .expect("storage");
    TestApp {
        orchestrator: stack.orchestrator,
        processor: stack.processor,
        jobs: JobServiceClient::new(channel.clone()),
        accounts: AccountServiceClient::new(channel.clone()),
        studio: StudioServiceClient::new(channel.clone()),
        channel,
        storage,
        sources: SourceServer::start().await,
        database_url: stack.database_url,
        objects,
        _root: stack.root,
    }
}

/// A request with the admin token.
pub fn admin<T>(message: T) -> Request<T> {
    bearer(message, ADMIN)
}

/// A request with a bearer token.
pub fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}

/// A request of a tenant key acting as `account`.
pub fn as_account<T>(message: T, key: &str, account: &str) -> Request<T> {
    let mut r = bearer(message, key);
    r.metadata_mut()
        .insert("x-atelier-account", account.parse().expect("ascii"));
    r
}

/// The Atelier code of a failed call.
pub fn code_of(status: &tonic::Status) -> u32 {
    atelier_codes::decode(status).code.number()
}

impl TestApp {
    /// Creates a tenant and a tenant-wide key.
    pub async fn tenant(&self, name: &str) -> Tenant {
        let mut accounts = self.accounts.clone();
        let t = accounts
            .create_tenant(admin(pb::CreateTenantRequest { name: name.into() }))
            .await
            .expect("tenant")
            .into_inner();
        let key = accounts
            .create_api_key(admin(pb::CreateApiKeyRequest {
                tenant_id: t.id.clone(),
                account: String::new(),
            }))
            .await
            .expect("key")
            .into_inner();
        Tenant {
            id: t.id,
            key: key.secret,
        }
    }

    /// Creates an account with membership and `balance` units of quota.
    pub async fn member(&self, tenant: &Tenant, account: &str, balance: i64) -> pb::Account {
        let mut accounts = self.accounts.clone();
        accounts
            .upsert_account(admin(pb::UpsertAccountRequest {
                tenant_id: tenant.id.clone(),
                external_id: account.into(),
            }))
            .await
            .expect("account");
        accounts
            .set_membership(admin(pb::SetMembershipRequest {
                tenant_id: tenant.id.clone(),
                account: account.into(),
                active: true,
                expires_at: None,
            }))
            .await
            .expect("membership");
        if balance > 0 {
            accounts
                .grant_quota(admin(pb::GrantQuotaRequest {
                    tenant_id: tenant.id.clone(),
                    account: account.into(),
                    amount: balance,
                    reason: "test".into(),
                    idempotency_key: String::new(),
                }))
                .await
                .expect("grant")
                .into_inner()
        } else {
            accounts
                .get_account(admin(pb::GetAccountRequest {
                    tenant_id: tenant.id.clone(),
                    account: account.into(),
                }))
                .await
                .expect("get")
                .into_inner()
        }
    }

    /// The account as its tenant sees it.
    pub async fn account(&self, tenant: &Tenant, account: &str) -> pb::Account {
        self.accounts
            .clone()
            .get_account(as_account(
                pb::GetAccountRequest::default(),
                &tenant.key,
                account,
            ))
            .await
            .expect("account")
            .into_inner()
    }

    /// The sum of the account's ledger, read through the API.
    pub async fn ledger_sum(&self, tenant: &Tenant, account: &str) -> i64 {
        let mut sum = 0;
        let mut token = String::new();
        loop {
            let page = self
                .accounts
                .clone()
                .list_ledger(as_account(
                    pb::ListLedgerRequest {
                        page_size: 100,
                        page_token: token,
                        ..Default::default()
                    },
                    &tenant.key,
                    account,
                ))
                .await
                .expect("ledger")
                .into_inner();
            sum += page.entries.iter().map(|e| e.amount).sum::<i64>();
            if page.next_page_token.is_empty() {
                return sum;
            }
            token = page.next_page_token;
        }
    }

    /// Submits a job as the account.
    pub async fn submit(
        &self,
        tenant: &Tenant,
        account: &str,
        request: pb::SubmitJobRequest,
    ) -> Result<pb::Job, tonic::Status> {
        self.jobs
            .clone()
            .submit_job(as_account(request, &tenant.key, account))
            .await
            .map(|r| r.into_inner())
    }

    /// Every event of the job from `after` until its terminal event.
    pub async fn watch_to_end(
        &self,
        tenant: &Tenant,
        account: &str,
        job_id: &str,
        after: u64,
    ) -> Vec<pb::JobEvent> {
        let request = as_account(
            pb::WatchJobRequest {
                job_id: job_id.into(),
                after_sequence: after,
            },
            &tenant.key,
            account,
        );
        let mut stream = self
            .jobs
            .clone()
            .watch_job(request)
            .await
            .expect("watch")
            .into_inner();
        let mut events = Vec::new();
        let deadline = std::time::Duration::from_secs(120);
        while let Some(event) = tokio::time::timeout(deadline, stream.message())
            .await
            .expect("job ends in time")
            .expect("stream")
        {
            events.push(event);
        }
        events
    }

    /// Waits until the job is terminal and returns it.
    pub async fn finish(&self, tenant: &Tenant, account: &str, job_id: &str) -> pb::Job {
        self.watch_to_end(tenant, account, job_id, 0).await;
        self.jobs
            .clone()
            .get_job(as_account(
                pb::GetJobRequest {
                    job_id: job_id.into(),
                },
                &tenant.key,
                account,
            ))
            .await
            .expect("get job")
            .into_inner()
    }

    /// Uploads bytes through UploadSource in 64 KiB chunks, announcing their size.
    pub async fn upload(
        &self,
        tenant: &Tenant,
        account: &str,
        data: Vec<u8>,
    ) -> Result<pb::Upload, tonic::Status> {
        let size = data.len() as u64;
        self.upload_announcing(tenant, account, data, size).await
    }

    /// Uploads bytes, announcing `size` in the metadata (0: no size).
    pub async fn upload_announcing(
        &self,
        tenant: &Tenant,
        account: &str,
        data: Vec<u8>,
        size: u64,
    ) -> Result<pb::Upload, tonic::Status> {
        let mut parts = vec![pb::UploadSourceRequest {
            part: Some(pb::upload_source_request::Part::Metadata(
                pb::UploadMetadata {
                    filename: "photo.jpg".into(),
                    content_type: String::new(),
                    size,
                },
            )),
        }];
        for chunk in data.chunks(64 * 1024) {
            parts.push(pb::UploadSourceRequest {
                part: Some(pb::upload_source_request::Part::Chunk(chunk.to_vec())),
            });
        }
        let request = as_account(tokio_stream::iter(parts), &tenant.key, account);
        self.jobs
            .clone()
            .upload_source(request)
            .await
            .map(|r| r.into_inner())
    }
}

/// A transform job over these URLs.
pub fn transform_job(urls: &[String]) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        params: Some(pb::JobParams {
            params: Some(pb::job_params::Params::Transform(pb::TransformParams {
                resize: Some(pb::Resize {
                    width: 320,
                    height: 0,
                    fit: pb::Fit::Inside as i32,
                }),
                format: pb::ImageFormat::Webp as i32,
                ..Default::default()
            })),
        }),
        sources: urls.iter().map(|u| url_source(u)).collect(),
        ..Default::default()
    }
}

/// A basic_clean job of `template` over these sources.
pub fn clean_job(sources: Vec<pb::Source>, template: pb::CleanTemplate) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        params: Some(pb::JobParams {
            params: Some(pb::job_params::Params::BasicClean(pb::BasicCleanParams {
                template: template as i32,
                model: String::new(),
                ..Default::default()
            })),
        }),
        sources,
        ..Default::default()
    }
}

/// A source by URL.
pub fn url_source(url: &str) -> pb::Source {
    pb::Source {
        source: Some(pb::source::Source::Url(url.into())),
    }
}

/// A source by upload id.
pub fn upload_source(id: &str) -> pb::Source {
    pb::Source {
        source: Some(pb::source::Source::UploadId(id.into())),
    }
}

/// One number a query with one `?` (the id) answers.
pub async fn count(db: &sea_orm::DatabaseConnection, sql: &str, id: &str) -> i64 {
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DatabaseBackend::Postgres {
        sql.replace('?', "$1")
    } else {
        sql.to_string()
    };
    db.query_one(sea_orm::Statement::from_sql_and_values(
        backend,
        sql,
        [id.into()],
    ))
    .await
    .expect("count")
    .expect("a row")
    .try_get_by_index(0)
    .expect("a number")
}

/// Runs a statement written with `?` placeholders on either database.
pub async fn exec(db: &sea_orm::DatabaseConnection, sql: &str, values: Vec<sea_orm::Value>) {
    let backend = db.get_database_backend();
    let mut n = 0;
    let sql: String = if backend == sea_orm::DatabaseBackend::Postgres {
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        sql.to_string()
    };
    db.execute(sea_orm::Statement::from_sql_and_values(
        backend, sql, values,
    ))
    .await
    .expect("statement");
}

/// The text a query with one `?` (the id) answers, `None` for NULL.
pub async fn text(db: &sea_orm::DatabaseConnection, sql: &str, id: &str) -> Option<String> {
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DatabaseBackend::Postgres {
        sql.replace('?', "$1")
    } else {
        sql.to_string()
    };
    db.query_one(sea_orm::Statement::from_sql_and_values(
        backend,
        sql,
        [id.into()],
    ))
    .await
    .expect("query")
    .expect("a row")
    .try_get_by_index(0)
    .expect("text")
}
