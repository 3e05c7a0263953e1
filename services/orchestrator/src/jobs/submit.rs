//! Submitting jobs: a checked request priced, its sources resolved, the account charged and the
//! job inserted, exactly once per idempotency key. The answer is the job as written; how the API
//! shows it (links, queue position, estimate) is the caller's.

use atelier_codes::family::Family;
use atelier_codes::FieldViolation;
use atelier_proto::v1 as pb;
use atelier_telemetry::trace::TraceParent;
use prost::Message;
use sea_orm::{ConnectionTrait, TransactionTrait};

use super::submission::{BatchRequest, SourceSpec, Submission};
use crate::auth::TenantCaller;
use crate::context::Context;
use crate::db::{self, entities::job, entities::task};
use crate::domain::{model_of, now_ms, JobState, Kind};
use crate::error::{ApiError, ApiResult};

/// What a submit made.
pub enum Submitted {
    /// A new job, charged and inserted, with its tasks and the waiting tasks ahead of it.
    New {
        job: job::Model,
        tasks: Vec<task::Model>,
        ahead: i64,
    },
    /// The job an earlier call with the same idempotency key and request made.
    Replayed(job::Model),
}

/// What a batch made: its id, and each entry's job with its tasks, or why it was refused, in order.
pub struct BatchSubmitted {
    pub batch_id: String,
    pub entries: Vec<ApiResult<(job::Model, Vec<task::Model>)>>,
}

/// The account a job is charged to, as read before the charge.
type Payer = db::accounts::Standing;

/// A job checked, resolved and priced, ready to be charged and inserted.
pub struct Prepared {
    submission: Submission,
    tasks: Vec<db::jobs::NewTask>,
    unit_price: i64,
    cost: i64,
    fingerprint: String,
}

/// Submits jobs for the API's handlers (SubmitJob, SubmitBatch, the studio's jobs).
#[derive(Clone)]
pub struct Submitter {
    ctx: Context,
}

impl Submitter {
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// SubmitJob: priced, charged and inserted in one transaction; the account's row is locked
    /// only from the charge to the commit.
    pub async fn submit(
        &self,
        caller: TenantCaller,
        submission: Submission,
        trace: Option<TraceParent>,
    ) -> ApiResult<Submitted> {
        let external = caller.require_account()?.to_string();
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
                    .await
                    .map(Submitted::Replayed);
            }
            Err(e) => return Err(e),
        };
        txn.commit().await?;
        if let Submitted::New { job, .. } = &inserted {
            self.submitted(job);
        }
        Ok(inserted)
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
    ) -> ApiResult<Option<Submitted>> {
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
                Ok(Some(Submitted::New {
                    job,
                    tasks,
                    ahead: payer.waiting_tasks,
                }))
            }
            Ok(None) => Ok(None),
            // The key was used before (or at the same moment): the statement wrote nothing, and
            // the job it made answers a replay of the same request or refuses another one.
            Err(e) if key.is_some() && db::is_unique_violation(&e) => self
                .replay(caller, &account.external_id, key, &prepared.fingerprint)
                .await
                .map(|job| Some(Submitted::Replayed(job))),
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
    ) -> ApiResult<job::Model> {
        let account = db::accounts::find(&self.ctx.db, &caller.tenant_id, external)
            .await?
            .ok_or_else(|| ApiError::MembershipRequired(external.to_string()))?;
        let existing = match key {
            Some(key) => db::jobs::find_by_idempotency(&self.ctx.db, &account.id, key).await?,
            None => None,
        };
        match existing {
            Some(job) if job.request_hash.as_deref() == Some(fingerprint) => Ok(job),
            Some(_) => Err(ApiError::IdempotencyConflict),
            None => Err(ApiError::Internal(
                "a concurrent submit with the same idempotency key left no job".into(),
            )),
        }
    }

    /// The part of SubmitJob before its charge: the kind (and model) offered, the account found, the
    /// sources resolved and the job priced. Studio jobs go through it too.
    pub async fn prepare_submission<C: sea_orm::ConnectionTrait>(
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
    pub async fn charge_and_insert<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        caller: &TenantCaller,
        payer: Payer,
        prepared: Prepared,
        trace: Option<&TraceParent>,
    ) -> ApiResult<Submitted> {
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
                    Ok(Submitted::Replayed(existing))
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
        Ok(Submitted::New {
            job,
            tasks,
            ahead: waiting_tasks,
        })
    }

    /// SubmitBatch: every entry validated and priced first (a malformed entry refuses the whole
    /// call), then in one transaction under the account's lock: membership once, one free unit of
    /// the active-jobs limit for the whole batch, and each entry charged in order; an entry the
    /// balance cannot pay is refused alone (2002), unless no entry can be paid at all.
    pub async fn batch(
        &self,
        caller: TenantCaller,
        batch: BatchRequest,
        trace: Option<TraceParent>,
    ) -> ApiResult<BatchSubmitted> {
        let external = caller.require_account()?.to_string();
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
        for (job, _) in outcomes.iter().flatten() {
            self.submitted(job);
        }
        Ok(BatchSubmitted {
            batch_id,
            entries: outcomes,
        })
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
    ) -> ApiResult<Option<(job::Model, Vec<task::Model>)>> {
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
        Ok(Some(db::jobs::insert(txn, job, prepared.tasks).await?))
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
    pub fn submitted(&self, job: &job::Model) {
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
}
