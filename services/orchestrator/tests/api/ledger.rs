//! Property test of the quota ledger: whatever sequence of grants, submits, cancels, failures and
//! repeated refunds happens, the balance never goes negative, always equals the ledger's sum, and
//! every task is refunded at most once.

use atelier_orchestrator::db::{self, entities::job};
use atelier_orchestrator::domain::{now_ms, JobState, Kind, TaskState};
use proptest::prelude::*;
use sea_orm::{DatabaseConnection, EntityTrait, TransactionTrait};

#[derive(Clone, Debug)]
enum Op {
    Grant(i64),
    Submit(usize),
    Cancel(usize),
    FailQueued(usize, usize),
    RefundAgain(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1i64..6).prop_map(Op::Grant),
        (1usize..5).prop_map(Op::Submit),
        (0usize..8).prop_map(Op::Cancel),
        (0usize..8, 0usize..4).prop_map(|(j, t)| Op::FailQueued(j, t)),
        (0usize..8, 0usize..4).prop_map(|(j, t)| Op::RefundAgain(j, t)),
    ]
}

async fn submit(db: &DatabaseConnection, account_id: &str, tasks: usize) -> Option<String> {
    let txn = db.begin().await.expect("txn");
    let id = uuid::Uuid::now_v7().to_string();
    let cost = tasks as i64;
    let entry = db::accounts::Entry {
        account_id,
        kind: "charge",
        amount: -cost,
        reason: "job submitted",
        unique_key: format!("charge:{id}"),
        job_id: Some(&id),
        task_id: None,
    };
    if !db::accounts::book(&txn, entry).await.expect("book") {
        txn.rollback().await.expect("rollback");
        return None;
    }
    let now = now_ms();
    let model = job::Model {
        id: id.clone(),
        tenant_id: "t".into(),
        account_id: account_id.into(),
        account: "a".into(),
        kind: Kind::Transform,
        state: JobState::Queued,
        params: Vec::new(),
        labels: "{}".into(),
        idempotency_key: None,
        request_hash: None,
        callback_url: None,
        unit_price: 1,
        cost,
        refunded: 0,
        last_sequence: 0,
        created_at: now,
        updated_at: now,
        finished_at: None,
        deadline_at: None,
        trace_parent: None,
        family: String::new(),
        batch_id: None,
    };
    let tasks = (0..tasks)
        .map(|_| db::jobs::NewTask {
            source: None,
            source_ref: None,
        })
        .collect();
    db::jobs::insert(&txn, model, tasks).await.expect("insert");
    txn.commit().await.expect("commit");
    Some(id)
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("dir");
    let db = db::connect(&format!("sqlite://{}/ledger.db", dir.path().display()))
        .await
        .expect("db");
    db::migrate(&db).await.expect("migrate");
    let account = db::accounts::upsert(&db, "t", "a").await.expect("account");
    let mut jobs: Vec<String> = Vec::new();
    for op in ops {
        match op {
            Op::Grant(n) => {
                let entry = db::accounts::Entry {
                    account_id: &account.id,
                    kind: "grant",
                    amount: n,
                    reason: "grant",
                    unique_key: format!("grant:{}", uuid::Uuid::new_v4()),
                    job_id: None,
                    task_id: None,
                };
                assert!(db::accounts::book(&db, entry).await.expect("grant"));
            }
            Op::Submit(n) => jobs.extend(submit(&db, &account.id, n).await),
            Op::Cancel(j) => {
                if let Some(id) = jobs.get(j) {
                    let txn = db.begin().await.expect("txn");
                    let job = db::jobs::lock(&txn, id).await.expect("lock").expect("job");
                    atelier_orchestrator::jobs::lifecycle::cancel(&txn, &job)
                        .await
                        .expect("cancel");
                    txn.commit().await.expect("commit");
                }
            }
            Op::FailQueued(j, t) | Op::RefundAgain(j, t) if jobs.get(j).is_none() => {
                let _ = t;
            }
            Op::FailQueued(j, t) => {
                let tasks = db::jobs::tasks_of(&db, &[jobs[j].clone()])
                    .await
                    .expect("tasks");
                if let Some(task) = tasks.get(t) {
                    let txn = db.begin().await.expect("txn");
                    atelier_orchestrator::jobs::lifecycle::time_out(&txn, task, "too slow")
                        .await
                        .expect("time out");
                    txn.commit().await.expect("commit");
                }
            }
            Op::RefundAgain(j, t) => {
                let tasks = db::jobs::tasks_of(&db, &[jobs[j].clone()])
                    .await
                    .expect("tasks");
                // A refund repeated after the fact, as a crash and retry would: only for tasks that
                // already ended badly.
                if let Some(task) = tasks
                    .get(t)
                    .filter(|t| t.state == TaskState::Failed || t.state == TaskState::Cancelled)
                {
                    let job = job::Entity::find_by_id(jobs[j].clone())
                        .one(&db)
                        .await
                        .expect("find")
                        .expect("job");
                    db::accounts::refund_task(&db, &job, &task.id, "again")
                        .await
                        .expect("refund");
                }
            }
        }
        let balance = db::accounts::find(&db, "t", "a")
            .await
            .expect("find")
            .expect("account")
            .balance;
        assert!(balance >= 0, "balance {balance} went negative");
        assert_eq!(
            balance,
            db::accounts::ledger_sum(&db, &account.id)
                .await
                .expect("sum")
        );
    }
    // Each job's refunds match its failed and cancelled tasks exactly: never twice, never for a task
    // that did not end badly.
    for id in &jobs {
        let job = job::Entity::find_by_id(id.clone())
            .one(&db)
            .await
            .expect("find")
            .expect("job");
        let tasks = db::jobs::tasks_of(&db, std::slice::from_ref(id))
            .await
            .expect("tasks");
        let ended_badly = tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed || t.state == TaskState::Cancelled)
            .count() as i64;
        assert_eq!(
            job.refunded, ended_badly,
            "one refund per failed or cancelled task"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_always_balances(ops in proptest::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(run(ops));
    }
}
