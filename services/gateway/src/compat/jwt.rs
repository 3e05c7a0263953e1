//! How each compatibility family authenticates: the replaced systems' clients send the credential they
//! already have, and the gateway turns it into an Atelier call through a tenant-wide key the operator
//! configured for that family.
//!
//! - **Bearer JWTs** (`Authorization: Bearer <jwt>`), HS256 with the old system's secret and/or RS256
//!   with the keys of a JWKS document (a file, or a URL fetched at start and again, at most every
//!   [`JWKS_REFRESH`], when a token names a key it does not hold). A token whose signature, `alg`,
//!   `exp`, `nbf` (and `iss`/`aud` when configured) check out acts as the account its subject names
//!   (`sub`, else `userId`, `user_id` or `uid`, strings or numbers); anything else is 1001.
//! - **No credential at all**, only on the families whose seed had no authentication (seed 002, the
//!   generator: every route of its document says 认证: 否) and only when the operator names the
//!   account such callers act as (`anonymous_account`). Everywhere else a missing key is 1001.
//!
//! Atelier keys keep working beside tokens, and the `/v1` API never accepts tokens.
//!
//! Configuration: `--compat-jwt-secret` with `--compat-api-key` apply to every family; the JSON file of
//! `--compat-auth` gives a family its own settings instead (see [`FamilyConfig`]):
//!
//! ```json
//! { "task_api":  { "api_key_file": "/run/secrets/shop-key", "jwks_url": "https://id.example.com/jwks.json",
//!                  "issuer": "https://id.example.com", "audience": "tasks" },
//!   "generator": { "api_key_file": "/run/secrets/shop-key", "anonymous_account": "public-site" } }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use atelier_codes::ErrorCode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use crate::error::ApiError;

/// A JWKS URL is fetched again for an unknown key id at most this often.
pub const JWKS_REFRESH: Duration = Duration::from_secs(30);
/// How long fetching a JWKS URL may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Claims that may name the account, in order.
const SUBJECT_CLAIMS: [&str; 4] = ["sub", "userId", "user_id", "uid"];

/// The compatibility families, by the name configuration uses.
pub const FAMILIES: [&str; 4] = ["image_editor", "task_api", "generator", "image_edit"];
/// Families whose seed had routes without authentication.
const OPEN_FAMILIES: [&str; 1] = ["generator"];

/// One family's settings in the `--compat-auth` file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyConfig {
    /// The tenant-wide Atelier key token holders and anonymous callers act through.
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
    /// HS256 secret of the old system's tokens.
    pub hs256_secret: Option<String>,
    pub hs256_secret_file: Option<PathBuf>,
    /// RS256 keys: a JWKS document on disk, or its URL.
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    /// When set, a token's `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, a token's `aud` (a string or a list) must contain it.
    pub audience: Option<String>,
    /// Requests without `Authorization` act as this account (only where the seed had no auth).
    pub anonymous_account: Option<String>,
}

/// How one family's callers are authenticated.
pub struct FamilyAuth {
    family: &'static str,
    /// `Bearer <tenant-wide Atelier key>`.
    pub authorization: String,
    hs256: Option<Vec<u8>>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    anonymous_account: Option<String>,
}

impl std::fmt::Debug for FamilyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FamilyAuth {{ family: {}, .. }}", self.family)
    }
}

/// Every family's authentication, as configured.
#[derive(Clone, Debug, Default)]
pub struct CompatAuth {
    families: HashMap<&'static str, Arc<FamilyAuth>>,
}

