//! A deadline for unary calls as a tower layer. Streams (WatchJob, WatchEvents, UploadSource, health
//! watches, reflection) are not cut: they live as long as their caller wants.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use atelier_codes::ErrorCode;
use http::{Request, Response};
use tower::{Layer, Service};

use super::methods;

/// Adds [`Deadline`] around a service.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Cuts unary calls after `limit`.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            limit: self.limit,
        }
    }
}

/// The service [`TimeoutLayer`] makes.
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Deadline<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let streaming = methods::method(request.uri().path()).is_some_and(|m| m.streaming);
        let answer = self.inner.call(request);
        if streaming {
            return Box::pin(answer);
        }
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, answer).await {
                Ok(answered) => answered,
                Err(_) => {
                    tracing::warn!(
                        limit_seconds = limit.as_secs_f64(),
                        "call cut at the request timeout"
                    );
                    Ok(atelier_codes::status(
                        ErrorCode::TimedOut,
                        format!(
                            "the call took longer than the server's limit of {} seconds",
                            limit.as_secs_f64()
                        ),
                    )
                    .into_http())
                }
            }
        })
    }
}
