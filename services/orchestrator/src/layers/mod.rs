//! What every call goes through before its handler, as tower layers on the gRPC server (outermost
//! first): a concurrency limit, the trace context and the call's span ([`trace`]), a deadline for
//! unary calls ([`timeout`]) and authentication ([`auth`]), each reading the method table
//! ([`methods`]). Handlers read what the layers found with [`CallContext`].

pub mod auth;
pub mod methods;
pub mod timeout;
pub mod trace;

use std::time::Duration;

use atelier_telemetry::trace::TraceParent;
use tonic::transport::Server;
use tonic::Request;
use tower::layer::util::{Identity, Stack};
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::auth::{Auth, Caller, FromCaller};
use crate::error::{ApiError, ApiResult};

pub use auth::AuthLayer;
pub use timeout::TimeoutLayer;
pub use trace::TraceLayer;

/// What bounds the calls the server takes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Calls served at once; more wait for a slot.
    pub concurrent: usize,
    /// How long a unary call may take.
    pub timeout: Duration,
}

/// The gRPC server with every layer, outermost first.
pub type LayeredServer = Server<
    Stack<
        AuthLayer,
        Stack<TimeoutLayer, Stack<TraceLayer, Stack<GlobalConcurrencyLimitLayer, Identity>>>,
    >,
>;

/// A server builder whose calls wait for a slot, then run in their span, under their deadline, as
/// their authenticated caller.
pub fn server(auth: Auth, limits: Limits) -> LayeredServer {
    Server::builder()
        .layer(GlobalConcurrencyLimitLayer::new(limits.concurrent))
        .layer(TraceLayer)
        .layer(TimeoutLayer::new(limits.timeout))
        .layer(AuthLayer::new(auth))
}

/// What the layers left in a request for its handler.
pub trait CallContext {
    /// The authenticated caller, as the view the handler needs (`TenantCaller`, `Admin`, `Caller`).
    /// The authentication layer admitted only callers the method allows; a request that reached its
    /// handler without one (no layer, or a method missing from the table) fails closed with 1006.
    fn caller<A: FromCaller>(&self) -> ApiResult<A>;

    /// The caller's trace context, if it sent a valid one.
    fn trace(&self) -> Option<TraceParent>;
}

impl<T> CallContext for Request<T> {
    fn caller<A: FromCaller>(&self) -> ApiResult<A> {
        self.extensions()
            .get::<Caller>()
            .and_then(A::from_caller)
            .ok_or_else(|| {
                ApiError::Internal(format!(
                    "the call reached its handler without a {} caller from the authentication layer",
                    std::any::type_name::<A>()
                ))
            })
    }

    fn trace(&self) -> Option<TraceParent> {
        self.extensions().get::<TraceParent>().copied()
    }
}
