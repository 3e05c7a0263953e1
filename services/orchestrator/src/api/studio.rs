//! StudioService: the workspace layer of seed 003's ImageStudio (SPEC §4 "Studio").
//!
//! Every call acts as one account of the calling tenant, authenticated like JobService: a key bound
//! to an account acts as it, a tenant-wide key names it with `x-atelier-account`. A studio has no
//! tenant-wide view, so a call without an account is refused (1003). Ids of another tenant's or
//! account's workspaces, pairs and prompt groups answer 1004 NOT_FOUND, exactly like missing ones.
//!
//! The model (rows in [`crate::db::studio`]):
//! - a workspace is a SKU, unique per account (1005 for a second one), in state pending, approved or
//!   archived. Reviews and new pairs settle a workspace that is not archived: approved once it has
//!   results and every one is approved, pending otherwise. Archive moves approved → archived (the
//!   pairs are archived with it); activate moves archived → pending. Transitions from any other state,
//!   and adding or reviewing pairs of an archived workspace, are refused with 1003 and a sentence
//!   saying why;
//! - a pair is a source (a URL, or an upload of the account as jobs take them) and an optional result
//!   (a URL given here; studio jobs will write result keys). Only pairs with a result can be approved;
//! - a prompt group is saved by name, each save a new version, the earlier ones readable by
//!   GetPromptGroup; one group is active per account;
//! - preferences hold output size, model and settings (a string map, stored as JSON text);
//! - DeleteFiles (seed 003's "delete files") removes from storage the uploaded sources and/or the
//!   results of chosen pairs, the way DeleteJob removes a job's objects: in one transaction the pairs
//!   are cleared (or removed with `remove_pairs`) and the objects queued in the `object_deletions`
//!   outbox, then removed from storage. An object is kept when a job other than the one that made
//!   the pair's result names it (`object_refs`, e.g. a cache hit) or a pair not being cleared names
//!   it; a removed upload source takes its upload row with it. URL sources are not ours and stay;
//!   a result given as a URL is cleared from the pair. Refused (1003) for an archived workspace.
//!
//! Studio jobs (SubmitStudioJob, seed 003's batch / single / custom runs):
//! - the pairs: `batch` takes the workspace's pairs without a result that are not archived, oldest
//!   first, at most a job's worth ([`MAX_SOURCES`]; a later batch takes the rest); `single` takes
//!   `pair_id`; `custom` takes `pair_id` when given, else the pairs a batch would. An archived
//!   workspace, and a batch with no pair to run, are refused (1003) with a sentence saying why;
//! - the prompt: the texts of the account's active prompt group's templates at its latest version,
//!   each trimmed, empty ones left out, in their order, then (custom only) the prompt given now,
//!   trimmed; the parts joined by a blank line ([`PROMPT_SEPARATOR`]). With no part at all the call
//!   is refused (1003, field `prompt`). Model and output size come from the preferences (empty: the
//!   provider's default); one image per source;
//! - the job is an ordinary `edit` job over the pairs' sources (an upload by its id, a URL as is),
//!   labelled `studio_workspace` and `studio_mode`, submitted through SubmitJob's own path
//!   ([`Submitter::prepare_submission`], [`Submitter::charge_and_insert`]: offered models, quota, the
//!   active-jobs limit, idempotency, events, cache and webhooks as for any job). The same
//!   transaction records task → pair (`studio_job_tasks`), so a task cannot finish before its pair
//!   is known;
//! - results: as a task succeeds, inside `jobs::lifecycle::succeed` (the processor's results and
//!   ReportTask both end there), its first output becomes its pair's result (key, job, task, not
//!   approved) and the workspace settles ([`studio::task_succeeded`]); a pair that had a result keeps
//!   it in its metadata's `history` array (key or URL, job, task, approved, when replaced). A failed
//!   task leaves its pair as it was.

use std::collections::{BTreeMap, HashMap, HashSet};

use atelier_proto::v1 as pb;
use atelier_proto::v1::studio_service_server::StudioService;
use atelier_telemetry::trace::TraceParent;
use prost::Message;
use sea_orm::TransactionTrait;
use tonic::{Request, Response, Status};

use super::jobs::Jobs;
use super::page_size;
use crate::auth::TenantCaller;
use crate::context::Context;
use crate::db::{self, entities::account, studio};
use crate::domain::timestamp;
use crate::error::{ApiError, ApiResult};
use crate::jobs::submission::{check_url, Submission, MAX_SOURCES};
use crate::jobs::{Submitted, Submitter};
use crate::layers::CallContext;

/// What joins the parts of a studio job's prompt.
pub const PROMPT_SEPARATOR: &str = "\n\n";
/// The most pairs one AddPairs or ReviewPairs call takes.
pub const MAX_PAIRS_PER_CALL: usize = 500;
const MAX_SKU_LEN: usize = 128;
const MAX_TITLE_LEN: usize = 500;
const MAX_METADATA_LEN: usize = 16 * 1024;
const MAX_GROUP_NAME_LEN: usize = 100;
const MAX_TEMPLATES: usize = 50;
const MAX_TEMPLATE_NAME_LEN: usize = 100;
const MAX_TEMPLATE_LEN: usize = 10_000;
const MAX_SETTINGS: usize = 64;
const MAX_SETTING_KEY_LEN: usize = 64;
const MAX_SETTING_VALUE_LEN: usize = 4096;
const MAX_SIZE_LEN: usize = 64;
const MAX_MODEL_LEN: usize = 128;

/// The StudioService implementation.
pub struct Studio {
    ctx: Context,
}

/// The account a call acts as, and whether its key is bound to it.
struct Acting {
    account: account::Model,
    scoped: bool,
    caller: TenantCaller,
}

