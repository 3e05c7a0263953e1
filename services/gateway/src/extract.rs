//! Extractors whose rejections answer in the caller's error format: `/v1` JSON errors here, the
//! compatibility families' own shapes through `extractors!` in each family's module.
//!
//! A malformed body, query string or path is a 1003 (400); the messages are the `From` rejections
//! below, so every format says the same thing.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};

use crate::error::ApiError;

/// Declares `JsonBody<T>`, `QueryParams<T>` and `PathParam<T>`, derived from axum's `Json`, `Query`
/// and `Path`, whose rejections are `$error` (which converts from each rejection). The derive takes one
/// concrete rejection type, so each error format declares its own three.
macro_rules! extractors {
    ($error:ident) => {
        /// A JSON body; a malformed one is a 1003 (400) in this error format.
        #[derive(axum::extract::FromRequest)]
        #[from_request(via(axum::Json), rejection($error))]
        pub struct JsonBody<T>(pub T);

        /// A query string; a malformed one is a 1003 (400) in this error format.
        #[derive(axum::extract::FromRequestParts)]
        #[from_request(via(axum::extract::Query), rejection($error))]
        pub struct QueryParams<T>(pub T);

        /// A path segment; one that does not decode is a 1003 (400) in this error format.
        #[derive(axum::extract::FromRequestParts)]
        #[from_request(via(axum::extract::Path), rejection($error))]
        pub struct PathParam<T>(pub T);
    };
}
pub(crate) use extractors;

extractors!(ApiError);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "send the body as JSON with `Content-Type: application/json`".to_string()
            }
            JsonRejection::BytesRejection(_) => format!(
                "the request body could not be read: {}",
                rejection.body_text()
            ),
            _ => format!(
                "the body is not valid JSON for this call: {}",
                rejection.body_text()
            ),
        };
        Self::bad_request(message)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(format!("bad query string: {}", rejection.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(format!("bad path: {}", rejection.body_text()))
    }
}