impl CompatAuth {
    /// From the flags: `secret` and `api_key` for every family, then the `file`'s families instead.
    pub async fn load(
        secret: Option<&str>,
        api_key: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let default = match (secret, api_key) {
            (Some(secret), Some(key)) if !secret.is_empty() && !key.trim().is_empty() => {
                Some(FamilyConfig {
                    api_key: Some(key.to_string()),
                    hs256_secret: Some(secret.to_string()),
                    ..FamilyConfig::default()
                })
            }
            (None, None) => None,
            _ => bail!(
                "JWTs on the compatibility routes need both --compat-jwt-secret and --compat-api-key"
            ),
        };
        let mut configs: HashMap<String, FamilyConfig> = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{}: a JSON object of families ({}) and their settings",
                        path.display(),
                        FAMILIES.join(", ")
                    )
                })?
            }
            None => HashMap::new(),
        };
        if let Some(unknown) = configs.keys().find(|f| !FAMILIES.contains(&f.as_str())) {
            bail!(
                "--compat-auth names `{unknown}`, which is not a family ({})",
                FAMILIES.join(", ")
            );
        }
        let mut families = HashMap::new();
        for family in FAMILIES {
            let Some(config) = configs.remove(family).or_else(|| default.clone()) else {
                continue;
            };
            let auth = FamilyAuth::build(family, config)
                .await
                .with_context(|| format!("--compat-auth family `{family}`"))?;
            families.insert(family, Arc::new(auth));
        }
        Ok(Self { families })
    }

    /// The settings of `family`, when it has any.
    pub fn family(&self, family: &str) -> Option<Arc<FamilyAuth>> {
        self.families.get(family).cloned()
    }
}

fn secret_of(
    what: &str,
    value: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<Option<String>> {
    match (value, file) {
        (Some(_), Some(_)) => bail!("give `{what}` or `{what}_file`, not both"),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(Some(text.trim().to_string()))
        }
        (None, None) => Ok(None),
    }
    .map(|v| v.filter(|v| !v.trim().is_empty()))
}

impl FamilyAuth {
    async fn build(family: &'static str, c: FamilyConfig) -> anyhow::Result<Self> {
        let api_key = secret_of("api_key", c.api_key, c.api_key_file)?
            .context("`api_key` (or `api_key_file`) is needed: callers act through it")?;
        let hs256 = secret_of("hs256_secret", c.hs256_secret, c.hs256_secret_file)?;
        let jwks = match (c.jwks_file, c.jwks_url) {
            (Some(_), Some(_)) => bail!("give `jwks_file` or `jwks_url`, not both"),
            (Some(path), None) => Some(Jwks::from_file(&path)?),
            (None, Some(url)) => Some(Jwks::from_url(&url).await?),
            (None, None) => None,
        };
        let anonymous_account = c.anonymous_account.filter(|a| !a.trim().is_empty());
        if anonymous_account.is_some() && !OPEN_FAMILIES.contains(&family) {
            bail!(
                "`anonymous_account` is allowed only for {}: this family's seed required authentication",
                OPEN_FAMILIES.join(", ")
            );
        }
        if hs256.is_none() && jwks.is_none() && anonymous_account.is_none() {
            bail!("give `hs256_secret`, `jwks_file`, `jwks_url` or `anonymous_account`");
        }
        Ok(Self {
            family,
            authorization: format!("Bearer {}", api_key.trim()),
            hs256: hs256.map(String::into_bytes),
            jwks,
            issuer: c.issuer,
            audience: c.audience,
            anonymous_account,
        })
    }

    /// An HS256-only family.
    #[cfg(test)]
    fn hs256(family: &'static str, secret: &[u8], api_key: &str) -> Self {
        Self {
            family,
            authorization: format!("Bearer {}", api_key.trim()),
            hs256: Some(secret.to_vec()),
            jwks: None,
            issuer: None,
            audience: None,
            anonymous_account: None,
        }
    }

    /// The account callers without any credential act as, where allowed.
    pub fn anonymous_account(&self) -> Option<&str> {
        self.anonymous_account.as_deref()
    }

    /// Whether `token` looks like a JWT (three dot-separated parts) rather than an Atelier key.
    pub fn is_token(token: &str) -> bool {
        token.split('.').count() == 3 && !token.starts_with("atl_")
    }

