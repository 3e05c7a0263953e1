//! Stored rows to wire messages.

use std::collections::HashMap;

use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use prost::Message;

use crate::db::entities::{account, job, ledger, task, upload};
use crate::domain::timestamp;

/// A job with its tasks as the API shows it.
pub fn job(model: &job::Model, tasks: &[task::Model]) -> pb::Job {
    let params = pb::JobParams::decode(model.params.as_slice()).ok();
    let labels: HashMap<String, String> = serde_json::from_str(&model.labels).unwrap_or_default();
    pb::Job {
        id: model.id.clone(),
        account: model.account.clone(),
        kind: model.kind.number(),
        state: model.state.number(),
        params,
        tasks: tasks
            .iter()
            .filter(|t| t.job_id == model.id)
            .map(self::task)
            .collect(),
        labels,
        idempotency_key: model.idempotency_key.clone().unwrap_or_default(),
        callback_url: model.callback_url.clone().unwrap_or_default(),
        cost: u64::try_from(model.cost).unwrap_or_default(),
        refunded: u64::try_from(model.refunded).unwrap_or_default(),
        created_at: Some(timestamp(model.created_at)),
        updated_at: Some(timestamp(model.updated_at)),
        finished_at: model.finished_at.map(timestamp),
        deadline: model.deadline_at.map(timestamp),
        queue_position: 0,
        estimated_seconds: 0,
        last_sequence: u64::try_from(model.last_sequence).unwrap_or_default(),
        batch_id: model.batch_id.clone().unwrap_or_default(),
        family: model.family.clone(),
    }
}

/// A task as the API shows it.
pub fn task(model: &task::Model) -> pb::Task {
    let failure = model.failure_code.and_then(|code| {
        let code = ErrorCode::from_number(u32::try_from(code).ok()?)?;
        Some(pb::Failure {
            code: code.number(),
            reason: code.reason().to_string(),
            message: model.failure_message.clone().unwrap_or_default(),
        })
    });
    pb::Task {
        id: model.id.clone(),
        index: u32::try_from(model.idx).unwrap_or_default(),
        source: model
            .source
            .as_deref()
            .and_then(|b| pb::Source::decode(b).ok()),
        state: model.state.number(),
        attempts: u32::try_from(model.attempts).unwrap_or_default(),
        stage: model.stage.clone(),
        percent: u32::try_from(model.percent).unwrap_or_default(),
        outputs: model
            .outputs
            .as_deref()
            .map(crate::db::stored_outputs)
            .unwrap_or_default(),
        failure,
        from_cache: model.from_cache,
        started_at: model.started_at.map(timestamp),
        finished_at: model.finished_at.map(timestamp),
        source_info: model
            .source_info
            .as_deref()
            .and_then(|b| pb::SourceInfo::decode(b).ok()),
    }
}

/// An account with its count of active jobs.
pub fn account(model: &account::Model, active_jobs: u64) -> pb::Account {
    pb::Account {
        tenant_id: model.tenant_id.clone(),
        external_id: model.external_id.clone(),
        balance: model.balance,
        // Membership as it counts now: an expired one is no membership.
        member: crate::db::accounts::is_member(model, crate::domain::now_ms()),
        membership_expires_at: model.membership_expires_at.map(timestamp),
        active_jobs: u32::try_from(active_jobs).unwrap_or(u32::MAX),
        created_at: Some(timestamp(model.created_at)),
    }
}

/// A ledger row.
pub fn ledger_entry(model: &ledger::Model) -> pb::LedgerEntry {
    pb::LedgerEntry {
        id: model.id.clone(),
        kind: model.kind.clone(),
        amount: model.amount,
        reason: model.reason.clone(),
        job_id: model.job_id.clone().unwrap_or_default(),
        task_id: model.task_id.clone().unwrap_or_default(),
        created_at: Some(timestamp(model.created_at)),
    }
}

/// An upload.
pub fn upload(model: &upload::Model) -> pb::Upload {
    pb::Upload {
        id: model.id.clone(),
        bytes: u64::try_from(model.bytes).unwrap_or_default(),
        sha256: model.sha256.clone(),
        filename: model.filename.clone(),
        content_type: model.content_type.clone(),
        created_at: Some(timestamp(model.created_at)),
    }
}
