//! The replaced systems' bearer JWTs on the compatibility routes: a client sends the token it already
//! has, the gateway acts for the user the token names through the configured tenant-wide key.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use atelier_testkit::provider::ProviderServer;

use crate::helpers::{spawn_app, spawn_with_provider, status_and_json, Backend, MODEL};
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

/// A test-only RSA key (PKCS#1 DER), made for this suite.
const RSA_KEY: &[u8] = include_bytes!("../fixtures/jwt-rs256-test-key.der");

/// An RS256 token of `claims`, with key id `kid`.
fn rs256_token(kid: &str, claims: &Value) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let pair = ring::signature::RsaKeyPair::from_der(RSA_KEY).expect("test key");
    let head = b64(json!({"alg": "RS256", "typ": "JWT", "kid": kid})
        .to_string()
        .as_bytes());
    let body = b64(claims.to_string().as_bytes());
    let signed = format!("{head}.{body}");
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .expect("signed");
    format!("{signed}.{}", b64(&signature))
}

/// The JWKS document of the test key, as an identity provider publishes it.
fn jwks(kid: &str) -> Value {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let pair = ring::signature::RsaKeyPair::from_der(RSA_KEY).expect("test key");
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AA", "y": "AA"},
        {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": b64(&public.n), "e": b64(&public.e)}
    ]})
}

/// Serves `document` at `/.well-known/jwks.json` on 127.0.0.1 until the test ends.
async fn jwks_server(document: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/.well-known/jwks.json")
}

on_both_databases!(each_family_takes_its_own_tokens_and_only_the_open_seed_takes_none);

async fn each_family_takes_its_own_tokens_and_only_the_open_seed_takes_none(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let shop = app.shop().await;
    let jwks_url = jwks_server(jwks("key-2026")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("shop-key");
    std::fs::write(&key_file, format!("{}\n", shop.key)).expect("key file");
    let settings = json!({
        // Seed 001's users hold RS256 tokens of an identity provider.
        "task_api": {"api_key_file": key_file, "jwks_url": jwks_url,
                     "issuer": "https://id.shop.test", "audience": "tasks"},
        // Seed 000's keep their HS256 tokens.
        "image_editor": {"api_key": shop.key, "hs256_secret": "editor-secret"},
        // Seed 002 had no authentication: its site's visitors act as one account.
        "generator": {"api_key": shop.key, "anonymous_account": "public-site"},
    });
    let file = dir.path().join("compat-auth.json");
    std::fs::write(&file, settings.to_string()).expect("settings");
    let mut config = atelier_gateway::Config::new(app.orchestrator.url());
    config.compat_auth = Some(file);
    let gateway = atelier_gateway::spawn(config).await.expect("gateway");
    let url = |path: &str| format!("{}{path}", gateway.url());
    let exp = chrono::Utc::now().timestamp() + 600;
    let claims =
        json!({"sub": "carol", "exp": exp, "iss": "https://id.shop.test", "aud": ["tasks", "web"]});
    let get = |path: &str, token: Option<&str>| {
        let mut request = app.http.get(url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { status_and_json(request.send().await.expect("sent")).await }
    };

    // An RS256 token of the provider's current key reads carol's tasks on seed 001's routes.
    let carol = rs256_token("key-2026", &claims);
    let (status, body) = get("/api/task/list", Some(&carol)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["data"]["total"], 0, "{body}");
    // A key the document does not hold, another issuer, another audience: refused with 4003.
    for bad in [
        rs256_token("key-2019", &claims),
        rs256_token(
            "key-2026",
            &json!({"sub": "carol", "exp": exp, "iss": "https://evil.test", "aud": "tasks"}),
        ),
        rs256_token(
            "key-2026",
            &json!({"sub": "carol", "exp": exp, "iss": "https://id.shop.test", "aud": "billing"}),
        ),
        token(b"editor-secret", &claims),
    ] {
        let (status, body) = get("/api/task/list", Some(&bad)).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["code"], 4003, "{body}");
    }
    // Seed 000's family takes its HS256 tokens and not the RS256 ones of seed 001.
    let editor = |token: String| {
        app.http
            .post(url("/result/"))
            .bearer_auth(token)
            .json(&json!({"task_id": "0190f3a4-7d1e-7000-8000-000000000000"}))
            .send()
    };
    let (status, body) = status_and_json(
        editor(token(b"editor-secret", &json!({"sub": "carol"})))
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(1004)), "{body}");
    let (status, body) = status_and_json(
        editor(rs256_token("key-2026", &claims))
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(1002)), "{body}");

    // Seed 002's routes had no authentication: without a key they act as the configured account…
    app.member(&shop, "public-site", 3).await;
    let (status, body) = get("/api/v1/tasks", None).await;
    assert_eq!(status, 200, "{body}");
    let generated = app
        .http
        .post(url("/api/v1/generate"))
        .json(&json!({"prompt": "a red chair", "model": MODEL, "num_images": 1}))
        .send()
        .await
        .expect("generate");
    let (status, body) = status_and_json(generated).await;
    assert_eq!(status, 201, "{body}");
    let task_id = body["task_id"].as_str().expect("task_id").to_string();
    let job = app
        .http
        .get(app.url(&format!("/v1/jobs/{task_id}")))
        .bearer_auth(&shop.key)
        .header("x-atelier-account", "public-site")
        .send()
        .await
        .expect("job");
    let (status, job) = status_and_json(job).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["account"], "public-site", "{job}");
    // …while every family whose seed required authentication still refuses keyless callers.
    let (status, body) = get("/api/task/list", None).await;
    assert_eq!((status, body["code"].as_u64()), (401, Some(4003)), "{body}");
    let keyless = app
        .http
        .post(url("/result/"))
        .json(&json!({"task_id": "0190f3a4-7d1e-7000-8000-000000000000"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(keyless.status(), 401);
}
