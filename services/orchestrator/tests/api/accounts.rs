//! AccountService administration.

use atelier_proto::v1 as pb;

use crate::helpers::{admin, as_account, code_of, spawn_app, Backend};
use crate::on_both_databases;

on_both_databases!(grants_are_idempotent_and_membership_can_expire);

async fn grants_are_idempotent_and_membership_can_expire(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "ivy", 0).await;
    let grant = pb::GrantQuotaRequest {
        tenant_id: t.id.clone(),
        account: "ivy".into(),
        amount: 7,
        reason: "monthly plan".into(),
        idempotency_key: "2026-11".into(),
    };
    let mut accounts = app.accounts.clone();
    accounts
        .grant_quota(admin(grant.clone()))
        .await
        .expect("grant");
    let again = accounts
        .grant_quota(admin(grant.clone()))
        .await
        .expect("same grant")
        .into_inner();
    assert_eq!(again.balance, 7, "a grant with the same key is booked once");
    let err = accounts
        .grant_quota(admin(pb::GrantQuotaRequest {
            amount: -3,
            ..grant.clone()
        }))
        .await
        .expect_err("negative");
    assert_eq!(code_of(&err), 1003);
    let err = accounts
        .grant_quota(admin(pb::GrantQuotaRequest {
            account: "nobody".into(),
            ..grant
        }))
        .await
        .expect_err("unknown");
    assert_eq!(code_of(&err), 1004);

    let past = prost_types::Timestamp {
        seconds: 1_000_000_000,
        nanos: 0,
    };
    accounts
        .set_membership(admin(pb::SetMembershipRequest {
            tenant_id: t.id.clone(),
            account: "ivy".into(),
            active: true,
            expires_at: Some(past),
        }))
        .await
        .expect("membership");
    let err = app
        .submit(
            &t,
            "ivy",
            crate::helpers::transform_job(&[app.sources.url("/image.jpg")]),
        )
        .await
        .expect_err("expired");
    assert_eq!(code_of(&err), 2001);
    let seen = accounts
        .get_account(as_account(pb::GetAccountRequest::default(), &t.key, "ivy"))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (seen.balance, seen.member, seen.external_id.as_str()),
        (7, false, "ivy"),
        "an expired membership is shown as none"
    );
    assert!(seen.membership_expires_at.is_some());
}
