//! Authentication as a tower layer: resolves the caller once, checks it against what the method needs
//! ([`super::methods`]), answers refusals itself and leaves the admitted [`Caller`] in the request's
//! extensions.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use super::methods::{self, Access};
use crate::auth::{Auth, Caller, ADMIN_IS_NO_TENANT};
use crate::error::ApiResult;

/// Adds [`Authenticate`] around the server's routes.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Auth,
}

impl AuthLayer {
    /// Authenticates with `auth`.
    pub fn new(auth: Auth) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    auth: Auth,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authenticate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone that was made ready serves this request; the fresh one waits for the next.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let auth = self.auth.clone();
        let access = methods::method(request.uri().path()).map(|m| m.access);
        Box::pin(async move {
            match admit(&auth, access, request.headers()).await {
                Ok(Some(caller)) => {
                    request.extensions_mut().insert(caller);
                }
                Ok(None) => {}
                Err(refused) => return Ok(Status::from(refused).into_http()),
            }
            inner.call(request).await
        })
    }
}

/// The caller a method with `access` admits, resolved from `headers`; `None` for public methods and
/// paths the server does not have (their handlers, if any, find no caller and fail closed).
async fn admit(
    auth: &Auth,
    access: Option<Access>,
    headers: &HeaderMap,
) -> ApiResult<Option<Caller>> {
    let access = match access {
        None | Some(Access::Public) => return Ok(None),
        Some(access) => access,
    };
    let caller = auth.caller(headers).await?;
    let admitted = match access {
        Access::Public | Access::AdminOrTenant => caller,
        Access::Tenant { admin_refused } => Caller::Tenant(caller.tenant(admin_refused)?),
        Access::Admin => {
            caller.admin()?;
            Caller::Admin
        }
        Access::Worker => {
            let tenant = caller.tenant(ADMIN_IS_NO_TENANT)?;
            auth.service(headers)?;
            Caller::Tenant(tenant)
        }
    };
    Ok(Some(admitted))
}
