//! sea-orm entities, one module per table of `migrations/`. Times are unix milliseconds.

/// A calling backend.
pub mod tenant {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A tenant's API key, stored only as a hash.
pub mod api_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub account: Option<String>,
        pub prefix: String,
        pub hash: String,
        pub created_at: i64,
        pub revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An end user inside a tenant, holding quota and membership.
pub mod account {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub external_id: String,
        pub balance: i64,
        pub member: bool,
        pub membership_expires_at: Option<i64>,
        pub created_at: i64,
        /// Jobs charged to the account so far (migration `m0011_account_submits`).
        pub submits: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One change of an account's balance.
pub mod ledger {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub account_id: String,
        pub kind: String,
        pub amount: i64,
        pub reason: String,
        pub unique_key: String,
        pub job_id: Option<String>,
        pub task_id: Option<String>,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A source image uploaded through UploadSource.
pub mod upload {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "uploads")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub account_id: String,
        pub object_key: String,
        pub bytes: i64,
        pub sha256: String,
        pub filename: String,
        pub content_type: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A job: one request of a kind over its sources.
pub mod job {
    use sea_orm::entity::prelude::*;

    use crate::domain::{JobState, Kind};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub account_id: String,
        pub account: String,
        pub kind: Kind,
        pub state: JobState,
        pub params: Vec<u8>,
        pub labels: String,
        pub idempotency_key: Option<String>,
        pub request_hash: Option<String>,
        pub callback_url: Option<String>,
        pub unit_price: i64,
        pub cost: i64,
        pub refunded: i64,
        pub last_sequence: i64,
        pub created_at: i64,
        pub updated_at: i64,
        pub finished_at: Option<i64>,
        pub deadline_at: Option<i64>,
        /// The caller's W3C `traceparent`, passed on to the processor.
        pub trace_parent: Option<String>,
        /// The client family it came through (`image_editor`, …), empty for Atelier's own API.
        pub family: String,
        /// The batch it was submitted in.
        pub batch_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Jobs submitted together in one SubmitBatch: one unit of the active-jobs limit, one callback.
pub mod batch {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "batches")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub account_id: String,
        /// Unique per account.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant_id: String,
        pub callback_url: Option<String>,
        pub family: String,
        /// Jobs the batch accepted.
        pub total: i32,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One source of a job, run by a processor.
pub mod task {
    use sea_orm::entity::prelude::*;

    use crate::domain::TaskState;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tasks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub job_id: String,
        pub idx: i32,
        pub source: Option<Vec<u8>>,
        pub source_ref: Option<Vec<u8>>,
        pub state: TaskState,
        pub attempts: i32,
        pub stage: String,
        pub percent: i32,
        pub outputs: Option<Vec<u8>>,
        pub source_info: Option<Vec<u8>>,
        pub failure_code: Option<i32>,
        pub failure_message: Option<String>,
        pub from_cache: bool,
        pub lease_owner: Option<String>,
        pub lease_expires_at: Option<i64>,
        pub run_after: i64,
        pub created_at: i64,
        pub started_at: Option<i64>,
        pub finished_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A stored change of a job, with its per-job sequence.
pub mod job_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "job_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub job_id: String,
        pub tenant_id: String,
        pub account_id: String,
        pub sequence: i64,
        pub payload: Vec<u8>,
        pub created_at: i64,
        /// The writing transaction's id on PostgreSQL (set by the database), 0 on SQLite.
        pub txid: i64,
        /// How many events the row holds; `sequence` is the last one's.
        pub events: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
