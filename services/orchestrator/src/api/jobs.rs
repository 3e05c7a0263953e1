//! JobService: submit (one job, or a batch of jobs holding one active-jobs unit), read, list, cancel
//! and watch jobs.

use atelier_proto::v1 as pb;
use atelier_proto::v1::job_service_server::JobService;
use base64::Engine as _;
use prost::Message;
use sea_orm::{ConnectionTrait, TransactionTrait};
use tonic::{Request, Response, Status, Streaming};

use super::submit::{BatchRequest, SourceSpec, Submission};
use super::{convert, page_size, upload, watch};
use crate::auth::TenantCaller;
use crate::context::Context;
use crate::db::{self, entities::job, jobs::Scope};
use crate::domain::{from_timestamp, model_of, now_ms, JobState, Kind};
use crate::error::{ApiError, ApiResult};
use crate::layers::CallContext;
use atelier_codes::family::Family;
use atelier_codes::FieldViolation;
use atelier_telemetry::trace::TraceParent;

/// The JobService implementation.
pub struct Jobs {
    ctx: Context,
}

impl Jobs {
    /// Serves jobs from the shared context.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    async fn scope(&self, caller: &TenantCaller) -> ApiResult<Scope> {
        caller
            .scope(&self.ctx.db)
            .await?
            .ok_or(ApiError::NotFound("job"))
    }

    async fn load(&self, scope: &Scope, job_id: &str) -> ApiResult<pb::Job> {
        let job = db::jobs::find(&self.ctx.db, scope, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        self.render(job).await
    }

    pub(crate) async fn render(&self, job: job::Model) -> ApiResult<pb::Job> {
        self.render_in(&self.ctx.db, job).await
    }

    /// The job as the API shows it, read through `db` (a transaction that has just written it).
    async fn render_in<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        job: job::Model,
    ) -> ApiResult<pb::Job> {
        let tasks = db::jobs::tasks_of(db, std::slice::from_ref(&job.id)).await?;
        self.render_with(db, job, &tasks).await
    }

    /// The job as the API shows it, its tasks already read (or just written).
    async fn render_with<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        job: job::Model,
        tasks: &[db::entities::task::Model],
    ) -> ApiResult<pb::Job> {
        let ahead = if job.state == JobState::Queued {
            Some(db::jobs::queue_ahead(db, &job).await?)
        } else {
            None
        };
        self.view(db, job, tasks, ahead).await
    }

    /// The job as the API shows it, with the waiting tasks ahead of it when it is queued.
    async fn view<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        job: job::Model,
        tasks: &[db::entities::task::Model],
        ahead: Option<i64>,
    ) -> ApiResult<pb::Job> {
        let mut out = convert::job(&job, tasks);
        crate::links::job(&self.ctx.links, &mut out).await;
        if let Some(ahead) = ahead {
            let mean_ms = self.ctx.run_times.mean_ms(db, job.kind).await?;
            (out.queue_position, out.estimated_seconds) = db::jobs::position_of(ahead, mean_ms);
        }
        Ok(out)
    }

    /// SubmitJob: validated, priced, charged and inserted in one transaction; the account's row is
    /// locked only from the charge to the commit.
    async fn submit(
        &self,
        caller: TenantCaller,
        request: pb::SubmitJobRequest,
        trace: Option<TraceParent>,
    ) -> ApiResult<pb::Job> {
        let external = caller.require_account()?.to_string();
        let submission = Submission::try_from(request)?;
        let key = submission.idempotency_key.clone();
        let (payer, prepared) = self
            .prepare_submission(&self.ctx.db, &caller, submission)
            .await?;
        if let Some(job) = self
            .submit_at_once(&caller, &payer, &prepared, trace.as_ref())
            .await?
        {
            return Ok(job);
        }
        let txn = self.ctx.db.begin().await?;
        let fingerprint = prepared.fingerprint.clone();
        let inserted = match self
            .charge_and_insert(&txn, &caller, payer, prepared, trace.as_ref())
            .await
        {
            Ok(inserted) => inserted,
            // The same key submitted at the same moment: the other call's job is committed now.
            Err(ApiError::Db(e)) if key.is_some() && db::is_unique_violation(&e) => {
                drop(txn);
                return self
                    .replay(&caller, &external, key.as_deref(), &fingerprint)
                    .await;
            }
            Err(e) => return Err(e),
        };
        // The answer is read in the same transaction: a submit is one transaction in all.
        let out = match inserted {
            Inserted::New(job, view) => {
                txn.commit().await?;
                self.submitted(&job);
                *view
            }
            Inserted::Replayed(job) => {
                let view = self.render_in(&txn, job).await?;
                txn.commit().await?;
                view
            }
        };
        Ok(out)
    }

    /// SubmitJob in one statement on PostgreSQL ([`db::jobs::insert_charged`]): with the account
    /// as `payer` read it, the charge and every insert are one statement, so the account's row is
    /// never locked across a round trip and the submits of one busy account follow each other at
    /// the pace of the database's commits. `None`, with nothing written, when the job goes the
    /// careful way of [`Self::charge_and_insert`] instead: on SQLite, for an account that may be at
    /// its active-jobs limit or whose membership or balance refuses the job (which that way tells
    /// exactly), and when the balance or the number of jobs charged moved since the read so that
    /// the charge's guard failed. A key used before makes the statement fail on the unique index,
    /// writing nothing; the earlier job then answers.
    async fn submit_at_once(
        &self,
        caller: &TenantCaller,
        payer: &Payer,
        prepared: &Prepared,
        trace: Option<&TraceParent>,
    ) -> ApiResult<Option<pb::Job>> {
        let db = &self.ctx.db;
        if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(None);
        }
        let account = &payer.account;
        let key = prepared.submission.idempotency_key.as_deref();
        // Jobs charged since the read may all be active still: the charge is made only while the
        // account's `submits` shows no more of them than the limit has room for.
        let room = i64::from(self.ctx.policy.max_active_jobs)
            - i64::try_from(payer.active_units).unwrap_or(i64::MAX)
            - 1;
        if room < 0
            || !db::accounts::is_member(account, now_ms())
            || account.balance < prepared.cost
        {
            return Ok(None);
        }
        let job = Self::new_job(caller, account, prepared, None, trace)?;
        let inserted = db::jobs::insert_charged(
            db,
            job,
            prepared.tasks.clone(),
            prepared.cost,
            account.submits.saturating_add(room),
        )
        .await;
        match inserted {
            Ok(Some((job, tasks))) => {
                self.submitted(&job);
                Ok(Some(
                    self.view(db, job, &tasks, Some(payer.waiting_tasks))
                        .await?,
                ))
            }
            Ok(None) => Ok(None),
            // The key was used before (or at the same moment): the statement wrote nothing, and
            // the job it made answers a replay of the same request or refuses another one.
            Err(e) if key.is_some() && db::is_unique_violation(&e) => self
                .replay(caller, &account.external_id, key, &prepared.fingerprint)
                .await
                .map(Some),
            Err(e) => Err(e.into()),
        }
    }

    /// The job an earlier SubmitJob with this idempotency key made, if it was the same request.
    async fn replay(
        &self,
        caller: &TenantCaller,
        external: &str,
        key: Option<&str>,
        fingerprint: &str,
    ) -> ApiResult<pb::Job> {
        let account = db::accounts::find(&self.ctx.db, &caller.tenant_id, external)
            .await?
            .ok_or_else(|| ApiError::MembershipRequired(external.to_string()))?;
        let existing = match key {
            Some(key) => db::jobs::find_by_idempotency(&self.ctx.db, &account.id, key).await?,
            None => None,
        };
        match existing {
            Some(job) if job.request_hash.as_deref() == Some(fingerprint) => self.render(job).await,
            Some(_) => Err(ApiError::IdempotencyConflict),
            None => Err(ApiError::Internal(
                "a concurrent submit with the same idempotency key left no job".into(),
            )),
        }
    }

    /// The part of SubmitJob before its charge: the kind (and model) offered, the account found, the
    /// sources resolved and the job priced. Studio jobs go through it too.
    pub(crate) async fn prepare_submission<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        caller: &TenantCaller,
        submission: Submission,
    ) -> ApiResult<(Payer, Prepared)> {
        let external = caller.require_account()?;
        self.check_offered(&submission).await?;
        let payer = db::accounts::find_with_active(db, &caller.tenant_id, external)
            .await?
            .ok_or_else(|| ApiError::MembershipRequired(external.to_string()))?;
        let prepared = self
            .prepare(db, caller, &payer.account.id, submission)
            .await?;
        Ok((payer, prepared))
    }

    /// The charge of SubmitJob, in the caller's transaction (which commits it, then calls
    /// [`Self::submitted`] for a new job): an idempotent replay answers the job it made; else
    /// membership and balance are checked, the job is inserted with its tasks, and the account is
    /// charged last, so its row is locked only from the charge to the commit. The account as
    /// [`Self::prepare_submission`] read it is enough: the charge checks the balance again in the
    /// statement that moves it. The active-jobs limit is known exactly once the charge holds the
    /// lock: the units counted with that read, plus at most the jobs charged since (the account's
    /// `submits`, see [`db::accounts::charge_job`]); only an account that may be at its limit is
    /// counted again under the lock, seeing every submit committed before. A concurrent call with
    /// the same idempotency key that won shows as the unique index's violation.
    pub(crate) async fn charge_and_insert<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        caller: &TenantCaller,
        payer: Payer,
        prepared: Prepared,
        trace: Option<&TraceParent>,
    ) -> ApiResult<Inserted> {
        let max_active = u64::from(self.ctx.policy.max_active_jobs);
        let Payer {
            account,
            active_units,
            waiting_tasks,
        } = payer;
        let external = account.external_id.as_str();
        if let Some(key) = &prepared.submission.idempotency_key {
            if let Some(existing) = db::jobs::find_by_idempotency(txn, &account.id, key).await? {
                return if existing.request_hash.as_deref() == Some(prepared.fingerprint.as_str()) {
                    Ok(Inserted::Replayed(existing))
                } else {
                    Err(ApiError::IdempotencyConflict)
                };
            }
        }
        if !db::accounts::is_member(&account, now_ms()) {
            return Err(ApiError::MembershipRequired(external.to_string()));
        }
        // The balance before the active-job limit: when both refuse, the caller can act on the balance
        // (buy more), while waiting for a job to finish would only bring the same answer again. The
        // charge checks the balance again, in the statement that moves it.
        if account.balance < prepared.cost {
            return Err(ApiError::QuotaExhausted {
                needed: prepared.cost,
                balance: account.balance,
            });
        }
        let needed = prepared.cost;
        let (job, tasks) = self.insert(txn, caller, &account, prepared, trace).await?;
        // The answer is made before the charge, so the account's row is locked only from the
        // charge to the commit.
        let view = self
            .view(txn, job.clone(), &tasks, Some(waiting_tasks))
            .await?;
        let Some(submits) = db::accounts::charge_job(txn, &account.id, needed).await? else {
            // Membership or balance changed since the read above.
            let now = db::accounts::find(txn, &caller.tenant_id, external).await?;
            return Err(match now {
                Some(a) if db::accounts::is_member(&a, now_ms()) => ApiError::QuotaExhausted {
                    needed,
                    balance: a.balance,
                },
                _ => ApiError::MembershipRequired(external.to_string()),
            });
        };
        // This job counts itself, and every job charged since the units were counted may be
        // active too; only when that could pass the limit is the account counted again.
        let added = u64::try_from(submits - account.submits - 1).unwrap_or_default();
        let at_most = active_units + added + 1;
        if at_most > max_active && db::accounts::active_units(txn, &account.id).await? > max_active
        {
            return Err(ApiError::TooManyActiveJobs {
                limit: self.ctx.policy.max_active_jobs,
            });
        }
        Ok(Inserted::New(job, Box::new(view)))
    }

    /// SubmitBatch: every entry validated and priced first (a malformed entry refuses the whole
    /// call), then in one transaction under the account's lock: membership once, one free unit of
    /// the active-jobs limit for the whole batch, and each entry charged in order; an entry the
    /// balance cannot pay is refused alone (2002), unless no entry can be paid at all.
    async fn batch(
        &self,
        caller: TenantCaller,
        request: pb::SubmitBatchRequest,
        trace: Option<TraceParent>,
    ) -> ApiResult<pb::SubmitBatchResponse> {
        let external = caller.require_account()?.to_string();
        let batch = BatchRequest::try_from(request)?;
        let mut submissions = Vec::with_capacity(batch.jobs.len());
        let mut bad = Vec::new();
        for (i, mut job) in batch.jobs.into_iter().enumerate() {
            // The batch's family applies to every entry.
            job.family.clear();
            let idempotency_key = !job.idempotency_key.trim().is_empty();
            match Submission::try_from(job) {
                Ok(mut s) => {
                    s.family = batch.family;
                    submissions.push(s);
                }
                Err(ApiError::BadRequest(violations)) => {
                    bad.extend(violations.into_iter().map(|mut v| {
                        v.field = format!("jobs[{i}].{}", v.field);
                        v
                    }));
                }
                Err(other) => return Err(other),
            }
            if idempotency_key {
                bad.push(FieldViolation::new(
                    format!("jobs[{i}].idempotency_key"),
                    "entries of a batch take no idempotency key; the batch id names the batch",
                ));
            }
        }
        if !bad.is_empty() {
            return Err(ApiError::BadRequest(bad));
        }
        for s in &submissions {
            self.check_offered(s).await?;
        }
        let account = db::accounts::find(&self.ctx.db, &caller.tenant_id, &external)
            .await?
            .ok_or_else(|| ApiError::MembershipRequired(external.clone()))?;
        let mut prepared = Vec::with_capacity(submissions.len());
        for (i, s) in submissions.into_iter().enumerate() {
            prepared.push(
                self.prepare(&self.ctx.db, &caller, &account.id, s)
                    .await
                    .map_err(|e| e.under(&format!("jobs[{i}]")))?,
            );
        }
        let batch_id = batch.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let max_active = self.ctx.policy.max_active_jobs;

        let txn = self.ctx.db.begin().await?;
        db::accounts::lock(&txn, &account.id).await?;
        if db::batches::find(&txn, &account.id, &batch_id)
            .await?
            .is_some()
        {
            return Err(ApiError::field(
                "batch_id",
                "the account already has a batch with this id",
            ));
        }
        let account = self.locked_member(&txn, &caller, &external).await?;
        // Which entries the balance pays, in order; as for one job, the balance is the reason
        // given before the active-jobs limit.
        let mut balance = account.balance;
        let paid: Vec<bool> = prepared
            .iter()
            .map(|p| {
                let pays = p.cost <= balance;
                if pays {
                    balance -= p.cost;
                }
                pays
            })
            .collect();
        if !paid.contains(&true) {
            return Err(ApiError::QuotaExhausted {
                needed: prepared.first().map_or(0, |p| p.cost),
                balance: account.balance,
            });
        }
        if db::accounts::active_units(&txn, &account.id).await? >= u64::from(max_active) {
            return Err(ApiError::TooManyActiveJobs { limit: max_active });
        }
        let mut outcomes = Vec::with_capacity(prepared.len());
        let mut balance = account.balance;
        for (p, pays) in prepared.into_iter().zip(paid) {
            let needed = p.cost;
            let job = if pays {
                self.insert_in_batch(&txn, &caller, &account, p, &batch_id, trace.as_ref())
                    .await?
            } else {
                None
            };
            if job.is_some() {
                balance -= needed;
            }
            outcomes.push(job.ok_or(ApiError::QuotaExhausted { needed, balance }));
        }
        let total = outcomes.iter().filter(|o| o.is_ok()).count();
        // A single submit racing this batch learns from the count that jobs were added.
        db::accounts::count_submits(&txn, &account.id, total).await?;
        db::batches::insert(
            &txn,
            db::entities::batch::Model {
                account_id: account.id.clone(),
                id: batch_id.clone(),
                tenant_id: caller.tenant_id.clone(),
                callback_url: batch.callback_url,
                family: batch.family.map_or("", Family::as_str).to_string(),
                total: i32::try_from(total).unwrap_or(i32::MAX),
                created_at: now_ms(),
            },
        )
        .await?;
        txn.commit().await?;
        tracing::info!(%batch_id, jobs = total, "batch submitted");
        let mut entries = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let result = match outcome {
                Ok(job) => {
                    self.submitted(&job);
                    pb::batch_entry::Result::Job(self.render(job).await?)
                }
                Err(refused) => pb::batch_entry::Result::Failure(refused.failure()),
            };
            entries.push(pb::BatchEntry {
                result: Some(result),
            });
        }
        Ok(pb::SubmitBatchResponse { batch_id, entries })
    }

    /// 3006 when no processor offers the kind (or the model) asked for.
    async fn check_offered(&self, submission: &Submission) -> ApiResult<()> {
        let model = model_of(&submission.params);
        if self
            .ctx
            .processors
            .offers(submission.kind.to_proto(), model)
            .await
        {
            return Ok(());
        }
        Err(ApiError::ModelUnavailable(if model.is_empty() {
            format!(
                "no processor offers the {} kind; configure a model provider for it",
                submission.kind.as_str()
            )
        } else {
            format!(
                "no processor offers model {model:?} for the {} kind; ListModels shows what is available",
                submission.kind.as_str()
            )
        }))
    }

    /// Resolves the sources and prices the job.
    async fn prepare<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        caller: &TenantCaller,
        account_id: &str,
        submission: Submission,
    ) -> ApiResult<Prepared> {
        let tasks = self
            .task_sources(db, caller, account_id, &submission)
            .await?;
        let unit_price =
            self.ctx
                .policy
                .unit_price(submission.family, submission.kind, &submission.params);
        let cost = unit_price.saturating_mul(i64::try_from(tasks.len()).unwrap_or(i64::MAX));
        let fingerprint = submission.fingerprint();
        Ok(Prepared {
            submission,
            tasks,
            unit_price,
            cost,
            fingerprint,
        })
    }

    /// The account re-read under its lock (balance and membership may have changed since), which
    /// must hold an active membership.
    async fn locked_member<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        caller: &TenantCaller,
        external: &str,
    ) -> ApiResult<db::entities::account::Model> {
        let account = db::accounts::find(txn, &caller.tenant_id, external)
            .await?
            .ok_or(ApiError::NotFound("account"))?;
        if !db::accounts::is_member(&account, now_ms()) {
            return Err(ApiError::MembershipRequired(external.to_string()));
        }
        Ok(account)
    }

    /// Inserts a single job with its tasks in the caller's transaction. The caller charges it
    /// after the insert, its row being the charge's ledger entry (see db::accounts), so the
    /// account's row is locked from the charge to the commit only.
    async fn insert<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        caller: &TenantCaller,
        account: &db::entities::account::Model,
        prepared: Prepared,
        trace: Option<&TraceParent>,
    ) -> ApiResult<(job::Model, Vec<db::entities::task::Model>)> {
        let job = Self::new_job(caller, account, &prepared, None, trace)?;
        Ok(db::jobs::insert(txn, job, prepared.tasks).await?)
    }

    /// Books the charge of one entry of a batch and inserts its job. The batch holds the account's
    /// lock already and refuses an entry alone when the balance cannot pay it: `None` then, with
    /// nothing changed.
    async fn insert_in_batch<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        caller: &TenantCaller,
        account: &db::entities::account::Model,
        prepared: Prepared,
        batch_id: &str,
        trace: Option<&TraceParent>,
    ) -> ApiResult<Option<job::Model>> {
        let job = Self::new_job(caller, account, &prepared, Some(batch_id), trace)?;
        let charge = db::accounts::Entry {
            account_id: &account.id,
            kind: db::accounts::CHARGE_KIND,
            amount: -prepared.cost,
            reason: db::accounts::CHARGE_REASON,
            unique_key: format!("charge:{}", job.id),
            job_id: Some(&job.id),
            task_id: None,
        };
        if !db::accounts::book(txn, charge).await? {
            return Ok(None);
        }
        let (job, _) = db::jobs::insert(txn, job, prepared.tasks).await?;
        Ok(Some(job))
    }

    /// The row of a new job, queued, before it is written.
    fn new_job(
        caller: &TenantCaller,
        account: &db::entities::account::Model,
        prepared: &Prepared,
        batch_id: Option<&str>,
        trace: Option<&TraceParent>,
    ) -> ApiResult<job::Model> {
        let submission = &prepared.submission;
        let labels = serde_json::to_string(&submission.labels)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let now = now_ms();
        Ok(job::Model {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: caller.tenant_id.clone(),
            account_id: account.id.clone(),
            account: account.external_id.clone(),
            kind: submission.kind,
            state: JobState::Queued,
            params: submission.params.encode_to_vec(),
            labels,
            idempotency_key: submission.idempotency_key.clone(),
            request_hash: Some(prepared.fingerprint.clone()),
            callback_url: submission.callback_url.clone(),
            unit_price: prepared.unit_price,
            cost: prepared.cost,
            refunded: 0,
            last_sequence: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
            deadline_at: submission.deadline_ms,
            trace_parent: trace.map(ToString::to_string),
            family: submission.family.map_or("", Family::as_str).to_string(),
            batch_id: batch_id.map(str::to_string),
        })
    }

    /// After the commit: count the job and wake watchers and the dispatcher.
    pub(crate) fn submitted(&self, job: &job::Model) {
        tracing::info!(job_id = %job.id, kind = %job.kind, cost = job.cost, "job submitted");
        self.ctx.metrics.job_submitted(job.kind.as_str());
        self.ctx.bus.notify(&job.id);
        self.ctx.dispatch.wake();
    }

    /// Resolves every source to what the processor reads; uploads must belong to the caller.
    async fn task_sources<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        caller: &TenantCaller,
        account_id: &str,
        s: &Submission,
    ) -> ApiResult<Vec<db::jobs::NewTask>> {
        if s.kind == Kind::Generate {
            return Ok(vec![db::jobs::NewTask {
                source: None,
                source_ref: None,
            }]);
        }
        let mut tasks = Vec::with_capacity(s.sources.len());
        for (i, spec) in s.sources.iter().enumerate() {
            let (source, source_ref) = match spec {
                SourceSpec::Url(url) => (
                    pb::source::Source::Url(url.clone()),
                    pb::source_ref::Source::Url(url.clone()),
                ),
                SourceSpec::Upload(id) => {
                    let found = db::uploads::find(db, &caller.tenant_id, id)
                        .await?
                        .filter(|u| !caller.scoped || u.account_id == account_id)
                        .ok_or_else(|| {
                            ApiError::field(&format!("sources[{i}].upload_id"), "no such upload")
                        })?;
                    (
                        pb::source::Source::UploadId(id.clone()),
                        pb::source_ref::Source::ObjectKey(found.object_key),
                    )
                }
            };
            tasks.push(db::jobs::NewTask {
                source: Some(
                    pb::Source {
                        source: Some(source),
                    }
                    .encode_to_vec(),
                ),
                source_ref: Some(
                    pb::SourceRef {
                        source: Some(source_ref),
                    }
                    .encode_to_vec(),
                ),
            });
        }
        Ok(tasks)
    }

    async fn list(
        &self,
        caller: TenantCaller,
        req: pb::ListJobsRequest,
    ) -> ApiResult<pb::ListJobsResponse> {
        let limit = page_size(req.page_size, 20, 100)?;
        let mut filter = db::jobs::ListFilter::default();
        if req.state != 0 {
            let state = pb::JobState::try_from(req.state)
                .ok()
                .and_then(JobState::from_proto);
            filter.state =
                Some(state.ok_or_else(|| ApiError::field("state", "unknown job state"))?);
        }
        if req.kind != 0 {
            let kind = pb::JobKind::try_from(req.kind)
                .ok()
                .and_then(Kind::from_proto);
            filter.kind = Some(kind.ok_or_else(|| ApiError::field("kind", "unknown job kind"))?);
        }
        if !req.label.is_empty() {
            let (k, v) = req
                .label
                .split_once('=')
                .ok_or_else(|| ApiError::field("label", "expected key=value"))?;
            filter.label = Some((k.to_string(), v.to_string()));
        }
        if let Some(range) = &req.created {
            filter.created_from = range.start.as_ref().map(crate::domain::from_timestamp);
            filter.created_to = range.end.as_ref().map(crate::domain::from_timestamp);
        }
        if !req.page_token.is_empty() {
            filter.after = Some(decode_token(&req.page_token)?);
        }
        let Some(scope) = caller.scope(&self.ctx.db).await? else {
            return Ok(pb::ListJobsResponse::default());
        };
        filter.account_id = scope.account_id.clone();
        if !req.account.is_empty() && scope.account_id.is_none() {
            match db::accounts::find(&self.ctx.db, &caller.tenant_id, &req.account).await? {
                Some(a) => filter.account_id = Some(a.id),
                None => return Ok(pb::ListJobsResponse::default()),
            }
        }
        let jobs = db::jobs::list(&self.ctx.db, &scope.tenant_id, &filter, limit).await?;
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let tasks = db::jobs::tasks_of(&self.ctx.db, &ids).await?;
        let next_page_token = match jobs.last() {
            Some(last) if jobs.len() as u64 == limit => encode_token(last.created_at, &last.id),
            _ => String::new(),
        };
        let mut jobs: Vec<pb::Job> = jobs.iter().map(|j| convert::job(j, &tasks)).collect();
        for job in &mut jobs {
            crate::links::job(&self.ctx.links, job).await;
        }
        Ok(pb::ListJobsResponse {
            jobs,
            next_page_token,
        })
    }

    async fn cancel(&self, caller: TenantCaller, job_id: &str) -> ApiResult<pb::Job> {
        let scope = self.scope(&caller).await?;
        db::jobs::find(&self.ctx.db, &scope, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let txn = self.ctx.db.begin().await?;
        let job = db::jobs::lock(&txn, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let running = db::jobs::cancel(&txn, &job).await?;
        txn.commit().await?;
        self.ctx.dispatch.cancel(&running);
        self.ctx.bus.notify(job_id);
        self.load(&scope, job_id).await
    }

    async fn delete(&self, caller: TenantCaller, job_id: &str) -> ApiResult<pb::DeleteJobResponse> {
        let scope = self.scope(&caller).await?;
        db::jobs::find(&self.ctx.db, &scope, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let txn = self.ctx.db.begin().await?;
        let job = db::jobs::lock(&txn, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let terminal = job.state.is_terminal();
        if !terminal {
            return Err(ApiError::field(
                "job_id",
                format!(
                    "the job is {}; only a finished job can be deleted (cancel it first)",
                    job.state
                ),
            ));
        }
        let purged = db::retention::purge_job(&txn, &job.tenant_id, job_id).await?;
        txn.commit().await?;
        self.ctx.metrics.removed("jobs", 1);
        // Watchers of the job see it gone and end.
        self.ctx.bus.notify(job_id);
        // The rows are gone; objects that cannot be removed now stay in the outbox for the sweeper.
        let deleted = match crate::retention::remove_objects(
            &self.ctx.db,
            &self.ctx.storage,
            &self.ctx.metrics,
            &purged.queued,
        )
        .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(job_id, error = %e, "objects of a deleted job left for the sweeper");
                0
            }
        };
        tracing::info!(job_id, objects = deleted, kept = purged.kept, "job deleted");
        Ok(pb::DeleteJobResponse {
            job_id: job_id.to_string(),
            objects_deleted: u32::try_from(deleted).unwrap_or(u32::MAX),
            objects_kept: purged.kept,
        })
    }

    async fn remove_upload(
        &self,
        caller: TenantCaller,
        upload_id: &str,
    ) -> ApiResult<pb::DeleteUploadResponse> {
        let scope = self.scope(&caller).await?;
        let upload = db::uploads::find(&self.ctx.db, &scope.tenant_id, upload_id)
            .await?
            .filter(|u| {
                scope
                    .account_id
                    .as_ref()
                    .is_none_or(|account| *account == u.account_id)
            })
            .ok_or(ApiError::NotFound("upload"))?;
        let txn = self.ctx.db.begin().await?;
        db::retention::purge_upload(&txn, &upload.tenant_id, &upload.id, &upload.object_key)
            .await?;
        txn.commit().await?;
        self.ctx.metrics.removed("uploads", 1);
        if let Err(e) = crate::retention::remove_objects(
            &self.ctx.db,
            &self.ctx.storage,
            &self.ctx.metrics,
            std::slice::from_ref(&upload.object_key),
        )
        .await
        {
            tracing::warn!(upload_id, error = %e, "object of a deleted upload left for the sweeper");
        }
        Ok(pb::DeleteUploadResponse {
            upload_id: upload.id,
        })
    }

    async fn logs(
        &self,
        caller: TenantCaller,
        req: pb::ListJobLogsRequest,
    ) -> ApiResult<pb::ListJobLogsResponse> {
        let limit = page_size(req.page_size, 100, 1000)?;
        let scope = self.scope(&caller).await?;
        db::jobs::find(&self.ctx.db, &scope, &req.job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let mut after: i64 = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse()
                .map_err(|_| ApiError::field("page_token", "not a token from a previous page"))?
        };
        let mut entries = Vec::new();
        // Logs are events among others: read the log in batches until the page is full.
        loop {
            let batch = db::events::after(&self.ctx.db, &req.job_id, after, 500).await?;
            let Some(last) = batch.last() else { break };
            after = i64::try_from(last.sequence).unwrap_or(i64::MAX);
            for event in batch {
                if let Some(pb::job_event::Event::Log(line)) = event.event {
                    entries.push(pb::LogEntry {
                        sequence: event.sequence,
                        time: event.time,
                        line: Some(line),
                    });
                    if entries.len() as u64 == limit {
                        let token = entries
                            .last()
                            .map(|e| e.sequence.to_string())
                            .unwrap_or_default();
                        return Ok(pb::ListJobLogsResponse {
                            entries,
                            next_page_token: token,
                        });
                    }
                }
            }
        }
        Ok(pb::ListJobLogsResponse {
            entries,
            next_page_token: String::new(),
        })
    }
}

fn encode_token(created_at: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

fn decode_token(token: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::field("page_token", "not a token from a previous page");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (created, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((created.parse().map_err(|_| bad())?, id.to_string()))
}

/// What [`Jobs::charge_and_insert`] did.
pub(crate) enum Inserted {
    /// A new job, charged and inserted, with the answer read in its transaction.
    New(job::Model, Box<pb::Job>),
    /// The job an earlier call with the same idempotency key and request made.
    Replayed(job::Model),
}

/// The account a job is charged to, as read before the charge.
type Payer = db::accounts::Standing;

/// A job checked, resolved and priced, ready to be charged and inserted.
pub(crate) struct Prepared {
    submission: Submission,
    tasks: Vec<db::jobs::NewTask>,
    unit_price: i64,
    cost: i64,
    fingerprint: String,
}

#[tonic::async_trait]
impl JobService for Jobs {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let trace = request.trace();
        Ok(Response::new(
            self.submit(caller, request.into_inner(), trace).await?,
        ))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let scope = self.scope(&caller).await?;
        Ok(Response::new(
            self.load(&scope, &request.get_ref().job_id).await?,
        ))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.list(caller, request.into_inner()).await?,
        ))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.cancel(caller, &request.get_ref().job_id).await?,
        ))
    }

    type WatchJobStream = watch::JobEventStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let scope = self.scope(&caller).await?;
        let req = request.into_inner();
        db::jobs::find(&self.ctx.db, &scope, &req.job_id)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("job"))?;
        let after = i64::try_from(req.after_sequence)
            .map_err(|_| ApiError::field("after_sequence", "too large"))?;
        Ok(Response::new(watch::job_events(
            self.ctx.clone(),
            req.job_id,
            after,
        )))
    }

    type WatchEventsStream = watch::JobEventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let scope = self.scope(&caller).await?;
        let cursor = db::events::Cursor::parse(&request.get_ref().after_cursor)
            .ok_or_else(|| ApiError::field("after_cursor", "not a cursor from an earlier event"))?;
        // "From now on" is fixed before answering, so nothing the caller does next is missed.
        let cursor = match cursor {
            Some(c) => c,
            None => db::events::head(&self.ctx.db)
                .await
                .map_err(ApiError::from)?,
        };
        Ok(Response::new(watch::all_events(
            self.ctx.clone(),
            scope,
            cursor,
        )))
    }

    async fn list_job_logs(
        &self,
        request: Request<pb::ListJobLogsRequest>,
    ) -> Result<Response<pb::ListJobLogsResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.logs(caller, request.into_inner()).await?,
        ))
    }

    async fn upload_source(
        &self,
        request: Request<Streaming<pb::UploadSourceRequest>>,
    ) -> Result<Response<pb::Upload>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            upload::receive(&self.ctx, caller, request.into_inner()).await?,
        ))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        request.caller::<TenantCaller>()?;
        Ok(Response::new(pb::ListModelsResponse {
            models: self.ctx.processors.models().await,
        }))
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let scope = self.scope(&caller).await?;
        let range = request.into_inner().range.unwrap_or_default();
        let stats = db::stats::compute(
            &self.ctx.db,
            &scope,
            range.start.as_ref().map(from_timestamp),
            range.end.as_ref().map(from_timestamp),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(stats))
    }

    async fn delete_job(
        &self,
        request: Request<pb::DeleteJobRequest>,
    ) -> Result<Response<pb::DeleteJobResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.delete(caller, &request.get_ref().job_id).await?,
        ))
    }

    async fn delete_upload(
        &self,
        request: Request<pb::DeleteUploadRequest>,
    ) -> Result<Response<pb::DeleteUploadResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            self.remove_upload(caller, &request.get_ref().upload_id)
                .await?,
        ))
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        let trace = request.trace();
        Ok(Response::new(
            self.batch(caller, request.into_inner(), trace).await?,
        ))
    }

    async fn report_task(
        &self,
        request: Request<pb::ReportTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            super::report::report(&self.ctx, caller, request.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = encode_token(1_700_000_000_000, "0190-abc");
        assert_eq!(
            decode_token(&t).expect("valid"),
            (1_700_000_000_000, "0190-abc".to_string())
        );
        assert!(decode_token("%%%").is_err());
        assert!(
            decode_token(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("nocolon"))
                .is_err()
        );
    }
}