    /// The account a valid token names, at `now` (seconds since the epoch).
    pub async fn subject(&self, token: &str, now: i64) -> Result<String, ApiError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("is not a JWT"));
        };
        let head = json(&decode(header)?)?;
        let signed = format!("{header}.{payload}");
        let signature = decode(signature)?;
        match (head["alg"].as_str(), &self.hs256, &self.jwks) {
            (Some("HS256"), Some(secret), _) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret)
                    .map_err(|_| ApiError::internal("the token secret is unusable"))?;
                mac.update(signed.as_bytes());
                mac.verify_slice(&signature)
                    .map_err(|_| refused("has a signature that does not match"))?;
            }
            (Some("RS256"), _, Some(jwks)) => {
                jwks.verify(head["kid"].as_str(), signed.as_bytes(), &signature)
                    .await?;
            }
            (alg, _, _) => {
                return Err(refused(&format!(
                    "is signed with {}, which the {} routes do not accept",
                    alg.unwrap_or("no algorithm"),
                    self.family
                )))
            }
        }
        let claims = json(&decode(payload)?)?;
        if claims["exp"].as_i64().is_some_and(|exp| exp <= now) {
            return Err(refused("has expired"));
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now) {
            return Err(refused("is not valid yet"));
        }
        if let Some(issuer) = &self.issuer {
            if claims["iss"].as_str() != Some(issuer.as_str()) {
                return Err(refused("was issued by someone else"));
            }
        }
        if let Some(audience) = &self.audience {
            let meant = match &claims["aud"] {
                Value::String(a) => a == audience,
                Value::Array(list) => list.iter().any(|a| a.as_str() == Some(audience.as_str())),
                _ => false,
            };
            if !meant {
                return Err(refused("is meant for another audience"));
            }
        }
        SUBJECT_CLAIMS
            .iter()
            .find_map(|claim| match &claims[*claim] {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| refused("names no user (sub, userId, user_id or uid)"))
    }
}

fn refused(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Unauthenticated,
        format!("the bearer token {why}"),
    )
}

fn decode(part: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| refused("is not base64url"))
}

fn json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice::<Value>(bytes).map_err(|_| refused("is not JSON"))
}

/// An RSA public key of a JWKS document.
#[derive(Clone, Debug)]
struct RsaKey {
    kid: Option<String>,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// RS256 verification keys, from a file or a URL.
struct Jwks {
    keys: RwLock<Vec<RsaKey>>,
    url: Option<String>,
    /// When the URL was last fetched.
    fetched: Mutex<Option<Instant>>,
    client: reqwest::Client,
}

impl Jwks {
    fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let keys = parse_jwks(&text).with_context(|| path.display().to_string())?;
        Ok(Self {
            keys: RwLock::new(keys),
            url: None,
            fetched: Mutex::new(None),
            client: reqwest::Client::new(),
        })
    }

    /// Fetches the document once; when the URL does not answer, the gateway starts anyway and
    /// tries again when a token arrives (until then RS256 tokens are refused).
    async fn from_url(url: &str) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("jwks_url `{url}`"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("jwks_url `{url}` must be http(s)");
        }
        let jwks = Self {
            keys: RwLock::new(Vec::new()),
            url: Some(url.to_string()),
            fetched: Mutex::new(None),
            client: reqwest::Client::builder()
                .timeout(JWKS_TIMEOUT)
                .redirect(reqwest::redirect::Policy::limited(3))
                .build()?,
        };
        if let Err(e) = jwks.refresh().await {
            tracing::warn!(url, error = %e, "the JWKS URL did not answer; RS256 tokens wait for it");
        }
        Ok(jwks)
    }

    async fn refresh(&self) -> anyhow::Result<()> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        {
            let mut fetched = self
                .fetched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if fetched.is_some_and(|at| at.elapsed() < JWKS_REFRESH) {
                return Ok(());
            }
            *fetched = Some(Instant::now());
        }
        let response = self.client.get(url).send().await?.error_for_status()?;
        let keys = parse_jwks(&response.text().await?)?;
        tracing::info!(url, keys = keys.len(), "JWKS fetched");
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(())
    }

    fn candidates(&self, kid: Option<&str>) -> Vec<RsaKey> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .cloned()
            .collect()
    }

    async fn verify(
        &self,
        kid: Option<&str>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), ApiError> {
        let mut keys = self.candidates(kid);
        if keys.is_empty() {
            // A rotated key: the document may hold it by now.
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "fetching the JWKS failed");
            }
            keys = self.candidates(kid);
        }
        if keys.is_empty() {
            return Err(refused("names a signing key this gateway does not know"));
        }
        let valid = keys.iter().any(|key| {
            ring::signature::RsaPublicKeyComponents {
                n: key.n.as_slice(),
                e: key.e.as_slice(),
            }
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                message,
                signature,
            )
            .is_ok()
        });
        if valid {
            Ok(())
        } else {
            Err(refused("has a signature that does not match"))
        }
    }
}

