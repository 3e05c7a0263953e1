//! StudioService: workspaces with their pair counts, pairs, review, the workspace transitions and their
//! refusals, versioned prompt groups with one active group, preferences, and isolation between
//! accounts and tenants; studio jobs run on a real processor with the fake model provider, their
//! results written into the pairs as the tasks finish.

use std::collections::HashMap;

use atelier_proto::v1 as pb;
use atelier_proto::v1::studio_service_client::StudioServiceClient;
use tonic::transport::Channel;

use crate::helpers::{
    as_account, code_of, exec, images, spawn_app, text, transform_job, upload_source, url_source,
    Backend, Tenant, TestApp,
};
use crate::models::{spawn_with_provider, MODEL};
use crate::on_both_databases;
use atelier_testkit::provider::ProviderServer;

on_both_databases!(
    workspaces_list_with_their_pair_counts,
    pairs_are_reviewed_one_or_many_at_a_time,
    workspaces_move_through_their_states_and_refuse_the_wrong_moves,
    concurrent_reviews_settle_on_each_other,
    prompt_groups_keep_their_versions_and_one_is_active,
    preferences_round_trip,
    other_accounts_and_tenants_see_nothing,
    deleting_files_removes_the_objects_nothing_else_names,
    a_batch_job_fills_every_pair_as_its_tasks_finish,
    a_re_run_keeps_the_earlier_result_in_the_history,
    studio_jobs_are_refused_for_archived_workspaces_and_empty_batches,
);

/// A studio client acting as `account` of `tenant`.
struct Desk {
    client: StudioServiceClient<Channel>,
    key: String,
    account: String,
}

impl Desk {
    fn new(client: &StudioServiceClient<Channel>, tenant: &Tenant, account: &str) -> Self {
        Self {
            client: client.clone(),
            key: tenant.key.clone(),
            account: account.into(),
        }
    }

    fn req<T>(&self, message: T) -> tonic::Request<T> {
        as_account(message, &self.key, &self.account)
    }

