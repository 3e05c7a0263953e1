//! Objects in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, Garage, s3s-fs).

use std::fmt;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use bytes::{Bytes, BytesMut};

use crate::StorageError;

/// How to reach an S3-compatible store; every field is optional. With the `clap` feature it is the
/// group of `--s3-*` flags (each also an `ATELIER_S3_*` variable) both services flatten into their
/// configuration, so the flags exist once.
#[derive(Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct S3Options {
    /// S3 endpoint URL (R2, MinIO, Garage…); empty uses AWS. For example
    /// `https://<account>.r2.cloudflarestorage.com` or `http://127.0.0.1:9000`.
    #[cfg_attr(
        feature = "clap",
        arg(long = "s3-endpoint", env = "ATELIER_S3_ENDPOINT")
    )]
    pub endpoint: Option<String>,
    /// S3 region (default: AWS_REGION, else `auto` for R2, else us-east-1).
    #[cfg_attr(feature = "clap", arg(long = "s3-region", env = "ATELIER_S3_REGION"))]
    pub region: Option<String>,
    /// Use path-style S3 addresses (`endpoint/bucket/key`): MinIO, Garage, `http://localhost:PORT`.
    #[cfg_attr(
        feature = "clap",
        arg(long = "s3-path-style", env = "ATELIER_S3_PATH_STYLE")
    )]
    pub path_style: bool,
    /// S3 access key id (default: AWS_ACCESS_KEY_ID).
    #[cfg_attr(
        feature = "clap",
        arg(long = "s3-access-key-id", env = "ATELIER_S3_ACCESS_KEY_ID")
    )]
    pub access_key_id: Option<String>,
    /// S3 secret access key (default: AWS_SECRET_ACCESS_KEY).
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "s3-secret-access-key",
            env = "ATELIER_S3_SECRET_ACCESS_KEY",
            hide_env_values = true
        )
    )]
    pub secret_access_key: Option<String>,
    /// Public base URL of the bucket (CDN or public bucket), used to build output URLs:
    /// `public_base_url/key`.
    #[cfg_attr(
        feature = "clap",
        arg(long = "s3-public-base-url", env = "ATELIER_S3_PUBLIC_BASE_URL")
    )]
    pub public_base_url: Option<String>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so that logging the options never prints the secret.
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("public_base_url", &self.public_base_url)
            .finish()
    }
}

/// A bucket, with an optional key prefix, in an S3-compatible store.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Empty, or ends with '/'; prepended to every key.
    prefix: String,
    public_base_url: Option<url::Url>,
}