/// The RSA signing keys of a JWKS document; other keys (EC, encryption) are skipped.
fn parse_jwks(text: &str) -> anyhow::Result<Vec<RsaKey>> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document =
        serde_json::from_str(text).context("not a JWKS document ({\"keys\": [...]})")?;
    let field = |key: &Value, name: &str| -> anyhow::Result<Vec<u8>> {
        let text = key[name]
            .as_str()
            .with_context(|| format!("an RSA key without `{name}`"))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .with_context(|| format!("`{name}` is not base64url"))
    };
    let mut keys = Vec::new();
    for key in &document.keys {
        let signing = key["use"].as_str().is_none_or(|u| u == "sig")
            && key["alg"].as_str().is_none_or(|a| a == "RS256");
        if key["kty"] != "RSA" || !signing {
            continue;
        }
        keys.push(RsaKey {
            kid: key["kid"].as_str().map(str::to_string),
            n: field(key, "n")?,
            e: field(key, "e")?,
        });
    }
    if keys.is_empty() {
        bail!("the JWKS document holds no RSA signing key");
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HS256 token of `claims` signed with `secret`.
    pub fn token(secret: &[u8], claims: &Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = b64(claims.to_string().as_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", b64(&mac.finalize().into_bytes()))
    }

    #[tokio::test]
    async fn valid_tokens_name_their_user_and_bad_ones_are_1001() {
        let auth = FamilyAuth::hs256("task_api", b"s3cret", "atl_key");
        let now = 1_700_000_000;
        let ok = token(
            b"s3cret",
            &serde_json::json!({"sub": "alice", "exp": now + 60}),
        );
        assert!(FamilyAuth::is_token(&ok));
        assert!(!FamilyAuth::is_token("atl_abc.def.ghi"));
        assert_eq!(auth.subject(&ok, now).await.expect("valid"), "alice");
        let numeric = token(b"s3cret", &serde_json::json!({"userId": 42}));
        assert_eq!(auth.subject(&numeric, now).await.expect("valid"), "42");
        for bad in [
            token(b"other", &serde_json::json!({"sub": "alice"})),
            token(b"s3cret", &serde_json::json!({"sub": "alice", "exp": now})),
            token(
                b"s3cret",
                &serde_json::json!({"sub": "alice", "nbf": now + 10}),
            ),
            token(b"s3cret", &serde_json::json!({"name": "alice"})),
            format!("{}x", ok),
            "a.b.c".to_string(),
        ] {
            let err = auth.subject(&bad, now).await.expect_err("refused");
            assert_eq!(err.code, ErrorCode::Unauthenticated, "{bad}");
        }
        // alg "none" is refused even with an empty signature; so is RS256 where no JWKS is set.
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        for alg in ["none", "RS256"] {
            let forged = format!(
                "{}.{}.",
                b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes()),
                b64(br#"{"sub":"alice"}"#)
            );
            assert!(auth.subject(&forged, now).await.is_err(), "{alg}");
        }
    }

    #[test]
    fn jwks_documents_keep_only_rsa_signing_keys() {
        let text = r#"{"keys": [
            {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "k1", "alg": "RS256", "n": "AQAB", "e": "AQAB"}
        ]}"#;
        let keys = parse_jwks(text).expect("parsed");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("k1"));
        assert!(parse_jwks(r#"{"keys": []}"#).is_err());
        assert!(parse_jwks(r#"{"keys": [{"kty": "RSA", "n": "!!"}]}"#).is_err());
        assert!(parse_jwks("[]").is_err());
    }

    #[tokio::test]
    async fn anonymous_callers_are_only_for_families_whose_seed_had_no_auth() {
        let open = FamilyConfig {
            api_key: Some("atl_key".into()),
            anonymous_account: Some("public".into()),
            ..FamilyConfig::default()
        };
        let built = FamilyAuth::build("generator", open.clone())
            .await
            .expect("generator may be open");
        assert_eq!(built.anonymous_account(), Some("public"));
        let err = FamilyAuth::build("task_api", open)
            .await
            .expect_err("task_api required auth");
        assert!(err.to_string().contains("anonymous_account"), "{err}");
        let keyless = FamilyConfig {
            hs256_secret: Some("s".into()),
            ..FamilyConfig::default()
        };
        assert!(FamilyAuth::build("task_api", keyless).await.is_err());
    }
}
