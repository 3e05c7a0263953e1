//! The one error type of the compatibility families: [`CompatError`], an HTTP status and the family's
//! documented error body. [`ErrorShape`], implemented by each body, says how that family writes an
//! Atelier failure (the body, the status, any extra headers). The conversions every handler needs
//! (from an [`ApiError`], a gRPC status, and the rejections of the extractors [`crate::extract`]
//! declares, with the 1003 messages of `/v1`) and the answer itself are written once here.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::error::ApiError;

/// A family's error body: how it writes a failure.
pub trait ErrorShape: Serialize + Sized {
    /// The body and status this family answers `err` with.
    fn from_api(err: ApiError) -> CompatError<Self>;

    /// Headers the answer carries beside the body; none unless the family says so.
    fn headers(&self, _headers: &mut HeaderMap) {}
}

/// A failure of a compatibility route, answered with the family's body `B`.
#[derive(Debug)]
pub struct CompatError<B> {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body; boxed so a handler's `Result` stays small whatever the family's shape.
    pub body: Box<B>,
}

impl<B> CompatError<B> {
    /// An answer with this status and body.
    pub fn new(status: StatusCode, body: B) -> Self {
        Self {
            status,
            body: Box::new(body),
        }
    }
}

impl<B: ErrorShape> From<ApiError> for CompatError<B> {
    fn from(err: ApiError) -> Self {
        B::from_api(err)
    }
}

impl<B: ErrorShape> From<tonic::Status> for CompatError<B> {
    fn from(status: tonic::Status) -> Self {
        Self::from(ApiError::from(status))
    }
}

impl<B: ErrorShape> From<JsonRejection> for CompatError<B> {
    fn from(rejection: JsonRejection) -> Self {
        Self::from(ApiError::from(rejection))
    }
}

impl<B: ErrorShape> From<QueryRejection> for CompatError<B> {
    fn from(rejection: QueryRejection) -> Self {
        Self::from(ApiError::from(rejection))
    }
}

impl<B: ErrorShape> From<PathRejection> for CompatError<B> {
    fn from(rejection: PathRejection) -> Self {
        Self::from(ApiError::from(rejection))
    }
}

impl<B: ErrorShape> IntoResponse for CompatError<B> {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(&self.body)).into_response();
        self.body.headers(response.headers_mut());
        response
    }
}
