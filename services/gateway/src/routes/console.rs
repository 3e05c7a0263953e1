//! `/console`: the web console, one page with its script and stylesheet compiled into the binary (no
//! CDN, no build step). The page signs in with an API key and an account kept in the tab's session
//! storage and calls this gateway's own routes: seed 003's `/api/image-studio/*` for workspaces,
//! pairs, prompt groups, studio jobs, review and archive, and `/v1` for the account, its ledger, the
//! models and each job's event stream. Every answer carries a strict Content-Security-Policy: scripts
//! and styles from the gateway only (no inline script), requests to the gateway only, images also from
//! `data:` and http(s) links (result links may be presigned storage URLs).

use std::sync::OnceLock;

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

/// The policy of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: http: https:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes; they need no key (the page asks for one).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
}

async fn index(headers: HeaderMap) -> Response {
    asset(
        &headers,
        "text/html; charset=utf-8",
        INDEX,
        etags().0.as_str(),
    )
}

async fn script(headers: HeaderMap) -> Response {
    asset(
        &headers,
        "text/javascript; charset=utf-8",
        SCRIPT,
        etags().1.as_str(),
    )
}

async fn style(headers: HeaderMap) -> Response {
    asset(
        &headers,
        "text/css; charset=utf-8",
        STYLE,
        etags().2.as_str(),
    )
}

/// Strong validators of the three assets, so `no-cache` revalidates with a 304 instead of a download.
fn etags() -> &'static (String, String, String) {
    static TAGS: OnceLock<(String, String, String)> = OnceLock::new();
    TAGS.get_or_init(|| {
        let tag = |body: &str| {
            let digest = Sha256::digest(body.as_bytes());
            format!("\"{}\"", hex::encode(&digest[..12]))
        };
        (tag(INDEX), tag(SCRIPT), tag(STYLE))
    })
}

fn asset(
    request: &HeaderMap,
    content_type: &'static str,
    body: &'static str,
    etag: &str,
) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/") == etag
        });
    if fresh {
        headers.remove(header::CONTENT_TYPE);
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets_and_has_no_inline_script_or_style() {
        assert!(INDEX.contains(r#"<script src="/console/app.js" defer></script>"#));
        assert!(INDEX.contains(r#"<link rel="stylesheet" href="/console/app.css">"#));
        // Every script element has a src; no handler attributes, no style attributes.
        assert_eq!(INDEX.matches("<script").count(), 1);
        for banned in [
            " onclick=",
            " onload=",
            " onerror=",
            " style=",
            "javascript:",
        ] {
            assert!(!INDEX.contains(banned), "index.html contains {banned}");
        }
        for asset in [INDEX, SCRIPT, STYLE] {
            assert!(!asset.contains("//cdn"), "an asset names a CDN");
            assert!(
                !asset.contains("@import url(http"),
                "a stylesheet imports from elsewhere"
            );
        }
        // Nothing the servers answer is ever parsed as HTML.
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(banned), "app.js uses {banned}");
        }
    }

    #[test]
    fn validators_differ_per_asset_and_match_if_none_match() {
        let (a, b, c) = etags();
        assert_ne!(a, b);
        assert_ne!(b, c);
        let mut request = HeaderMap::new();
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"other\", {b}")).expect("ascii"),
        );
        let answer = asset(&request, "text/javascript; charset=utf-8", SCRIPT, b);
        assert_eq!(answer.status(), StatusCode::NOT_MODIFIED);
        let answer = asset(&request, "text/css; charset=utf-8", STYLE, c);
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            answer.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
    }
}