    async fn create(&self, sku: &str) -> Result<pb::Workspace, tonic::Status> {
        self.client
            .clone()
            .create_workspace(self.req(pb::CreateWorkspaceRequest {
                sku: sku.into(),
                title: format!("{sku} title"),
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn add(
        &self,
        workspace_id: &str,
        pairs: Vec<pb::NewPair>,
    ) -> Result<pb::AddPairsResponse, tonic::Status> {
        self.client
            .clone()
            .add_pairs(self.req(pb::AddPairsRequest {
                workspace_id: workspace_id.into(),
                pairs,
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn list(&self, state: pb::WorkspaceState) -> Vec<pb::Workspace> {
        self.client
            .clone()
            .list_workspaces(self.req(pb::ListWorkspacesRequest {
                state: state as i32,
                page_size: 0,
                page_token: String::new(),
            }))
            .await
            .expect("list workspaces")
            .into_inner()
            .workspaces
    }

    async fn pairs(&self, req: pb::ListPairsRequest) -> Result<Vec<pb::ImagePair>, tonic::Status> {
        self.client
            .clone()
            .list_pairs(self.req(req))
            .await
            .map(|r| r.into_inner().pairs)
    }

    async fn review(
        &self,
        workspace_id: &str,
        ids: &[&str],
        approved: bool,
    ) -> Result<pb::ReviewPairsResponse, tonic::Status> {
        self.client
            .clone()
            .review_pairs(self.req(pb::ReviewPairsRequest {
                workspace_id: workspace_id.into(),
                pair_ids: ids.iter().map(|s| s.to_string()).collect(),
                approved,
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn archive(&self, workspace_id: &str) -> Result<pb::Workspace, tonic::Status> {
        self.client
            .clone()
            .archive_workspace(self.req(pb::ArchiveWorkspaceRequest {
                workspace_id: workspace_id.into(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn activate(&self, workspace_id: &str) -> Result<pb::Workspace, tonic::Status> {
        self.client
            .clone()
            .activate_workspace(self.req(pb::ActivateWorkspaceRequest {
                workspace_id: workspace_id.into(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn delete_files(
        &self,
        workspace_id: &str,
        ids: &[&str],
        (sources, results, remove_pairs): (bool, bool, bool),
    ) -> Result<pb::DeleteFilesResponse, tonic::Status> {
        self.client
            .clone()
            .delete_files(self.req(pb::DeleteFilesRequest {
                workspace_id: workspace_id.into(),
                pair_ids: ids.iter().map(|s| s.to_string()).collect(),
                sources,
                results,
                remove_pairs,
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn get(&self, workspace_id: &str) -> Result<pb::Workspace, tonic::Status> {
        self.client
            .clone()
            .get_workspace(self.req(pb::GetWorkspaceRequest {
                workspace: Some(pb::get_workspace_request::Workspace::WorkspaceId(
                    workspace_id.into(),
                )),
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn save_group(
        &self,
        name: &str,
        templates: &[(&str, &str)],
    ) -> Result<pb::PromptGroup, tonic::Status> {
        self.client
            .clone()
            .save_prompt_group(
                self.req(pb::SavePromptGroupRequest {
                    name: name.into(),
                    templates: templates
                        .iter()
                        .map(|(name, text)| pb::PromptTemplate {
                            name: name.to_string(),
                            text: text.to_string(),
                        })
                        .collect(),
                }),
            )
            .await
            .map(|r| r.into_inner())
    }

    async fn group(&self, id: &str, version: u32) -> Result<pb::PromptGroup, tonic::Status> {
        self.client
            .clone()
            .get_prompt_group(self.req(pb::GetPromptGroupRequest {
                group_id: id.into(),
                version,
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn groups(&self) -> Vec<pb::PromptGroup> {
        self.client
            .clone()
            .list_prompt_groups(self.req(pb::ListPromptGroupsRequest {}))
            .await
            .expect("list groups")
            .into_inner()
            .groups
    }

    async fn activate_group(&self, id: &str) -> Result<pb::PromptGroup, tonic::Status> {
        self.client
            .clone()
            .set_active_prompt_group(self.req(pb::SetActivePromptGroupRequest {
                group_id: id.into(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn preferences(&self) -> pb::Preferences {
        self.client
            .clone()
            .get_preferences(self.req(pb::GetPreferencesRequest {}))
            .await
            .expect("preferences")
            .into_inner()
    }
}

fn pair(url: &str, result: &str) -> pb::NewPair {
    pb::NewPair {
        source: Some(url_source(url)),
        result_url: result.into(),
        metadata: String::new(),
    }
}

fn counts(w: &pb::Workspace) -> (u32, u32, u32) {
    let c = w.counts.unwrap_or_default();
    (c.total, c.with_result, c.approved)
}

fn state_of(w: &pb::Workspace) -> pb::WorkspaceState {
    pb::WorkspaceState::try_from(w.state).expect("a known state")
}

fn message_of(status: &tonic::Status) -> String {
    status.message().to_string()
}

fn ids(pairs: &[pb::ImagePair]) -> Vec<&str> {
    pairs.iter().map(|p| p.id.as_str()).collect()
}

async fn workspaces_list_with_their_pair_counts(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 0).await;
    let desk = Desk::new(&app.studio, &t, "ivy");

    let shoes = desk.create("SKU-SHOES").await.expect("create");
    assert_eq!(state_of(&shoes), pb::WorkspaceState::Pending);
    assert_eq!(
        (shoes.sku.as_str(), shoes.title.as_str()),
        ("SKU-SHOES", "SKU-SHOES title")
    );
    let err = desk.create("SKU-SHOES").await.expect_err("same SKU");
    assert_eq!(code_of(&err), 1005, "{err:?}");
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert!(message_of(&err).contains("SKU-SHOES"), "{err:?}");
    let err = desk.create("  ").await.expect_err("empty SKU");
    assert_eq!(code_of(&err), 1003);
    let hats = desk.create("SKU-HATS").await.expect("second");

    let upload = app.upload(&t, "ivy", images::jpeg()).await.expect("upload");
    let added = desk
        .add(
            &shoes.id,
            vec![
                pair(&app.sources.url("/front.jpg"), ""),
                pair(
                    &app.sources.url("/side.jpg"),
                    "https://cdn.example.com/side-out.png",
                ),
                pb::NewPair {
                    source: Some(crate::helpers::upload_source(&upload.id)),
                    result_url: "https://cdn.example.com/back-out.png".into(),
                    metadata: r#"{"angle": "back"}"#.into(),
                },
            ],
        )
        .await
        .expect("add pairs");
    assert_eq!(added.pairs.len(), 3);
    assert_eq!(
        counts(added.workspace.as_ref().expect("workspace")),
        (3, 2, 0)
    );
    let back = &added.pairs[2];
    assert_eq!(
        back.source.as_ref().and_then(|s| s.source.clone()),
        Some(pb::source::Source::UploadId(upload.id.clone()))
    );
    assert_eq!(back.metadata, r#"{"angle": "back"}"#);
    assert_eq!(added.pairs[0].metadata, "{}");
    assert!(added.pairs.iter().all(|p| !p.approved && !p.archived));

    let bad = desk
        .add(
            &shoes.id,
            vec![
                pb::NewPair {
                    source: Some(url_source(&app.sources.url("/a.jpg"))),
                    result_url: String::new(),
                    metadata: "[1, 2]".into(),
                },
                pb::NewPair {
                    source: Some(crate::helpers::upload_source(
                        "0192f000-0000-7000-8000-000000000000",
                    )),
                    result_url: String::new(),
                    metadata: String::new(),
                },
                pb::NewPair {
                    source: None,
                    result_url: "ftp://nope".into(),
                    metadata: String::new(),
                },
            ],
        )
        .await
        .expect_err("bad pairs");
    assert_eq!(code_of(&bad), 1003);
    let fields: Vec<String> = message_of(&bad)
        .split("; ")
        .filter_map(|v| v.split(':').next().map(str::to_string))
        .collect();
    assert_eq!(
        fields,
        [
            "pairs[0].metadata",
            "pairs[1].source.upload_id",
            "pairs[2].source",
            "pairs[2].result_url"
        ],
        "{bad:?}"
    );

    let all = desk.list(pb::WorkspaceState::Unspecified).await;
    assert_eq!(
        all.iter()
            .map(|w| (w.sku.as_str(), counts(w)))
            .collect::<Vec<_>>(),
        [("SKU-HATS", (0, 0, 0)), ("SKU-SHOES", (3, 2, 0))],
        "newest first, each with its counts"
    );
    assert_eq!(desk.list(pb::WorkspaceState::Pending).await.len(), 2);
    assert!(desk.list(pb::WorkspaceState::Archived).await.is_empty());

    let first = desk
        .client
        .clone()
        .list_workspaces(desk.req(pb::ListWorkspacesRequest {
            state: 0,
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(first.workspaces[0].id, hats.id);
    assert!(!first.next_page_token.is_empty());
    let second = desk
        .client
        .clone()
        .list_workspaces(desk.req(pb::ListWorkspacesRequest {
            state: 0,
            page_size: 1,
            page_token: first.next_page_token,
        }))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.workspaces.len(), 1);
    assert_eq!(second.workspaces[0].id, shoes.id);

    let by_sku = desk
        .client
        .clone()
        .get_workspace(desk.req(pb::GetWorkspaceRequest {
            workspace: Some(pb::get_workspace_request::Workspace::Sku(
                "SKU-SHOES".into(),
            )),
        }))
        .await
        .expect("by SKU")
        .into_inner();
    assert_eq!(
        (by_sku.id.as_str(), counts(&by_sku)),
        (shoes.id.as_str(), (3, 2, 0))
    );

    let filter = |has_result: Option<bool>| pb::ListPairsRequest {
        workspace_id: shoes.id.clone(),
        has_result,
        ..Default::default()
    };
    let with = desk.pairs(filter(Some(true))).await.expect("with results");
    assert_eq!(
        ids(&with),
        [added.pairs[1].id.as_str(), added.pairs[2].id.as_str()]
    );
    let without = desk.pairs(filter(Some(false))).await.expect("without");
    assert_eq!(ids(&without), [added.pairs[0].id.as_str()]);
    let page = desk
        .client
        .clone()
        .list_pairs(desk.req(pb::ListPairsRequest {
            workspace_id: shoes.id.clone(),
            page_size: 2,
            ..Default::default()
        }))
        .await
        .expect("pairs page")
        .into_inner();
    assert_eq!(ids(&page.pairs), ids(&added.pairs[..2]));
    let rest = desk
        .pairs(pb::ListPairsRequest {
            workspace_id: shoes.id.clone(),
            page_size: 2,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .expect("pairs rest");
    assert_eq!(ids(&rest), ids(&added.pairs[2..]));
}

async fn pairs_are_reviewed_one_or_many_at_a_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 0).await;
    let desk = Desk::new(&app.studio, &t, "ivy");
    let w = desk.create("SKU-1").await.expect("create");
    let added = desk
        .add(
            &w.id,
            vec![
                pair(&app.sources.url("/0.jpg"), ""),
                pair(&app.sources.url("/1.jpg"), "https://cdn.example.com/1.png"),
                pair(&app.sources.url("/2.jpg"), "https://cdn.example.com/2.png"),
            ],
        )
        .await
        .expect("add")
        .pairs;
    let (none, one, two) = (&added[0].id, &added[1].id, &added[2].id);

    let reviewed = desk.review(&w.id, &[one], true).await.expect("approve one");
    assert_eq!(reviewed.pairs.len(), 1);
    assert!(reviewed.pairs[0].approved);
    let after = reviewed.workspace.expect("workspace");
    assert_eq!(counts(&after), (3, 2, 1));
    assert_eq!(
        state_of(&after),
        pb::WorkspaceState::Pending,
        "one result is still not approved"
    );

    let err = desk
        .review(&w.id, &[two, none], true)
        .await
        .expect_err("a pair without a result");
    assert_eq!(code_of(&err), 1003);
    assert!(message_of(&err).contains("no result"), "{err:?}");
    assert!(
        !desk
            .pairs(pb::ListPairsRequest {
                workspace_id: w.id.clone(),
                approved: Some(true),
                ..Default::default()
            })
            .await
            .expect("approved")
            .iter()
            .any(|p| &p.id == two),
        "a refused batch changes nothing"
    );
    let err = desk
        .review(&w.id, &[two, "pair_unknown"], true)
        .await
        .expect_err("unknown pair");
    assert_eq!(code_of(&err), 1004);

    let batch = desk.review(&w.id, &[two, one], true).await.expect("batch");
    assert_eq!(
        ids(&batch.pairs),
        [two.as_str(), one.as_str()],
        "in the order asked"
    );
    let after = batch.workspace.expect("workspace");
    assert_eq!(counts(&after), (3, 2, 2));
    assert_eq!(
        state_of(&after),
        pb::WorkspaceState::Approved,
        "every result approved: the workspace is approved"
    );
    let approved = desk
        .pairs(pb::ListPairsRequest {
            workspace_id: w.id.clone(),
            approved: Some(true),
            ..Default::default()
        })
        .await
        .expect("approved pairs");
    assert_eq!(ids(&approved), [one.as_str(), two.as_str()]);

    let back = desk.review(&w.id, &[two], false).await.expect("un-approve");
    assert!(!back.pairs[0].approved);
    let after = back.workspace.expect("workspace");
    assert_eq!(
        (state_of(&after), counts(&after)),
        (pb::WorkspaceState::Pending, (3, 2, 1))
    );

    // A new result waiting for review takes an approved workspace back to pending.
    desk.review(&w.id, &[two], true).await.expect("again");
    assert_eq!(
        state_of(&desk.get(&w.id).await.expect("get")),
        pb::WorkspaceState::Approved
    );
    let more = desk
        .add(
            &w.id,
            vec![pair(
                &app.sources.url("/3.jpg"),
                "https://cdn.example.com/3.png",
            )],
        )
        .await
        .expect("add a result");
    assert_eq!(
        state_of(more.workspace.as_ref().expect("workspace")),
        pb::WorkspaceState::Pending
    );
}

async fn workspaces_move_through_their_states_and_refuse_the_wrong_moves(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 0).await;
    let desk = Desk::new(&app.studio, &t, "ivy");
    let w = desk.create("SKU-1").await.expect("create");

    let err = desk
        .archive(&w.id)
        .await
        .expect_err("archive an empty workspace");
    assert_eq!(code_of(&err), 1003);
    assert!(message_of(&err).contains("no results yet"), "{err:?}");
    let added = desk
        .add(
            &w.id,
            vec![
                pair(&app.sources.url("/0.jpg"), "https://cdn.example.com/0.png"),
                pair(&app.sources.url("/1.jpg"), "https://cdn.example.com/1.png"),
            ],
        )
        .await
        .expect("add")
        .pairs;
    desk.review(&w.id, &[&added[0].id], true)
        .await
        .expect("approve one");
    let err = desk
        .archive(&w.id)
        .await
        .expect_err("archive a pending workspace");
    assert_eq!(
        (code_of(&err), err.code()),
        (1003, tonic::Code::InvalidArgument)
    );
    assert!(message_of(&err).contains("1 of its 2 results"), "{err:?}");
    let err = desk
        .activate(&w.id)
        .await
        .expect_err("activate a pending workspace");
    assert_eq!(code_of(&err), 1003);
    assert!(message_of(&err).contains("not archived"), "{err:?}");

    desk.review(&w.id, &[&added[1].id], true)
        .await
        .expect("approve the other");
    let err = desk
        .activate(&w.id)
        .await
        .expect_err("activate an approved workspace");
    assert_eq!(code_of(&err), 1003);
    let archived = desk.archive(&w.id).await.expect("archive");
    assert_eq!(state_of(&archived), pb::WorkspaceState::Archived);
    let pairs = desk
        .pairs(pb::ListPairsRequest {
            workspace_id: w.id.clone(),
            archived: Some(true),
            ..Default::default()
        })
        .await
        .expect("archived pairs");
    assert_eq!(
        pairs.len(),
        2,
        "the pairs are archived with their workspace"
    );
    let listed = desk.list(pb::WorkspaceState::Archived).await;
    assert_eq!(
        listed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        [w.id.as_str()]
    );

    let err = desk.archive(&w.id).await.expect_err("archive twice");
    assert_eq!(code_of(&err), 1003);
    assert!(message_of(&err).contains("archived already"), "{err:?}");
    let err = desk
        .add(&w.id, vec![pair(&app.sources.url("/2.jpg"), "")])
        .await
        .expect_err("add to an archived workspace");
    assert_eq!(code_of(&err), 1003);
    assert!(message_of(&err).contains("activate it"), "{err:?}");
    let err = desk
        .review(&w.id, &[&added[0].id], false)
        .await
        .expect_err("review in an archived workspace");
    assert_eq!(code_of(&err), 1003);

    let active = desk.activate(&w.id).await.expect("activate");
    assert_eq!(state_of(&active), pb::WorkspaceState::Pending);
    assert_eq!(counts(&active), (2, 2, 2), "approvals survive the archive");
    let pairs = desk
        .pairs(pb::ListPairsRequest {
            workspace_id: w.id.clone(),
            archived: Some(false),
            ..Default::default()
        })
        .await
        .expect("live pairs");
    assert_eq!(pairs.len(), 2, "the pairs come back with their workspace");
    let err = desk.activate(&w.id).await.expect_err("activate twice");
    assert_eq!(code_of(&err), 1003);
    desk.add(&w.id, vec![pair(&app.sources.url("/2.jpg"), "")])
        .await
        .expect("an active workspace takes pairs again");
}

async fn concurrent_reviews_settle_on_each_other(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 0).await;
    let desk = Desk::new(&app.studio, &t, "ivy");
    let w = desk.create("SKU-1").await.expect("create");
    let pairs: Vec<pb::NewPair> = (0..8)
        .map(|i| {
            pair(
                &app.sources.url(&format!("/{i}.jpg")),
                &format!("https://cdn.example.com/{i}.png"),
            )
        })
        .collect();
    let added = desk.add(&w.id, pairs).await.expect("add").pairs;
    // Each pair approved by its own call, all at once: whichever settles last sees the others.
    let (desk, workspace_id) = (&desk, w.id.as_str());
    let reviews = added
        .iter()
        .map(|p| async move { desk.review(workspace_id, &[p.id.as_str()], true).await });
    for result in futures::future::join_all(reviews).await {
        result.expect("review");
    }
    let after = desk.get(&w.id).await.expect("get");
    assert_eq!(counts(&after), (8, 8, 8));
    assert_eq!(state_of(&after), pb::WorkspaceState::Approved);
}

async fn prompt_groups_keep_their_versions_and_one_is_active(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 0).await;
    let desk = Desk::new(&app.studio, &t, "ivy");

    let v1 = desk
        .save_group(
            "Catalog",
            &[
                ("main", "white background, {product}"),
                ("detail", "close-up of {product}"),
            ],
        )
        .await
        .expect("save v1");
    assert_eq!((v1.version, v1.latest_version, v1.active), (1, 1, false));
    assert_eq!(v1.templates.len(), 2);
    let v2 = desk
        .save_group("Catalog", &[("main", "studio light, {product}")])
        .await
        .expect("save v2");
    assert_eq!((v2.id.as_str(), v2.version), (v1.id.as_str(), 2));

    let old = desk.group(&v1.id, 1).await.expect("version 1");
    assert_eq!(
        old.templates
            .iter()
            .map(|t| (t.name.as_str(), t.text.as_str()))
            .collect::<Vec<_>>(),
        [
            ("main", "white background, {product}"),
            ("detail", "close-up of {product}")
        ],
        "an earlier version stays readable"
    );
    assert_eq!((old.version, old.latest_version), (1, 2));
    let latest = desk.group(&v1.id, 0).await.expect("latest");
    assert_eq!((latest.version, latest.templates.len()), (2, 1));
    let err = desk.group(&v1.id, 3).await.expect_err("no version 3");
    assert_eq!(code_of(&err), 1004);

    let err = desk
        .save_group("Bad", &[("a", "one"), ("a", "two")])
        .await
        .expect_err("a template name twice");
    assert_eq!(code_of(&err), 1003);
    let err = desk
        .save_group("Empty", &[])
        .await
        .expect_err("no templates");
    assert_eq!(code_of(&err), 1003);

    let other = desk
        .save_group("Lifestyle", &[("scene", "on a street, {product}")])
        .await
        .expect("second group");
    let listed = desk.groups().await;
    assert_eq!(
        listed
            .iter()
            .map(|g| (g.name.as_str(), g.version, g.templates.len(), g.active))
            .collect::<Vec<_>>(),
        [("Catalog", 2, 1, false), ("Lifestyle", 1, 1, false)]
    );

    let active = desk.activate_group(&v1.id).await.expect("activate Catalog");
    assert!(active.active);
    desk.activate_group(&other.id)
        .await
        .expect("activate Lifestyle");
    let listed = desk.groups().await;
    let actives: Vec<&str> = listed
        .iter()
        .filter(|g| g.active)
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(actives, ["Lifestyle"], "one active group per account");
    assert_eq!(desk.preferences().await.active_prompt_group_id, other.id);
    assert!(!desk.group(&v1.id, 0).await.expect("Catalog").active);
    let err = desk
        .activate_group("pg_unknown")
        .await
        .expect_err("unknown group");
    assert_eq!(code_of(&err), 1004);
}

async fn preferences_round_trip(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 0).await;
    let desk = Desk::new(&app.studio, &t, "ivy");

    assert_eq!(
        desk.preferences().await,
        pb::Preferences::default(),
        "nothing set yet"
    );
    let settings: HashMap<String, String> = [
        ("background".to_string(), "white".to_string()),
        ("style".to_string(), "studio, soft light".to_string()),
    ]
    .into();
    let set = desk
        .client
        .clone()
        .set_preferences(desk.req(pb::SetPreferencesRequest {
            output_size: "1024x1024".into(),
            model: "flux-dev".into(),
            settings: settings.clone(),
        }))
        .await
        .expect("set")
        .into_inner();
    let read = desk.preferences().await;
    assert_eq!(set, read);
    assert_eq!(
        (
            read.output_size.as_str(),
            read.model.as_str(),
            &read.settings
        ),
        ("1024x1024", "flux-dev", &settings)
    );

    let group = desk
        .save_group("Catalog", &[("main", "{product}")])
        .await
        .expect("group");
    desk.activate_group(&group.id).await.expect("active");
    let changed = desk
        .client
        .clone()
        .set_preferences(desk.req(pb::SetPreferencesRequest {
            output_size: "800x1200".into(),
            model: String::new(),
            settings: HashMap::new(),
        }))
        .await
        .expect("replace")
        .into_inner();
    assert_eq!(
        (
            changed.output_size.as_str(),
            changed.model.as_str(),
            changed.settings.len(),
            changed.active_prompt_group_id.as_str()
        ),
        ("800x1200", "", 0, group.id.as_str()),
        "settings are replaced, the active group is kept"
    );

    let err = desk
        .client
        .clone()
        .set_preferences(desk.req(pb::SetPreferencesRequest {
            output_size: "x".repeat(65),
            model: String::new(),
            settings: [(String::new(), "v".to_string())].into(),
        }))
        .await
        .expect_err("bad preferences");
    assert_eq!(code_of(&err), 1003);
    assert!(
        message_of(&err).contains("output_size") && message_of(&err).contains("settings[]"),
        "{err:?}"
    );
}

async fn other_accounts_and_tenants_see_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    let rival = app.tenant("rival").await;
    app.member(&t, "ivy", 0).await;
    app.member(&t, "max", 0).await;
    app.member(&rival, "ivy", 0).await;
    let ivy = Desk::new(&app.studio, &t, "ivy");
    let w = ivy.create("SKU-1").await.expect("create");
    let added = ivy
        .add(
            &w.id,
            vec![pair(
                &app.sources.url("/0.jpg"),
                "https://cdn.example.com/0.png",
            )],
        )
        .await
        .expect("add")
        .pairs;
    let group = ivy
        .save_group("Catalog", &[("main", "{product}")])
        .await
        .expect("group");

    for other in [
        Desk::new(&app.studio, &t, "max"),
        Desk::new(&app.studio, &rival, "ivy"),
    ] {
        assert_eq!(code_of(&other.get(&w.id).await.expect_err("get")), 1004);
        let err = other
            .add(&w.id, vec![pair(&app.sources.url("/1.jpg"), "")])
            .await
            .expect_err("add");
        assert_eq!(code_of(&err), 1004);
        let err = other
            .pairs(pb::ListPairsRequest {
                workspace_id: w.id.clone(),
                ..Default::default()
            })
            .await
            .expect_err("pairs");
        assert_eq!(code_of(&err), 1004);
        let err = other
            .review(&w.id, &[&added[0].id], true)
            .await
            .expect_err("review");
        assert_eq!(code_of(&err), 1004);
        assert_eq!(
            code_of(&other.archive(&w.id).await.expect_err("archive")),
            1004
        );
        assert_eq!(
            code_of(&other.activate(&w.id).await.expect_err("activate")),
            1004
        );
        assert_eq!(
            code_of(&other.group(&group.id, 0).await.expect_err("group")),
            1004
        );
        assert_eq!(
            code_of(
                &other
                    .activate_group(&group.id)
                    .await
                    .expect_err("activate group")
            ),
            1004
        );
        assert!(other.list(pb::WorkspaceState::Unspecified).await.is_empty());
        assert!(other.groups().await.is_empty());
        // The same SKU is free for another account.
        other.create("SKU-1").await.expect("own SKU-1");
    }
    // A review of ivy's pair inside another workspace of ivy's is a missing pair.
    let w2 = ivy.create("SKU-2").await.expect("second");
    let err = ivy
        .review(&w2.id, &[&added[0].id], true)
        .await
        .expect_err("pair of another workspace");
    assert_eq!(code_of(&err), 1004);
    assert_eq!(ivy.list(pb::WorkspaceState::Unspecified).await.len(), 2);

    let err = app
        .studio
        .clone()
        .list_workspaces(crate::helpers::bearer(
            pb::ListWorkspacesRequest::default(),
            &t.key,
        ))
        .await
        .expect_err("a tenant-wide key without an account");
    assert_eq!(code_of(&err), 1003);
    let err = app
        .studio
        .clone()
        .list_workspaces(crate::helpers::admin(pb::ListWorkspacesRequest::default()))
        .await
        .expect_err("the admin token is not an account");
    assert_eq!(code_of(&err), 1002);
}

/// A finished transform job of `account` over one URL.
async fn transformed(app: &TestApp, t: &Tenant, account: &str, url: &str) -> pb::Job {
    let job = app
        .submit(t, account, transform_job(&[url.to_string()]))
        .await
        .expect("submit");
    let done = app.finish(t, account, &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    done
}

/// Writes a job's first output into a pair, as a studio job does when its task finishes.
async fn give_result(db: &sea_orm::DatabaseConnection, pair_id: &str, job: &pb::Job) -> String {
    let task = &job.tasks[0];
    let key = task.outputs[0].key.clone();
    exec(
        db,
        "UPDATE studio_pairs SET result_key = ?, job_id = ?, task_id = ? WHERE id = ?",
        vec![
            key.clone().into(),
            job.id.clone().into(),
            task.id.clone().into(),
            pair_id.into(),
        ],
    )
    .await;
    key
}

async fn source_key(db: &sea_orm::DatabaseConnection, pair_id: &str) -> String {
    text(
        db,
        "SELECT source_key FROM studio_pairs WHERE id = ?",
        pair_id,
    )
    .await
    .expect("an uploaded source")
}

fn upload_pair(upload_id: &str) -> pb::NewPair {
    pb::NewPair {
        source: Some(upload_source(upload_id)),
        result_url: String::new(),
        metadata: String::new(),
    }
}

async fn deleting_files_removes_the_objects_nothing_else_names(backend: Backend) {
    let app = spawn_app(backend).await;
    let db = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("database");
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 20).await;
    app.member(&t, "max", 0).await;
    let desk = Desk::new(&app.studio, &t, "ivy");

    // Two jobs share their objects through the cache; a third has its own.
    let image = app.sources.url("/image.jpg");
    let shared_job = transformed(&app, &t, "ivy", &image).await;
    let cached = transformed(&app, &t, "ivy", &image).await;
    assert!(cached.tasks[0].from_cache, "{cached:?}");
    let own_job = transformed(&app, &t, "ivy", &app.sources.url("/small-ok.png")).await;

    let first = app.upload(&t, "ivy", images::jpeg()).await.expect("upload");
    let second = app
        .upload(&t, "ivy", images::png(64, 48))
        .await
        .expect("upload");
    let w = desk.create("SKU-DEL").await.expect("create");
    let added = desk
        .add(
            &w.id,
            vec![
                upload_pair(&first.id),
                upload_pair(&second.id),
                pair(&app.sources.url("/0.jpg"), "https://cdn.example.com/0.png"),
            ],
        )
        .await
        .expect("add")
        .pairs;
    let (a, b, c) = (&added[0].id, &added[1].id, &added[2].id);
    let shared_key = give_result(&db, a, &shared_job).await;
    let own_key = give_result(&db, b, &own_job).await;
    let (first_key, second_key) = (source_key(&db, a).await, source_key(&db, b).await);
    assert_ne!(first_key, second_key);
    for key in [&shared_key, &own_key, &first_key, &second_key] {
        assert!(app.storage.exists(key).await.expect("exists"), "{key}");
    }

    // Another account's pair, and this account's pairs through another account, are not found.
    let max = Desk::new(&app.studio, &t, "max");
    let theirs = max.create("SKU-MAX").await.expect("create");
    let their_pair = max
        .add(&theirs.id, vec![pair(&app.sources.url("/1.jpg"), "")])
        .await
        .expect("add")
        .pairs[0]
        .id
        .clone();
    let everything = (true, true, false);
    let err = desk
        .delete_files(&w.id, &[a, &their_pair], everything)
        .await
        .expect_err("not hers");
    assert_eq!(code_of(&err), 1004, "{err:?}");
    let err = max
        .delete_files(&w.id, &[a], everything)
        .await
        .expect_err("not his");
    assert_eq!(code_of(&err), 1004, "{err:?}");
    let err = desk
        .delete_files(&w.id, &[a], (false, false, false))
        .await
        .expect_err("nothing asked");
    assert_eq!(code_of(&err), 1003, "{err:?}");
    assert!(
        app.storage.exists(&first_key).await.expect("exists"),
        "refused calls remove nothing"
    );

    // Sources and results of two pairs: the pairs stay, cleared; the result the cached job still
    // names stays in storage, everything else is gone.
    let done = desk
        .delete_files(&w.id, &[a, b], everything)
        .await
        .expect("delete files");
    assert_eq!(
        (done.objects_deleted, done.objects_kept),
        (3, 1),
        "{done:?}"
    );
    assert!(done.removed_pair_ids.is_empty());
    assert_eq!(ids(&done.pairs), vec![a.as_str(), b.as_str()]);
    for p in &done.pairs {
        assert!(p.result_key.is_empty() && p.job_id.is_empty(), "{p:?}");
        assert_eq!(p.source.as_ref().and_then(|s| s.source.as_ref()), None);
    }
    for key in [&own_key, &first_key, &second_key] {
        assert!(
            !app.storage.exists(key).await.expect("exists"),
            "{key} removed"
        );
    }
    assert!(
        app.storage.exists(&shared_key).await.expect("exists"),
        "the cached job still names it"
    );
    assert_eq!(
        app.finish(&t, "ivy", &cached.id).await.tasks[0].outputs[0].key,
        shared_key
    );

    // remove_pairs takes the pair itself; the others stay.
    let removed = desk
        .delete_files(&w.id, &[c], (false, true, true))
        .await
        .expect("remove pair");
    assert_eq!(removed.removed_pair_ids, vec![c.clone()]);
    assert!(removed.pairs.is_empty());
    let left = desk
        .pairs(pb::ListPairsRequest {
            workspace_id: w.id.clone(),
            ..Default::default()
        })
        .await
        .expect("pairs");
    assert_eq!(ids(&left), vec![a.as_str(), b.as_str()]);
    assert_eq!(
        removed
            .workspace
            .expect("workspace")
            .counts
            .expect("counts")
            .total,
        2
    );

    // An archived workspace keeps its files.
    let kept = desk.create("SKU-ARCHIVED").await.expect("create");
    let kept_pair = desk
        .add(
            &kept.id,
            vec![pair(
                &app.sources.url("/2.jpg"),
                "https://cdn.example.com/2.png",
            )],
        )
        .await
        .expect("add")
        .pairs[0]
        .id
        .clone();
    desk.review(&kept.id, &[&kept_pair], true)
        .await
        .expect("approve");
    desk.archive(&kept.id).await.expect("archive");
    let err = desk
        .delete_files(&kept.id, &[&kept_pair], everything)
        .await
        .expect_err("archived");
    assert_eq!(code_of(&err), 1003, "{err:?}");
    assert!(message_of(&err).contains("archived"), "{err:?}");
    let still = desk
        .pairs(pb::ListPairsRequest {
            workspace_id: kept.id.clone(),
            ..Default::default()
        })
        .await
        .expect("pairs");
    assert_eq!(still[0].result_url, "https://cdn.example.com/2.png");
}

impl Desk {
    async fn run(
        &self,
        workspace_id: &str,
        mode: pb::StudioJobMode,
        pair_id: &str,
        prompt: &str,
    ) -> Result<pb::SubmitStudioJobResponse, tonic::Status> {
        self.client
            .clone()
            .submit_studio_job(self.req(pb::SubmitStudioJobRequest {
                workspace_id: workspace_id.into(),
                mode: mode as i32,
                pair_id: pair_id.into(),
                prompt: prompt.into(),
                idempotency_key: String::new(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn all_pairs(&self, workspace_id: &str) -> Vec<pb::ImagePair> {
        self.pairs(pb::ListPairsRequest {
            workspace_id: workspace_id.into(),
            ..Default::default()
        })
        .await
        .expect("pairs")
    }

    /// An active group of two templates, and preferences naming the fake provider's model and a size.
    async fn house_style(&self) {
        let group = self
            .save_group(
                "house",
                &[
                    ("background", " white background "),
                    ("light", "soft light"),
                ],
            )
            .await
            .expect("save group");
        self.activate_group(&group.id).await.expect("activate");
        self.client
            .clone()
            .set_preferences(self.req(pb::SetPreferencesRequest {
                output_size: "128x128".into(),
                model: MODEL.into(),
                settings: HashMap::new(),
            }))
            .await
            .expect("preferences");
    }
}

const HOUSE_PROMPT: &str = "white background\n\nsoft light";

/// A prompt as the processor sends it to the provider: its whitespace runs made single spaces.
fn sent(prompt: &str) -> String {
    prompt.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn source_pair(url: &str) -> pb::NewPair {
    pair(url, "")
}

/// The edit calls the provider received, as (prompt, model, size).
fn edit_calls(provider: &ProviderServer) -> Vec<(String, String, String)> {
    provider
        .seen()
        .iter()
        .filter(|c| c.path == "/v1/images/edits")
        .map(|c| {
            (
                c.field("prompt").unwrap_or_default(),
                c.field("model").unwrap_or_default(),
                c.field("size").unwrap_or_default(),
            )
        })
        .collect()
}

async fn a_batch_job_fills_every_pair_as_its_tasks_finish(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 20).await;
    let desk = Desk::new(&app.studio, &t, "ivy");
    desk.house_style().await;

    let w = desk.create("SKU-BATCH").await.expect("create");
    let urls = ["/image.jpg", "/small-ok.png"].map(|p| app.sources.url(p));
    let mut new: Vec<pb::NewPair> = urls.iter().map(|u| source_pair(u)).collect();
    // A pair with a result already is not run.
    new.push(pair(
        &app.sources.url("/image.jpg"),
        "https://cdn.example.com/done.png",
    ));
    let added = desk.add(&w.id, new).await.expect("add").pairs;
    let todo: Vec<String> = added[..2].iter().map(|p| p.id.clone()).collect();

    let submitted = desk
        .run(&w.id, pb::StudioJobMode::Batch, "", "")
        .await
        .expect("batch");
    assert_eq!(
        submitted.pair_ids, todo,
        "the pairs without a result, in order"
    );
    assert_eq!(submitted.prompt, HOUSE_PROMPT);
    let job = submitted.job.expect("the job");
    assert_eq!(job.cost, 2, "an ordinary edit job, one unit per source");

    let done = app.finish(&t, "ivy", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    assert_eq!(done.refunded, 0, "{done:?}");
    assert_eq!(
        app.account(&t, "ivy").await.balance,
        20 - 2,
        "charged as any job"
    );
    let pairs = desk.all_pairs(&w.id).await;
    for (i, id) in todo.iter().enumerate() {
        let p = pairs.iter().find(|p| &p.id == id).expect("the pair");
        let task = &done.tasks[i];
        assert_eq!(p.result_key, task.outputs[0].key, "{p:?}");
        assert_eq!(
            (p.job_id.as_str(), p.task_id.as_str()),
            (done.id.as_str(), task.id.as_str())
        );
        assert!(!p.approved);
        // Links: the source as given, the result minted from its key as the job's output is.
        assert_eq!(p.source_link, urls[i]);
        assert!(!p.result_link.is_empty(), "{p:?}");
        assert_eq!(p.result_link, task.outputs[0].url, "{p:?}");
    }
    let given = pairs.iter().find(|p| p.id == added[2].id).expect("given");
    assert_eq!(given.result_link, "https://cdn.example.com/done.png");

    // The job reads back with its workspace, mode and the pair of each task.
    let studio_job = desk
        .client
        .clone()
        .get_studio_job(desk.req(pb::GetStudioJobRequest {
            job_id: job.id.clone(),
        }))
        .await
        .expect("studio job")
        .into_inner();
    assert_eq!(studio_job.pair_ids, todo);
    assert_eq!(studio_job.mode(), pb::StudioJobMode::Batch);
    assert_eq!(studio_job.prompt, HOUSE_PROMPT);
    assert_eq!(studio_job.workspace.expect("workspace").sku, "SKU-BATCH");
    assert_eq!(
        studio_job.job.expect("job").state(),
        pb::JobState::Succeeded
    );
    let plain = transformed(&app, &t, "ivy", &app.sources.url("/image.jpg")).await;
    let err = desk
        .client
        .clone()
        .get_studio_job(desk.req(pb::GetStudioJobRequest { job_id: plain.id }))
        .await
        .expect_err("not a studio job");
    assert_eq!(err.code(), tonic::Code::NotFound);

    let after = desk.get(&w.id).await.expect("get");
    assert_eq!(counts(&after), (3, 3, 0));
    assert_eq!(state_of(&after), pb::WorkspaceState::Pending);

    // The provider got the assembled prompt, the model and the size of the preferences.
    let calls = edit_calls(&provider);
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in &calls {
        assert_eq!(
            call,
            &(sent(HOUSE_PROMPT), MODEL.to_string(), "128x128".to_string())
        );
    }

    // Every result in: approving them all settles the workspace approved.
    let every: Vec<&str> = ids(&pairs);
    let reviewed = desk.review(&w.id, &every, true).await.expect("approve");
    assert_eq!(
        state_of(&reviewed.workspace.expect("workspace")),
        pb::WorkspaceState::Approved
    );
}

async fn a_re_run_keeps_the_earlier_result_in_the_history(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 20).await;
    let desk = Desk::new(&app.studio, &t, "ivy");
    desk.house_style().await;
    let w = desk.create("SKU-RERUN").await.expect("create");
    let added = desk
        .add(
            &w.id,
            vec![pb::NewPair {
                source: Some(url_source(&app.sources.url("/image.jpg"))),
                result_url: String::new(),
                metadata: r#"{"angle":"front"}"#.into(),
            }],
        )
        .await
        .expect("add")
        .pairs;
    let id = added[0].id.clone();

    let first = desk
        .run(&w.id, pb::StudioJobMode::Single, &id, "")
        .await
        .expect("single");
    assert_eq!(first.pair_ids, vec![id.clone()]);
    let first = app.finish(&t, "ivy", &first.job.expect("job").id).await;
    assert_eq!(first.state(), pb::JobState::Succeeded, "{first:?}");
    let before = desk.all_pairs(&w.id).await.remove(0);
    assert_eq!(before.result_key, first.tasks[0].outputs[0].key);
    desk.review(&w.id, &[&id], true).await.expect("approve");

    // A custom re-run of the same pair: the templates, then the prompt given now.
    let second = desk
        .run(
            &w.id,
            pb::StudioJobMode::Custom,
            &id,
            "  make the box blue ",
        )
        .await
        .expect("custom");
    assert_eq!(
        second.prompt,
        format!("{HOUSE_PROMPT}\n\nmake the box blue")
    );
    let second = app.finish(&t, "ivy", &second.job.expect("job").id).await;
    assert_eq!(second.state(), pb::JobState::Succeeded, "{second:?}");
    let prompts: Vec<String> = edit_calls(&provider).into_iter().map(|c| c.0).collect();
    assert_eq!(
        prompts,
        vec![
            sent(HOUSE_PROMPT),
            sent(&format!("{HOUSE_PROMPT}\n\nmake the box blue"))
        ]
    );

    let after = desk.all_pairs(&w.id).await.remove(0);
    assert_eq!(after.result_key, second.tasks[0].outputs[0].key);
    assert_ne!(after.result_key, before.result_key, "a new result");
    assert_eq!(
        (after.job_id.as_str(), after.task_id.as_str()),
        (second.id.as_str(), second.tasks[0].id.as_str())
    );
    assert!(!after.approved, "a new result waits for its review");
    let metadata: serde_json::Value = serde_json::from_str(&after.metadata).expect("json");
    assert_eq!(metadata["angle"], "front", "the pair's own metadata stays");
    let history = metadata["history"].as_array().expect("a history");
    assert_eq!(history.len(), 1, "{metadata}");
    assert_eq!(history[0]["result_key"], before.result_key.as_str());
    assert_eq!(history[0]["job_id"], first.id.as_str());
    assert_eq!(history[0]["task_id"], first.tasks[0].id.as_str());
    assert_eq!(history[0]["approved"], true);
    let w = desk.get(&w.id).await.expect("get");
    assert_eq!(
        state_of(&w),
        pb::WorkspaceState::Pending,
        "the new result is not approved"
    );
}

async fn studio_jobs_are_refused_for_archived_workspaces_and_empty_batches(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 20).await;
    let desk = Desk::new(&app.studio, &t, "ivy");
    desk.house_style().await;
    let w = desk.create("SKU-DONE").await.expect("create");

    // No pairs at all, then only pairs with results: nothing to run.
    let empty = desk
        .run(&w.id, pb::StudioJobMode::Batch, "", "")
        .await
        .expect_err("an empty batch");
    assert_eq!(code_of(&empty), 1003, "{empty:?}");
    let added = desk
        .add(
            &w.id,
            vec![pair(
                &app.sources.url("/image.jpg"),
                "https://cdn.example.com/a.png",
            )],
        )
        .await
        .expect("add")
        .pairs;
    let err = desk
        .run(&w.id, pb::StudioJobMode::Batch, "", "")
        .await
        .expect_err("every pair has a result");
    assert_eq!(code_of(&err), 1003, "{err:?}");
    assert!(
        message_of(&err).contains("no pair without a result"),
        "{err:?}"
    );

    // Archived: refused in every mode, nothing charged, the provider never called.
    desk.review(&w.id, &[&added[0].id], true)
        .await
        .expect("approve");
    desk.archive(&w.id).await.expect("archive");
    for (mode, pair_id, prompt) in [
        (pb::StudioJobMode::Batch, "", ""),
        (pb::StudioJobMode::Single, added[0].id.as_str(), ""),
        (pb::StudioJobMode::Custom, "", "blue"),
    ] {
        let err = desk
            .run(&w.id, mode, pair_id, prompt)
            .await
            .expect_err("archived");
        assert_eq!(code_of(&err), 1003, "{mode:?}: {err:?}");
        assert!(message_of(&err).contains("archived"), "{err:?}");
    }
    // Malformed requests are field errors.
    let err = desk
        .run(&w.id, pb::StudioJobMode::Single, "", "")
        .await
        .expect_err("single without a pair");
    assert_eq!(code_of(&err), 1003);
    assert!(message_of(&err).contains("pair_id") || format!("{err:?}").contains("pair_id"));
    assert_eq!(app.account(&t, "ivy").await.balance, 20);
    assert_eq!(provider.calls(), 0);
}