impl S3Store {
    /// Builds a client for `bucket[/prefix]`; no request is sent until the first operation.
    pub(crate) fn new(
        bucket_and_prefix: &str,
        options: &S3Options,
    ) -> Result<S3Store, StorageError> {
        let (bucket, prefix) = bucket_and_prefix
            .split_once('/')
            .unwrap_or((bucket_and_prefix, ""));
        if bucket.is_empty() {
            return Err(StorageError::Config(
                "S3 location must be s3://bucket[/prefix]".into(),
            ));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            crate::key::validate(prefix)
                .map_err(|err| StorageError::Config(format!("S3 prefix: {err}")))?;
            format!("{prefix}/")
        };

        let endpoint = non_empty(&options.endpoint);
        if let Some(endpoint) = endpoint {
            http_url(endpoint, "S3 endpoint")?;
        }
        let public_base_url = non_empty(&options.public_base_url)
            .map(|base| http_url(base, "public base URL"))
            .transpose()?;

        // Rustls with ring: no OpenSSL and no aws-lc (which needs cmake and a C toolchain).
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http_client)
            .region(Region::new(region(
                options.region.as_deref(),
                endpoint,
                process_env,
            )))
            .credentials_provider(credentials(options, process_env)?)
            .force_path_style(options.path_style)
            // Checksums only where the API requires them: several S3-compatible stores reject or
            // mishandle the streaming trailer checksums the SDK sends by default.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            prefix,
            public_base_url,
        })
    }

    /// Name of the bucket holding the objects.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        let size = data.len();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .content_type(content_type)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|err| backend("put", key, &err))?;
        tracing::debug!(key, bytes = size, bucket = %self.bucket, "stored object in S3");
        Ok(())
    }

    pub(crate) async fn get(&self, key: &str, max_bytes: u64) -> Result<Bytes, StorageError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if is_missing_object(&err) => {
                return Err(StorageError::NotFound(key.to_owned()))
            }
            Err(err) => return Err(backend("get", key, &err)),
        };
        let too_large = || StorageError::TooLarge {
            key: key.to_owned(),
            limit: max_bytes,
        };
        // Refuse on the announced length before reading any of the body.
        let announced = output
            .content_length()
            .and_then(|len| u64::try_from(len).ok());
        if announced.is_some_and(|len| len > max_bytes) {
            return Err(too_large());
        }
        let capacity = announced.unwrap_or(0).min(max_bytes);
        let mut buffer = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
        let mut body = output.body;
        // The length header may be missing or wrong: also cap while streaming.
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| {
                StorageError::Backend(format!("cannot read {key}: {}", DisplayErrorContext(&err)))
            })?;
            let total = u64::try_from(buffer.len() + chunk.len()).unwrap_or(u64::MAX);
            if total > max_bytes {
                return Err(too_large());
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(buffer.freeze())
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if is_missing_object(&err) => Ok(false),
            Err(err) => Err(backend("head", key, &err)),
        }
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
        {
            // S3 answers 204 for missing keys; some compatible stores answer 404.
            Ok(_) => Ok(()),
            Err(err) if is_missing_object(&err) => Ok(()),
            Err(err) => Err(backend("delete", key, &err)),
        }
    }

    pub(crate) fn url(&self, key: &str) -> String {
        let object_key = self.object_key(key);
        if let Some(base) = &self.public_base_url {
            let mut url = base.clone();
            // Percent-encodes each segment; the base's own path is kept. Never fails for the
            // http(s) URLs accepted at open.
            let extended = url
                .path_segments_mut()
                .map(|mut segments| {
                    segments.pop_if_empty().extend(object_key.split('/'));
                })
                .is_ok();
            if extended {
                return url.to_string();
            }
        }
        format!("s3://{}/{object_key}", self.bucket)
    }

    /// Whether `url()` answers public links (a CDN or public bucket in front of the store).
    pub fn has_public_base_url(&self) -> bool {
        self.public_base_url.is_some()
    }

    /// A presigned GET of the object (SigV4 in the query string), valid as `config` says.
    pub(crate) async fn presigned_get(
        &self,
        key: &str,
        config: aws_sdk_s3::presigning::PresigningConfig,
    ) -> Result<String, StorageError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .presigned(config)
            .await
            .map_err(|err| backend("presign", key, &err))?;
        Ok(request.uri().to_owned())
    }

    pub(crate) async fn check(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(err) if status(&err) == Some(404) => Err(StorageError::Backend(format!(
                "bucket {} does not exist",
                self.bucket
            ))),
            Err(err) => Err(backend("check bucket", &self.bucket, &err)),
        }
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn http_url(value: &str, what: &str) -> Result<url::Url, StorageError> {
    let url = url::Url::parse(value)
        .map_err(|err| StorageError::Config(format!("{what} {value:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StorageError::Config(format!(
            "{what} {value:?} must be an http(s) URL"
        )));
    }
    Ok(url)
}

/// A variable of this process's environment, when set to something.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn region(
    configured: Option<&str>,
    endpoint: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> String {
    let from_env = || {
        ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .into_iter()
            .filter_map(&env)
            .find(|value| !value.trim().is_empty())
    };
    let is_r2 = endpoint.is_some_and(|e| e.contains(".r2.cloudflarestorage.com"));
    configured
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .or_else(from_env)
        .unwrap_or_else(|| if is_r2 { "auto" } else { "us-east-1" }.to_owned())
}