impl Studio {
    /// Serves the studio from the shared context.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// The account the caller names, read with the caller the authentication layer left in the
    /// request.
    async fn acting<T>(&self, request: &Request<T>) -> ApiResult<Acting> {
        let caller = request.caller::<TenantCaller>()?;
        let external = caller.require_account()?;
        let account = db::accounts::find(&self.ctx.db, &caller.tenant_id, external)
            .await?
            .ok_or(ApiError::NotFound("account"))?;
        Ok(Acting {
            account,
            scoped: caller.scoped,
            caller,
        })
    }

    /// The pairs as answered, with fresh links.
    async fn linked(&self, pairs: &[studio::Pair]) -> Vec<pb::ImagePair> {
        let mut out = Vec::with_capacity(pairs.len());
        for p in pairs {
            out.push(linked_pair(&self.ctx.links, p).await);
        }
        out
    }

    /// GetStudioJob: the job as GetJob answers it, its workspace (from the job's label), mode and
    /// the pair of each task.
    async fn studio_job(&self, acting: &Acting, job_id: &str) -> ApiResult<pb::StudioJob> {
        let scope = acting
            .caller
            .scope(&self.ctx.db)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let row = db::jobs::find(&self.ctx.db, &scope, job_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let job = Jobs::new(self.ctx.clone()).render(row).await?;
        let workspace_id = job
            .labels
            .get("studio_workspace")
            .ok_or(ApiError::NotFound("job"))?;
        let w = studio::workspace(&self.ctx.db, &acting.account.id, workspace_id)
            .await?
            .ok_or(ApiError::NotFound("job"))?;
        let mode = match job.labels.get("studio_mode").map(String::as_str) {
            Some("batch") => pb::StudioJobMode::Batch,
            Some("single") => pb::StudioJobMode::Single,
            Some("custom") => pb::StudioJobMode::Custom,
            _ => pb::StudioJobMode::Unspecified,
        };
        let pair_ids = studio::job_pairs(&self.ctx.db, &job.id).await?;
        let prompt = match job.params.as_ref().and_then(|p| p.params.as_ref()) {
            Some(pb::job_params::Params::Edit(edit)) => edit.prompt.clone(),
            _ => String::new(),
        };
        Ok(pb::StudioJob {
            job: Some(job),
            workspace: Some(workspace(&w)),
            mode: mode as i32,
            pair_ids,
            prompt,
        })
    }

    async fn workspace(&self, acting: &Acting, id: &str) -> ApiResult<studio::Workspace> {
        studio::workspace(&self.ctx.db, &acting.account.id, id)
            .await?
            .ok_or(ApiError::NotFound("workspace"))
    }

    async fn create_workspace(
        &self,
        acting: Acting,
        req: pb::CreateWorkspaceRequest,
    ) -> ApiResult<pb::Workspace> {
        let sku = req.sku.trim();
        let title = req.title.trim();
        let mut bad = Vec::new();
        if sku.is_empty() || sku.len() > MAX_SKU_LEN {
            bad.push(atelier_codes::FieldViolation::new(
                "sku",
                format!("1..={MAX_SKU_LEN} bytes"),
            ));
        } else if sku.chars().any(char::is_control) || sku.contains('/') {
            bad.push(atelier_codes::FieldViolation::new(
                "sku",
                "no control characters or slashes",
            ));
        }
        if title.len() > MAX_TITLE_LEN || title.chars().any(char::is_control) {
            bad.push(atelier_codes::FieldViolation::new(
                "title",
                format!("at most {MAX_TITLE_LEN} bytes, no control characters"),
            ));
        }
        if !bad.is_empty() {
            return Err(ApiError::BadRequest(bad));
        }
        let a = &acting.account;
        match studio::create_workspace(&self.ctx.db, &a.tenant_id, &a.id, sku, title).await {
            Ok(w) => Ok(workspace(&w)),
            Err(e) if db::is_unique_violation(&e) => Err(ApiError::AlreadyExists(format!(
                "the account already has a workspace for SKU {sku:?}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn add_pairs(
        &self,
        acting: Acting,
        req: pb::AddPairsRequest,
    ) -> ApiResult<pb::AddPairsResponse> {
        let found = self.workspace(&acting, &req.workspace_id).await?;
        if found.state == studio::ARCHIVED {
            return Err(ApiError::Refused(format!(
                "workspace {} is archived: activate it before adding pairs",
                found.sku
            )));
        }
        if req.pairs.is_empty() || req.pairs.len() > MAX_PAIRS_PER_CALL {
            return Err(ApiError::field(
                "pairs",
                format!("1..={MAX_PAIRS_PER_CALL} pairs per call"),
            ));
        }
        let mut bad = Vec::new();
        let mut pairs = Vec::with_capacity(req.pairs.len());
        for (i, p) in req.pairs.iter().enumerate() {
            let field = format!("pairs[{i}]");
            let mut new = studio::NewPair {
                source_url: None,
                source_upload_id: None,
                source_key: None,
                result_url: None,
                metadata: "{}".into(),
            };
            match p.source.as_ref().and_then(|s| s.source.as_ref()) {
                Some(pb::source::Source::Url(u)) => match check_url(u) {
                    Ok(()) => new.source_url = Some(u.clone()),
                    Err(why) => bad.push(atelier_codes::FieldViolation::new(
                        format!("{field}.source.url"),
                        why,
                    )),
                },
                Some(pb::source::Source::UploadId(id)) => {
                    // As jobs take uploads: any of the tenant's for a tenant-wide key, the account's
                    // own for a key bound to it.
                    let upload = match uuid::Uuid::parse_str(id) {
                        Ok(_) => db::uploads::find(&self.ctx.db, &acting.account.tenant_id, id)
                            .await?
                            .filter(|u| !acting.scoped || u.account_id == acting.account.id),
                        Err(_) => None,
                    };
                    match upload {
                        Some(u) => {
                            new.source_upload_id = Some(u.id);
                            new.source_key = Some(u.object_key);
                        }
                        None => bad.push(atelier_codes::FieldViolation::new(
                            format!("{field}.source.upload_id"),
                            "no such upload",
                        )),
                    }
                }
                None => bad.push(atelier_codes::FieldViolation::new(
                    format!("{field}.source"),
                    "set url or upload_id",
                )),
            }
            let result = p.result_url.trim();
            if !result.is_empty() {
                match check_url(result) {
                    Ok(()) => new.result_url = Some(result.to_string()),
                    Err(why) => bad.push(atelier_codes::FieldViolation::new(
                        format!("{field}.result_url"),
                        why,
                    )),
                }
            }
            match metadata(&p.metadata) {
                Ok(m) => new.metadata = m,
                Err(why) => bad.push(atelier_codes::FieldViolation::new(
                    format!("{field}.metadata"),
                    why,
                )),
            }
            pairs.push(new);
        }
        if !bad.is_empty() {
            return Err(ApiError::BadRequest(bad));
        }
        let txn = self.ctx.db.begin().await?;
        // Archived in the meantime: the conditional settle below would leave it archived with
        // live pairs, so look again under the lock.
        studio::lock(&txn, &found.id).await?;
        let current = studio::workspace(&txn, &acting.account.id, &found.id)
            .await?
            .ok_or(ApiError::NotFound("workspace"))?;
        if current.state == studio::ARCHIVED {
            return Err(ApiError::Refused(format!(
                "workspace {} is archived: activate it before adding pairs",
                current.sku
            )));
        }
        let ids = studio::insert_pairs(&txn, &current, &pairs).await?;
        studio::settle(&txn, &current.id).await?;
        txn.commit().await?;
        let added = studio::pairs_by_id(&self.ctx.db, &current.id, &ids).await?;
        let after = self.workspace(&acting, &current.id).await?;
        Ok(pb::AddPairsResponse {
            pairs: self.linked(&added).await,
            workspace: Some(workspace(&after)),
        })
    }

    async fn list_pairs(
        &self,
        acting: Acting,
        req: pb::ListPairsRequest,
    ) -> ApiResult<pb::ListPairsResponse> {
        let limit = page_size(req.page_size, 100, 1000)?;
        let w = self.workspace(&acting, &req.workspace_id).await?;
        let filter = studio::PairFilter {
            approved: req.approved,
            archived: req.archived,
            has_result: req.has_result,
        };
        let after = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let rows = studio::pairs(&self.ctx.db, &w.id, filter, after, limit).await?;
        let next_page_token = match rows.last() {
            Some(last) if rows.len() as u64 == limit => last.id.clone(),
            _ => String::new(),
        };
        Ok(pb::ListPairsResponse {
            pairs: self.linked(&rows).await,
            next_page_token,
        })
    }

    async fn review(
        &self,
        acting: Acting,
        req: pb::ReviewPairsRequest,
    ) -> ApiResult<pb::ReviewPairsResponse> {
        let w = self.workspace(&acting, &req.workspace_id).await?;
        if req.pair_ids.is_empty() || req.pair_ids.len() > MAX_PAIRS_PER_CALL {
            return Err(ApiError::field(
                "pair_ids",
                format!("1..={MAX_PAIRS_PER_CALL} pair ids per call"),
            ));
        }
        let ids: Vec<String> = req
            .pair_ids
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let txn = self.ctx.db.begin().await?;
        studio::lock(&txn, &w.id).await?;
        let current = studio::workspace(&txn, &acting.account.id, &w.id)
            .await?
            .ok_or(ApiError::NotFound("workspace"))?;
        if current.state == studio::ARCHIVED {
            return Err(ApiError::Refused(format!(
                "workspace {} is archived: activate it before reviewing its pairs",
                current.sku
            )));
        }
        let found = studio::pairs_by_id(&txn, &current.id, &ids).await?;
        if found.len() != ids.len() {
            return Err(ApiError::NotFound("pair"));
        }
        if req.approved {
            if let Some(p) = found.iter().find(|p| !p.has_result()) {
                return Err(ApiError::Refused(format!(
                    "pair {} has no result yet: only results can be approved",
                    p.id
                )));
            }
        }
        studio::set_approved(&txn, &current.id, &ids, req.approved).await?;
        studio::settle(&txn, &current.id).await?;
        txn.commit().await?;
        // In the order asked.
        let by_id: HashMap<String, studio::Pair> =
            studio::pairs_by_id(&self.ctx.db, &current.id, &ids)
                .await?
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect();
        let mut seen = HashSet::new();
        let pairs = req
            .pair_ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .filter_map(|id| by_id.get(id).cloned())
            .collect::<Vec<_>>();
        let pairs = self.linked(&pairs).await;
        let after = self.workspace(&acting, &current.id).await?;
        Ok(pb::ReviewPairsResponse {
            pairs,
            workspace: Some(workspace(&after)),
        })
    }

    /// archive (approved → archived) or activate (archived → pending), with their pairs.
    async fn move_workspace(
        &self,
        acting: Acting,
        id: &str,
        archive: bool,
    ) -> ApiResult<pb::Workspace> {
        let w = self.workspace(&acting, id).await?;
        let (from, to) = if archive {
            (studio::APPROVED, studio::ARCHIVED)
        } else {
            (studio::ARCHIVED, studio::PENDING)
        };
        let txn = self.ctx.db.begin().await?;
        if !studio::transition(&txn, &w.id, from, to).await? {
            let now = studio::workspace(&txn, &acting.account.id, &w.id)
                .await?
                .ok_or(ApiError::NotFound("workspace"))?;
            return Err(ApiError::Refused(refusal(&now, archive)));
        }
        studio::archive_pairs(&txn, &w.id, archive).await?;
        txn.commit().await?;
        Ok(workspace(&self.workspace(&acting, &w.id).await?))
    }

    /// DeleteFiles: queues the objects of the chosen pairs that nothing else names, clears or removes
    /// the pairs in the same transaction, then removes the objects from storage (what cannot be
    /// removed now stays in the outbox for the sweeper).
    async fn delete_files(
        &self,
        acting: Acting,
        req: pb::DeleteFilesRequest,
    ) -> ApiResult<pb::DeleteFilesResponse> {
        let w = self.workspace(&acting, &req.workspace_id).await?;
        if req.pair_ids.is_empty() || req.pair_ids.len() > MAX_PAIRS_PER_CALL {
            return Err(ApiError::field(
                "pair_ids",
                format!("1..={MAX_PAIRS_PER_CALL} pair ids per call"),
            ));
        }
        if !req.sources && !req.results && !req.remove_pairs {
            return Err(ApiError::field(
                "results",
                "set sources, results or remove_pairs: there is nothing to delete",
            ));
        }
        let mut ids: Vec<String> = req
            .pair_ids
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        ids.sort();
        let tenant_id = acting.account.tenant_id.clone();
        let txn = self.ctx.db.begin().await?;
        studio::lock(&txn, &w.id).await?;
        let current = studio::workspace(&txn, &acting.account.id, &w.id)
            .await?
            .ok_or(ApiError::NotFound("workspace"))?;
        if current.state == studio::ARCHIVED {
            return Err(ApiError::Refused(format!(
                "workspace {} is archived: activate it before deleting its files",
                current.sku
            )));
        }
        let found = studio::pairs_by_id(&txn, &current.id, &ids).await?;
        if found.len() != ids.len() {
            return Err(ApiError::NotFound("pair"));
        }
        let mut queued: Vec<String> = Vec::new();
        let mut kept = 0u32;
        let mut seen = HashSet::new();
        for p in &found {
            if req.sources {
                if let (Some(upload_id), Some(key)) = (&p.source_upload_id, &p.source_key) {
                    if seen.insert(key.clone()) {
                        if studio::object_named_elsewhere(&txn, key, None, &ids).await? {
                            kept += 1;
                        } else {
                            db::retention::purge_upload(&txn, &tenant_id, upload_id, key).await?;
                            queued.push(key.clone());
                        }
                    }
                }
            }
            if req.results {
                if let Some(key) = &p.result_key {
                    if seen.insert(key.clone()) {
                        let job = p.job_id.as_deref();
                        if studio::object_named_elsewhere(&txn, key, job, &ids).await? {
                            kept += 1;
                        } else {
                            if let Some(job_id) = job {
                                studio::drop_object_ref(&txn, key, job_id).await?;
                            }
                            db::retention::queue_object(&txn, &tenant_id, key).await?;
                            queued.push(key.clone());
                        }
                    }
                }
            }
        }
        if req.remove_pairs {
            studio::remove_pairs(&txn, &current.id, &ids).await?;
        } else {
            studio::clear_files(&txn, &current.id, &ids, req.sources, req.results).await?;
        }
        studio::settle(&txn, &current.id).await?;
        txn.commit().await?;
        let deleted = match crate::retention::remove_objects(
            &self.ctx.db,
            &self.ctx.storage,
            &self.ctx.metrics,
            &queued,
        )
        .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(workspace_id = %current.id, error = %e, "studio files left for the sweeper");
                0
            }
        };
        let pairs = if req.remove_pairs {
            Vec::new()
        } else {
            let kept = studio::pairs_by_id(&self.ctx.db, &current.id, &ids).await?;
            self.linked(&kept).await
        };
        let after = self.workspace(&acting, &current.id).await?;
        Ok(pb::DeleteFilesResponse {
            pairs,
            removed_pair_ids: if req.remove_pairs { ids } else { Vec::new() },
            objects_deleted: u32::try_from(deleted).unwrap_or(u32::MAX),
            objects_kept: kept,
            workspace: Some(workspace(&after)),
        })
    }

    async fn group(
        &self,
        acting: &Acting,
        group: studio::Group,
        version: i32,
    ) -> ApiResult<pb::PromptGroup> {
        let templates = studio::templates(&self.ctx.db, &group.id, version).await?;
        let active = studio::preferences(&self.ctx.db, &acting.account.id)
            .await?
            .and_then(|p| p.active_group_id)
            .is_some_and(|id| id == group.id);
        Ok(prompt_group(&group, version, active, &templates))
    }

    async fn save_group(
        &self,
        acting: Acting,
        req: pb::SavePromptGroupRequest,
    ) -> ApiResult<pb::PromptGroup> {
        let name = req.name.trim();
        let mut bad = Vec::new();
        if name.is_empty() || name.len() > MAX_GROUP_NAME_LEN || name.chars().any(char::is_control)
        {
            bad.push(atelier_codes::FieldViolation::new(
                "name",
                format!("1..={MAX_GROUP_NAME_LEN} bytes, no control characters"),
            ));
        }
        if req.templates.is_empty() || req.templates.len() > MAX_TEMPLATES {
            bad.push(atelier_codes::FieldViolation::new(
                "templates",
                format!("1..={MAX_TEMPLATES} templates"),
            ));
        }
        let mut names = HashSet::new();
        let mut templates = Vec::with_capacity(req.templates.len());
        for (i, t) in req.templates.iter().enumerate() {
            let template_name = t.name.trim();
            if template_name.is_empty()
                || template_name.len() > MAX_TEMPLATE_NAME_LEN
                || template_name.chars().any(char::is_control)
            {
                bad.push(atelier_codes::FieldViolation::new(
                    format!("templates[{i}].name"),
                    format!("1..={MAX_TEMPLATE_NAME_LEN} bytes, no control characters"),
                ));
            } else if !names.insert(template_name.to_string()) {
                bad.push(atelier_codes::FieldViolation::new(
                    format!("templates[{i}].name"),
                    format!("{template_name:?} is named twice in the group"),
                ));
            }
            if t.text.trim().is_empty() || t.text.len() > MAX_TEMPLATE_LEN {
                bad.push(atelier_codes::FieldViolation::new(
                    format!("templates[{i}].text"),
                    format!("1..={MAX_TEMPLATE_LEN} bytes"),
                ));
            }
            templates.push((template_name.to_string(), t.text.clone()));
        }
        if !bad.is_empty() {
            return Err(ApiError::BadRequest(bad));
        }
        let a = &acting.account;
        let txn = self.ctx.db.begin().await?;
        let group = studio::save_group(&txn, &a.tenant_id, &a.id, name, &templates).await?;
        txn.commit().await?;
        let version = group.latest_version;
        self.group(&acting, group, version).await
    }

    async fn set_preferences(
        &self,
        acting: Acting,
        req: pb::SetPreferencesRequest,
    ) -> ApiResult<pb::Preferences> {
        let output_size = req.output_size.trim();
        let model = req.model.trim();
        let mut bad = Vec::new();
        if output_size.len() > MAX_SIZE_LEN || output_size.chars().any(char::is_control) {
            bad.push(atelier_codes::FieldViolation::new(
                "output_size",
                format!("at most {MAX_SIZE_LEN} bytes, no control characters"),
            ));
        }
        if model.len() > MAX_MODEL_LEN || model.chars().any(char::is_control) {
            bad.push(atelier_codes::FieldViolation::new(
                "model",
                format!("at most {MAX_MODEL_LEN} bytes, no control characters"),
            ));
        }
        if req.settings.len() > MAX_SETTINGS {
            bad.push(atelier_codes::FieldViolation::new(
                "settings",
                format!("at most {MAX_SETTINGS} settings"),
            ));
        }
        for (k, v) in &req.settings {
            if k.is_empty() || k.len() > MAX_SETTING_KEY_LEN || v.len() > MAX_SETTING_VALUE_LEN {
                bad.push(atelier_codes::FieldViolation::new(
                    format!("settings[{k}]"),
                    format!(
                        "keys 1..={MAX_SETTING_KEY_LEN} bytes, values at most {MAX_SETTING_VALUE_LEN}"
                    ),
                ));
            }
        }
        if !bad.is_empty() {
            return Err(ApiError::BadRequest(bad));
        }
        let settings: BTreeMap<&String, &String> = req.settings.iter().collect();
        let settings = serde_json::to_string(&settings)
            .map_err(|e| ApiError::Internal(format!("settings as JSON: {e}")))?;
        let a = &acting.account;
        studio::set_preferences(
            &self.ctx.db,
            &a.tenant_id,
            &a.id,
            output_size,
            model,
            &settings,
        )
        .await?;
        self.preferences(&acting).await
    }

    /// SubmitStudioJob: the pairs chosen and the prompt assembled (see the module doc), then the
    /// job goes through SubmitJob's own path ([`Submitter::prepare_submission`] and
    /// [`Submitter::charge_and_insert`]), recording task → pair in the same transaction.
    async fn submit_job(
        &self,
        acting: Acting,
        req: pb::SubmitStudioJobRequest,
        trace: Option<TraceParent>,
    ) -> ApiResult<pb::SubmitStudioJobResponse> {
        let mode = pb::StudioJobMode::try_from(req.mode).unwrap_or_default();
        let pair_id = req.pair_id.trim();
        let custom = req.prompt.trim();
        let mut bad = Vec::new();
        match mode {
            pb::StudioJobMode::Unspecified => bad.push(atelier_codes::FieldViolation::new(
                "mode",
                "batch, single or custom",
            )),
            pb::StudioJobMode::Single if pair_id.is_empty() => bad.push(
                atelier_codes::FieldViolation::new("pair_id", "a single job names its pair"),
            ),
            pb::StudioJobMode::Custom if custom.is_empty() => bad.push(
                atelier_codes::FieldViolation::new("prompt", "a custom job gives its prompt"),
            ),
            _ => {}
        }
        if mode != pb::StudioJobMode::Custom && !custom.is_empty() {
            bad.push(atelier_codes::FieldViolation::new(
                "prompt",
                "only custom jobs take a prompt",
            ));
        }
        if mode == pb::StudioJobMode::Batch && !pair_id.is_empty() {
            bad.push(atelier_codes::FieldViolation::new(
                "pair_id",
                "a batch job takes every pair without a result",
            ));
        }
        if custom.len() > MAX_TEMPLATE_LEN {
            bad.push(atelier_codes::FieldViolation::new(
                "prompt",
                format!("at most {MAX_TEMPLATE_LEN} bytes"),
            ));
        }
        if !bad.is_empty() {
            return Err(ApiError::BadRequest(bad));
        }
        let w = self.workspace(&acting, &req.workspace_id).await?;
        if w.state == studio::ARCHIVED {
            return Err(ApiError::Refused(format!(
                "workspace {} is archived: activate it before running a job on it",
                w.sku
            )));
        }
        let pairs = if pair_id.is_empty() {
            let filter = studio::PairFilter {
                approved: None,
                archived: Some(false),
                has_result: Some(false),
            };
            let pairs =
                studio::pairs(&self.ctx.db, &w.id, filter, None, MAX_SOURCES as u64).await?;
            if pairs.is_empty() {
                return Err(ApiError::Refused(format!(
                    "workspace {} has no pair without a result: nothing to run",
                    w.sku
                )));
            }
            pairs
        } else {
            let found = studio::pairs_by_id(
                &self.ctx.db,
                &w.id,
                std::slice::from_ref(&pair_id.to_string()),
            )
            .await?;
            if found.is_empty() {
                return Err(ApiError::NotFound("pair"));
            }
            found
        };
        let prompt = self.prompt(&acting, custom).await?;
        let preferences = studio::preferences(&self.ctx.db, &acting.account.id).await?;
        let (model, size) = preferences
            .map(|p| (p.model, p.output_size))
            .unwrap_or_default();
        let sources = pairs
            .iter()
            .map(|p| pb::Source {
                source: match (&p.source_upload_id, &p.source_url) {
                    (Some(upload), _) => Some(pb::source::Source::UploadId(upload.clone())),
                    (None, Some(url)) => Some(pb::source::Source::Url(url.clone())),
                    (None, None) => None,
                },
            })
            .collect();
        let request = pb::SubmitJobRequest {
            params: Some(pb::JobParams {
                params: Some(pb::job_params::Params::Edit(pb::EditParams {
                    prompt: prompt.clone(),
                    model,
                    size,
                    num_images: 1,
                    ..Default::default()
                })),
            }),
            sources,
            labels: [
                ("studio_workspace".to_string(), w.id.clone()),
                (
                    "studio_mode".to_string(),
                    mode.as_str_name()
                        .trim_start_matches("STUDIO_JOB_MODE_")
                        .to_ascii_lowercase(),
                ),
            ]
            .into_iter()
            .collect(),
            idempotency_key: req.idempotency_key,
            ..Default::default()
        };
        let submission = Submission::try_from(request)?;
        let jobs = Submitter::new(self.ctx.clone());
        let caller = &acting.caller;
        let (payer, prepared) = jobs
            .prepare_submission(&self.ctx.db, caller, submission)
            .await?;
        let txn = self.ctx.db.begin().await?;
        // Archived in the meantime: look again under the workspace's lock, taken before the
        // account's as a task's success takes them (workspace, then refunds).
        studio::lock(&txn, &w.id).await?;
        let current = studio::workspace(&txn, &acting.account.id, &w.id)
            .await?
            .ok_or(ApiError::NotFound("workspace"))?;
        if current.state == studio::ARCHIVED {
            return Err(ApiError::Refused(format!(
                "workspace {} is archived: activate it before running a job on it",
                current.sku
            )));
        }
        let inserted = jobs
            .charge_and_insert(&txn, caller, payer, prepared, trace.as_ref())
            .await?;
        // A new job's tasks as just written, in their order (one per pair).
        let (job, tasks, ahead) = match inserted {
            Submitted::Replayed(job) => {
                txn.commit().await?;
                let pair_ids = studio::job_pairs(&self.ctx.db, &job.id).await?;
                let prompt = match pb::JobParams::decode(job.params.as_slice()) {
                    Ok(pb::JobParams {
                        params: Some(pb::job_params::Params::Edit(e)),
                    }) => e.prompt,
                    _ => String::new(),
                };
                return Ok(pb::SubmitStudioJobResponse {
                    job: Some(Jobs::new(self.ctx.clone()).render(job).await?),
                    pair_ids,
                    prompt,
                });
            }
            Submitted::New { job, tasks, ahead } => (job, tasks, ahead),
        };
        let mapping: Vec<(String, String)> = tasks
            .iter()
            .zip(&pairs)
            .map(|(t, p)| (t.id.clone(), p.id.clone()))
            .collect();
        studio::record_job_tasks(&txn, &job.id, &mapping).await?;
        txn.commit().await?;
        jobs.submitted(&job);
        let shown = Jobs::new(self.ctx.clone())
            .show(Submitted::New { job, tasks, ahead })
            .await?;
        Ok(pb::SubmitStudioJobResponse {
            job: Some(shown),
            pair_ids: pairs.into_iter().map(|p| p.id).collect(),
            prompt,
        })
    }

    /// The prompt of a studio job: the active group's latest templates, then the custom prompt.
    async fn prompt(&self, acting: &Acting, custom: &str) -> ApiResult<String> {
        let preferences = studio::preferences(&self.ctx.db, &acting.account.id).await?;
        let mut parts = Vec::new();
        if let Some(group_id) = preferences.and_then(|p| p.active_group_id) {
            if let Some(group) = studio::group(&self.ctx.db, &acting.account.id, &group_id).await? {
                for t in studio::templates(&self.ctx.db, &group.id, group.latest_version).await? {
                    let text = t.text.trim();
                    if !text.is_empty() {
                        parts.push(text.to_string());
                    }
                }
            }
        }
        if !custom.is_empty() {
            parts.push(custom.to_string());
        }
        if parts.is_empty() {
            return Err(ApiError::field(
                "prompt",
                "no prompt to run: make a prompt group with templates active, or run a custom job",
            ));
        }
        Ok(parts.join(PROMPT_SEPARATOR))
    }

    async fn preferences(&self, acting: &Acting) -> ApiResult<pb::Preferences> {
        let Some(p) = studio::preferences(&self.ctx.db, &acting.account.id).await? else {
            return Ok(pb::Preferences::default());
        };
        let settings: HashMap<String, String> = serde_json::from_str(&p.settings)
            .map_err(|e| ApiError::Internal(format!("stored settings are not a JSON map: {e}")))?;
        Ok(pb::Preferences {
            output_size: p.output_size,
            model: p.model,
            settings,
            active_prompt_group_id: p.active_group_id.unwrap_or_default(),
            updated_at: Some(timestamp(p.updated_at)),
        })
    }
}

/// Why a workspace cannot be archived (`archive`) or activated from its state.
fn refusal(w: &studio::Workspace, archive: bool) -> String {
    match (archive, w.state.as_str()) {
        (true, studio::ARCHIVED) => format!("workspace {} is archived already", w.sku),
        (true, _) if w.with_result == 0 => format!(
            "workspace {} is pending: it has no results yet; only an approved workspace can be archived",
            w.sku
        ),
        (true, _) => format!(
            "workspace {} is pending: {} of its {} results are approved; approve them all before archiving",
            w.sku, w.approved, w.with_result
        ),
        (false, state) => format!(
            "workspace {} is {state}, not archived: only an archived workspace can be activated",
            w.sku
        ),
    }
}

/// Metadata as stored: a JSON object, `{}` for none.
fn metadata(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok("{}".into());
    }
    if text.len() > MAX_METADATA_LEN {
        return Err(format!("at most {MAX_METADATA_LEN} bytes"));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(text.to_string()),
        Ok(_) => Err("must be a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

fn state(text: &str) -> pb::WorkspaceState {
    match text {
        studio::PENDING => pb::WorkspaceState::Pending,
        studio::APPROVED => pb::WorkspaceState::Approved,
        studio::ARCHIVED => pb::WorkspaceState::Archived,
        _ => pb::WorkspaceState::Unspecified,
    }
}

fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn workspace(w: &studio::Workspace) -> pb::Workspace {
    pb::Workspace {
        id: w.id.clone(),
        sku: w.sku.clone(),
        title: w.title.clone(),
        state: state(&w.state) as i32,
        counts: Some(pb::PairCounts {
            total: count(w.total),
            with_result: count(w.with_result),
            approved: count(w.approved),
        }),
        created_at: Some(timestamp(w.created_at)),
        updated_at: Some(timestamp(w.updated_at)),
    }
}

/// The content type a stored object's key names by its extension (links carry it for S3's answer).
fn content_type_of(key: &str) -> &'static str {
    let extension = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// A pair as answered, with fresh links to its source and result.
async fn linked_pair(links: &atelier_storage::Links, p: &studio::Pair) -> pb::ImagePair {
    let mut out = pair(p);
    out.source_link = match (&p.source_url, &p.source_key) {
        (Some(url), _) => url.clone(),
        (None, Some(key)) => links.url(key, content_type_of(key)).await,
        (None, None) => String::new(),
    };
    out.result_link = match (&p.result_key, &p.result_url) {
        (Some(key), _) => links.url(key, content_type_of(key)).await,
        (None, Some(url)) => url.clone(),
        (None, None) => String::new(),
    };
    out
}

fn pair(p: &studio::Pair) -> pb::ImagePair {
    let source = match (&p.source_url, &p.source_upload_id) {
        (Some(url), _) => Some(pb::source::Source::Url(url.clone())),
        (None, Some(id)) => Some(pb::source::Source::UploadId(id.clone())),
        (None, None) => None,
    };
    pb::ImagePair {
        id: p.id.clone(),
        workspace_id: p.workspace_id.clone(),
        source: Some(pb::Source { source }),
        result_key: p.result_key.clone().unwrap_or_default(),
        result_url: p.result_url.clone().unwrap_or_default(),
        approved: p.approved,
        archived: p.archived,
        metadata: p.metadata.clone(),
        job_id: p.job_id.clone().unwrap_or_default(),
        task_id: p.task_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
        ..Default::default()
    }
}

fn prompt_group(
    g: &studio::Group,
    version: i32,
    active: bool,
    templates: &[studio::Template],
) -> pb::PromptGroup {
    pb::PromptGroup {
        id: g.id.clone(),
        name: g.name.clone(),
        version: u32::try_from(version).unwrap_or_default(),
        latest_version: u32::try_from(g.latest_version).unwrap_or_default(),
        active,
        templates: templates
            .iter()
            .map(|t| pb::PromptTemplate {
                name: t.name.clone(),
                text: t.text.clone(),
            })
            .collect(),
        created_at: templates.first().map(|t| timestamp(t.created_at)),
    }
}

#[tonic::async_trait]
impl StudioService for Studio {
    async fn get_studio_job(
        &self,
        request: Request<pb::GetStudioJobRequest>,
    ) -> Result<Response<pb::StudioJob>, Status> {
        let acting = self.acting(&request).await?;
        Ok(Response::new(
            self.studio_job(&acting, &request.get_ref().job_id).await?,
        ))
    }

    async fn create_workspace(
        &self,
        request: Request<pb::CreateWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        let acting = self.acting(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(
            Studio::create_workspace(self, acting, req).await?,
        ))
    }

    async fn get_workspace(
        &self,
        request: Request<pb::GetWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        let acting = self.acting(&request).await?;
        let found = match &request.get_ref().workspace {
            Some(pb::get_workspace_request::Workspace::WorkspaceId(id)) => {
                studio::workspace(&self.ctx.db, &acting.account.id, id)
                    .await
                    .map_err(ApiError::from)?
            }
            Some(pb::get_workspace_request::Workspace::Sku(sku)) => {
                studio::workspace_by_sku(&self.ctx.db, &acting.account.id, sku.trim())
                    .await
                    .map_err(ApiError::from)?
            }
            None => return Err(ApiError::field("workspace", "set workspace_id or sku").into()),
        };
        let found = found.ok_or(ApiError::NotFound("workspace"))?;
        Ok(Response::new(workspace(&found)))
    }

    async fn list_workspaces(
        &self,
        request: Request<pb::ListWorkspacesRequest>,
    ) -> Result<Response<pb::ListWorkspacesResponse>, Status> {
        let acting = self.acting(&request).await?;
        let req = request.get_ref();
        let limit = page_size(req.page_size, 50, 500)?;
        let state = match pb::WorkspaceState::try_from(req.state) {
            Ok(pb::WorkspaceState::Unspecified) => None,
            Ok(pb::WorkspaceState::Pending) => Some(studio::PENDING),
            Ok(pb::WorkspaceState::Approved) => Some(studio::APPROVED),
            Ok(pb::WorkspaceState::Archived) => Some(studio::ARCHIVED),
            Err(_) => return Err(ApiError::field("state", "not a workspace state").into()),
        };
        let before = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let rows = studio::workspaces(&self.ctx.db, &acting.account.id, state, before, limit)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match rows.last() {
            Some(last) if rows.len() as u64 == limit => last.id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListWorkspacesResponse {
            workspaces: rows.iter().map(workspace).collect(),
            next_page_token,
        }))
    }

    async fn add_pairs(
        &self,
        request: Request<pb::AddPairsRequest>,
    ) -> Result<Response<pb::AddPairsResponse>, Status> {
        let acting = self.acting(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(Studio::add_pairs(self, acting, req).await?))
    }

    async fn list_pairs(
        &self,
        request: Request<pb::ListPairsRequest>,
    ) -> Result<Response<pb::ListPairsResponse>, Status> {
        let acting = self.acting(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(Studio::list_pairs(self, acting, req).await?))
    }

    async fn review_pairs(
        &self,
        request: Request<pb::ReviewPairsRequest>,
    ) -> Result<Response<pb::ReviewPairsResponse>, Status> {
        let acting = self.acting(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(self.review(acting, req).await?))
    }

    async fn archive_workspace(
        &self,
        request: Request<pb::ArchiveWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        let acting = self.acting(&request).await?;
        let id = &request.get_ref().workspace_id;
        Ok(Response::new(self.move_workspace(acting, id, true).await?))
    }

    async fn activate_workspace(
        &self,
        request: Request<pb::ActivateWorkspaceRequest>,
    ) -> Result<Response<pb::Workspace>, Status> {
        let acting = self.acting(&request).await?;
        let id = &request.get_ref().workspace_id;
        Ok(Response::new(self.move_workspace(acting, id, false).await?))
    }

    async fn delete_files(
        &self,
        request: Request<pb::DeleteFilesRequest>,
    ) -> Result<Response<pb::DeleteFilesResponse>, Status> {
        let acting = self.acting(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(
            Studio::delete_files(self, acting, req).await?,
        ))
    }

    async fn list_prompt_groups(
        &self,
        request: Request<pb::ListPromptGroupsRequest>,
    ) -> Result<Response<pb::ListPromptGroupsResponse>, Status> {
        let acting = self.acting(&request).await?;
        let db = &self.ctx.db;
        let account_id = &acting.account.id;
        let groups = studio::groups(db, account_id)
            .await
            .map_err(ApiError::from)?;
        let mut templates: HashMap<String, Vec<studio::Template>> = HashMap::new();
        for t in studio::latest_templates(db, account_id)
            .await
            .map_err(ApiError::from)?
        {
            templates.entry(t.group_id.clone()).or_default().push(t);
        }
        let active = studio::preferences(db, account_id)
            .await
            .map_err(ApiError::from)?
            .and_then(|p| p.active_group_id);
        let groups = groups
            .iter()
            .map(|g| {
                prompt_group(
                    g,
                    g.latest_version,
                    active.as_deref() == Some(g.id.as_str()),
                    templates.get(&g.id).map_or(&[][..], Vec::as_slice),
                )
            })
            .collect();
        Ok(Response::new(pb::ListPromptGroupsResponse { groups }))
    }

    async fn get_prompt_group(
        &self,
        request: Request<pb::GetPromptGroupRequest>,
    ) -> Result<Response<pb::PromptGroup>, Status> {
        let acting = self.acting(&request).await?;
        let req = request.get_ref();
        let group = studio::group(&self.ctx.db, &acting.account.id, &req.group_id)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("prompt group"))?;
        let version = match i32::try_from(req.version) {
            Ok(0) => group.latest_version,
            Ok(v) if v <= group.latest_version => v,
            _ => return Err(ApiError::NotFound("prompt group version").into()),
        };
        Ok(Response::new(self.group(&acting, group, version).await?))
    }

    async fn save_prompt_group(
        &self,
        request: Request<pb::SavePromptGroupRequest>,
    ) -> Result<Response<pb::PromptGroup>, Status> {
        let acting = self.acting(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(self.save_group(acting, req).await?))
    }

    async fn set_active_prompt_group(
        &self,
        request: Request<pb::SetActivePromptGroupRequest>,
    ) -> Result<Response<pb::PromptGroup>, Status> {
        let acting = self.acting(&request).await?;
        let a = &acting.account;
        let group = studio::group(&self.ctx.db, &a.id, &request.get_ref().group_id)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("prompt group"))?;
        studio::set_active_group(&self.ctx.db, &a.tenant_id, &a.id, &group.id)
            .await
            .map_err(ApiError::from)?;
        let version = group.latest_version;
        Ok(Response::new(self.group(&acting, group, version).await?))
    }

    async fn get_preferences(
        &self,
        request: Request<pb::GetPreferencesRequest>,
    ) -> Result<Response<pb::Preferences>, Status> {
        let acting = self.acting(&request).await?;
        Ok(Response::new(self.preferences(&acting).await?))
    }

    async fn set_preferences(
        &self,
        request: Request<pb::SetPreferencesRequest>,
    ) -> Result<Response<pb::Preferences>, Status> {
        let acting = self.acting(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(
            Studio::set_preferences(self, acting, req).await?,
        ))
    }

    async fn submit_studio_job(
        &self,
        request: Request<pb::SubmitStudioJobRequest>,
    ) -> Result<Response<pb::SubmitStudioJobResponse>, Status> {
        let trace = request.trace();
        let acting = self.acting(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(self.submit_job(acting, req, trace).await?))
    }
}
