//! The replaced systems' bearer JWTs on the compatibility routes: a client sends the token it already
//! has, the gateway acts for the user the token names through the configured tenant-wide key.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{spawn_app, status_and_json, Backend};
use crate::on_both_databases;

const SECRET: &[u8] = b"the-old-systems-jwt-secret";

/// An HS256 token of `claims` signed with `secret`.
fn token(secret: &[u8], claims: &Value) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64(claims.to_string().as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64(&mac.finalize().into_bytes()))
}

on_both_databases!(a_valid_token_acts_as_its_user_and_a_bad_one_is_refused);

async fn a_valid_token_acts_as_its_user_and_a_bad_one_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    app.member(&shop, "bob", 5).await;
    // A gateway configured with the old secret and the shop's tenant-wide key.
    let mut config = atelier_gateway::Config::new(app.orchestrator.url());
    config.compat_jwt_secret = Some(String::from_utf8(SECRET.to_vec()).expect("utf-8"));
    config.compat_api_key = Some(shop.key.clone());
    let gateway = atelier_gateway::spawn(config).await.expect("gateway");
    let url = |path: &str| format!("{}{path}", gateway.url());
    let exp = chrono::Utc::now().timestamp() + 600;
    let shopper = token(SECRET, &json!({"sub": "shopper", "exp": exp}));

    // Seed 001's create and get, exactly as its clients send them, with their token.
    let image = app.sources.url("/image.jpg");
    let created = app
        .http
        .post(url("/api/task/create"))
        .bearer_auth(&shopper)
        .json(&json!({"type": "basic_clean", "inputImageUrl": image, "params": {"template": "white_bg"}}))
        .send()
        .await
        .expect("create");
    let (status, created) = status_and_json(created).await;
    assert_eq!(status, 200, "{created}");
    let task_id = created["data"]["taskId"]
        .as_str()
        .expect("taskId")
        .to_string();
    app.finish(&shop, &task_id).await;
    // The job is the shopper's: visible to the shopper, charged to the shopper.
    let (_, job) = app.get_json(&shop, &format!("/v1/jobs/{task_id}")).await;
    assert_eq!(job["account"], "shopper", "{job}");
    let (_, account) = app.get_json(&shop, "/v1/account").await;
    assert_eq!(account["balance"], 99, "{account}");

    // Another user's token sees only that user's tasks (a number subject, as `userId`).
    let bob = token(SECRET, &json!({"userId": "bob"}));
    let listed = app
        .http
        .get(url("/api/task/list"))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("list");
    let (status, listed) = status_and_json(listed).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["success"], true, "{listed}");
    let shopper_list = app
        .http
        .get(url("/api/task/list"))
        .bearer_auth(&shopper)
        .send()
        .await
        .expect("list");
    let (_, shopper_list) = status_and_json(shopper_list).await;
    assert_ne!(
        listed["data"], shopper_list["data"],
        "{listed} {shopper_list}"
    );
    assert!(
        shopper_list.to_string().contains(&task_id),
        "{shopper_list}"
    );
    assert!(!listed.to_string().contains(&task_id), "{listed}");

    // Forged, expired and subject-less tokens are the family's authentication error.
    for bad in [
        token(b"another-secret", &json!({"sub": "shopper"})),
        token(SECRET, &json!({"sub": "shopper", "exp": exp - 3600})),
        token(SECRET, &json!({"name": "shopper"})),
    ] {
        let refused = app
            .http
            .get(url(&format!("/api/task/{task_id}")))
            .bearer_auth(&bad)
            .send()
            .await
            .expect("get");
        let (status, body) = status_and_json(refused).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["success"], false, "{body}");
    }
    // The /v1 API takes Atelier keys only.
    let v1 = app
        .http
        .get(url("/v1/account"))
        .bearer_auth(&shopper)
        .send()
        .await
        .expect("account");
    let (status, body) = status_and_json(v1).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], 1001);
    // Keys keep working on the compatibility routes beside tokens.
    let keyed = app
        .http
        .get(url("/api/task/list"))
        .bearer_auth(&shop.key)
        .header("x-atelier-account", "shopper")
        .send()
        .await
        .expect("list");
    assert_eq!(keyed.status(), 200);
}
