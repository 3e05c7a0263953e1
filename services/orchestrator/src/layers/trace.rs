//! Trace context as a tower layer: the caller's W3C `traceparent`, parsed once, goes into the
//! request's extensions, and the call runs in a span carrying its method and trace id.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use atelier_telemetry::trace::{TraceParent, TRACEPARENT};
use http::Request;
use tower::{Layer, Service};
use tracing::Instrument as _;

/// Adds [`Traced`] around a service.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced { inner }
    }
}

/// The service [`TraceLayer`] makes.
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
}

impl<S, ReqBody> Service<Request<ReqBody>> for Traced<S>
where
    S: Service<Request<ReqBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let trace = request
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        let span = tracing::info_span!(
            "grpc",
            method = %request.uri().path(),
            trace_id = tracing::field::Empty,
        );
        if let Some(trace) = trace {
            span.record("trace_id", trace.trace_id());
            request.extensions_mut().insert(trace);
        }
        Box::pin(self.inner.call(request).instrument(span))
    }
}
