//! One connection to the orchestrator and the credentials each call carries.

use std::time::Duration;

use anyhow::Context as _;
use atelier_proto::v1::account_service_client::AccountServiceClient;
use atelier_proto::v1::job_service_client::JobServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use crate::args::Global;
use crate::error::UsageError;

/// Largest message accepted from the server (a job of 100 tasks with outputs stays far below).
const MAX_MESSAGE: usize = 16 << 20;

/// `http://` is assumed when the address has no scheme.
pub fn normalize_endpoint(endpoint: &str) -> String {
    let endpoint = endpoint.trim();
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// An endpoint for `address`, with connect and call timeouts suited to a command line.
pub fn endpoint(address: &str, connect_timeout: Duration) -> Result<Endpoint, UsageError> {
    Endpoint::from_shared(normalize_endpoint(address))
        .map(|e| e.connect_timeout(connect_timeout).tcp_nodelay(true))
        .map_err(|e| {
            UsageError(format!(
                "--endpoint `{address}` is not a usable address: {e}"
            ))
        })
}

/// The orchestrator, as the caller configured it.
#[derive(Clone, Debug)]
pub struct Api {
    channel: Channel,
    key: Option<String>,
    account: Option<String>,
    admin_token: Option<String>,
}

impl Api {
    /// Connects to `--endpoint`.
    pub async fn connect(global: &Global) -> anyhow::Result<Self> {
        let address = normalize_endpoint(&global.endpoint);
        let channel = endpoint(&address, Duration::from_secs(5))?
            .connect()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the orchestrator at {address}; is it running? (`atelier health`)"
                )
            })?;
        Ok(Self {
            channel,
            key: non_empty(global.key.as_deref()),
            account: non_empty(global.account.as_deref()),
            admin_token: non_empty(global.admin_token.as_deref()),
        })
    }

    /// The JobService client.
    pub fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// The AccountService client.
    pub fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// A call of the tenant key, acting as `--account` when one is given.
    pub fn call<T>(&self, message: T) -> Result<Request<T>, UsageError> {
        let key = self
            .key
            .as_deref()
            .ok_or_else(|| UsageError("no API key: pass --key or set ATELIER_API_KEY".into()))?;
        let mut request = with_bearer(message, key, "--key")?;
        if let Some(account) = &self.account {
            let value = MetadataValue::try_from(account.as_str()).map_err(|_| {
                UsageError(format!("--account `{account}` must be printable ASCII"))
            })?;
            request.metadata_mut().insert("x-atelier-account", value);
        }
        Ok(request)
    }

    /// A call with the admin token.
    pub fn admin_call<T>(&self, message: T) -> Result<Request<T>, UsageError> {
        let token = self.admin_token.as_deref().ok_or_else(|| {
            UsageError("no admin token: pass --admin-token or set ATELIER_ADMIN_TOKEN".into())
        })?;
        with_bearer(message, token, "--admin-token")
    }

    /// The `--account` value, for admin calls that name an account in the request.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }
}

fn with_bearer<T>(message: T, token: &str, flag: &str) -> Result<Request<T>, UsageError> {
    let value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| UsageError(format!("{flag} must be printable ASCII")))?;
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_without_a_scheme_get_http() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:50051"),
            "http://127.0.0.1:50051"
        );
        assert_eq!(normalize_endpoint(" http://h:1 "), "http://h:1");
        assert!(endpoint("http://bad host", Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn bearer_and_account_metadata_are_set() {
        let channel = Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let api = Api {
            channel,
            key: Some("atl_k".into()),
            account: Some("shopper".into()),
            admin_token: None,
        };
        let request = api.call(()).expect("request");
        assert_eq!(
            request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer atl_k")
        );
        assert_eq!(
            request
                .metadata()
                .get("x-atelier-account")
                .and_then(|v| v.to_str().ok()),
            Some("shopper")
        );
        assert!(api.admin_call(()).is_err(), "no admin token configured");
        let bad = Api {
            key: Some("bad\nkey".into()),
            ..api
        };
        assert!(bad.call(()).is_err());
    }
}