/// The flags' credentials, else the standard `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN` variables (the README promises both ways).
fn credentials(
    options: &S3Options,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Credentials, StorageError> {
    let given = (
        non_empty(&options.access_key_id),
        non_empty(&options.secret_access_key),
    );
    match given {
        (Some(id), Some(secret)) => Ok(Credentials::new(id, secret, None, None, "atelier-options")),
        (None, None) => {
            let env = |name: &str| env(name).filter(|v| !v.is_empty());
            match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(secret)) => Ok(Credentials::new(
                    id,
                    secret,
                    env("AWS_SESSION_TOKEN"),
                    None,
                    "atelier-environment",
                )),
                _ => Err(StorageError::Config(
                    "S3 credentials missing: give an access key id and secret access key, or set \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                        .into(),
                )),
            }
        }
        _ => Err(StorageError::Config(
            "S3 access key id and secret access key must be given together".into(),
        )),
    }
}

fn status<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response()
        .map(|response| response.status().as_u16())
}

/// NoSuchKey, NotFound or a bare 404 mean the object is missing; NoSuchBucket does not.
fn is_missing_object<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    let code = err.as_service_error().and_then(|e| e.code());
    match code {
        Some("NoSuchBucket") => false,
        Some("NoSuchKey" | "NotFound") => true,
        _ => status(err) == Some(404),
    }
}

fn backend<E>(action: &str, key: &str, err: &SdkError<E>) -> StorageError
where
    E: std::error::Error + 'static,
{
    StorageError::Backend(format!(
        "cannot {action} {key}: {}",
        DisplayErrorContext(err)
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_credential_types::provider::ProvideCredentials as _;

    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[tokio::test]
    async fn aws_variables_stand_in_for_the_credential_flags() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIDFROMENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret-from-env"),
            ("AWS_SESSION_TOKEN", "session-from-env"),
        ]);
        let found = credentials(&S3Options::default(), &env)
            .expect("the environment's credentials")
            .provide_credentials()
            .await
            .expect("credentials");
        assert_eq!(found.access_key_id(), "AKIDFROMENV");
        assert_eq!(found.secret_access_key(), "secret-from-env");
        assert_eq!(found.session_token(), Some("session-from-env"));

        // Flags win over the environment.
        let flags = S3Options {
            access_key_id: Some("AKIDFLAG".into()),
            secret_access_key: Some("secret-flag".into()),
            ..S3Options::default()
        };
        let found = credentials(&flags, &env)
            .expect("the flags' credentials")
            .provide_credentials()
            .await
            .expect("credentials");
        assert_eq!(found.access_key_id(), "AKIDFLAG");
        assert_eq!(found.session_token(), None);
    }

    #[test]
    fn without_flags_or_variables_the_error_names_both_ways() {
        let only_id = env_of(&[("AWS_ACCESS_KEY_ID", "AKID")]);
        for env in [env_of(&[]), only_id] {
            match credentials(&S3Options::default(), env) {
                Err(StorageError::Config(message)) => {
                    assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
                    assert!(message.contains("access key id"), "{message}");
                }
                other => panic!("expected a configuration error, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_region_comes_from_the_flag_then_aws_region_then_the_endpoint() {
        let env = env_of(&[("AWS_REGION", "eu-west-3")]);
        assert_eq!(region(Some("auto"), None, &env), "auto");
        assert_eq!(region(None, None, &env), "eu-west-3");
        let r2 = Some("https://acct.r2.cloudflarestorage.com");
        assert_eq!(region(None, r2, env_of(&[])), "auto");
        assert_eq!(
            region(None, None, env_of(&[("AWS_DEFAULT_REGION", "ap-south-1")])),
            "ap-south-1"
        );
        assert_eq!(region(None, None, env_of(&[])), "us-east-1");
    }
}
