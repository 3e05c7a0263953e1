//! The same behaviour checked on both backends: a temporary local folder and a real s3s-fs server.

use atelier_storage::testing::S3Server;
use atelier_storage::{S3Options, Storage, StorageError};
use bytes::Bytes;

async fn local(dir: &tempfile::TempDir) -> Storage {
    Storage::open(
        dir.path().to_str().expect("utf-8 temp path"),
        &S3Options::default(),
    )
    .await
    .expect("open local storage")
}

async fn s3(server: &S3Server) -> Storage {
    Storage::open(&server.location(), &server.options())
        .await
        .expect("open s3 storage")
}

async fn round_trip(storage: &Storage) {
    let key = "jobs/0190/image.jpg";
    let data = Bytes::from_static(b"\xff\xd8\xff not really a jpeg");
    assert!(!storage.exists(key).await.expect("exists before put"));

    storage
        .put(key, data.clone(), "image/jpeg")
        .await
        .expect("put");
    assert!(storage.exists(key).await.expect("exists after put"));
    assert_eq!(storage.get(key, 1024).await.expect("get"), data);
    // Exactly at the limit is allowed.
    let len = u64::try_from(data.len()).expect("small length");
    assert_eq!(storage.get(key, len).await.expect("get at limit"), data);

    let replacement = Bytes::from_static(b"second version");
    storage
        .put(key, replacement.clone(), "image/jpeg")
        .await
        .expect("overwrite");
    assert_eq!(
        storage.get(key, 1024).await.expect("get overwritten"),
        replacement
    );

    storage.delete(key).await.expect("delete");
    assert!(!storage.exists(key).await.expect("exists after delete"));
    storage
        .delete(key)
        .await
        .expect("deleting a missing key succeeds");
    storage.check().await.expect("check");
}

async fn too_large(storage: &Storage) {
    let key = "big/object.bin";
    storage
        .put(
            key,
            Bytes::from(vec![7u8; 10_000]),
            "application/octet-stream",
        )
        .await
        .expect("put");
    match storage.get(key, 9_999).await {
        Err(StorageError::TooLarge { key: k, limit }) => {
            assert_eq!(k, key);
            assert_eq!(limit, 9_999);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

async fn missing(storage: &Storage) {
    match storage.get("no/such/object.png", 1024).await {
        Err(StorageError::NotFound(key)) => assert_eq!(key, "no/such/object.png"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!storage.exists("no/such/object.png").await.expect("exists"));
}

async fn invalid_keys(storage: &Storage) {
    for key in ["../x", "/abs", "a//b", "", "a/../../etc/passwd"] {
        let data = Bytes::from_static(b"x");
        assert!(
            matches!(
                storage.put(key, data, "text/plain").await,
                Err(StorageError::InvalidKey(_))
            ),
            "put {key:?}"
        );
        assert!(
            matches!(storage.get(key, 10).await, Err(StorageError::InvalidKey(_))),
            "get {key:?}"
        );
        assert!(
            matches!(storage.exists(key).await, Err(StorageError::InvalidKey(_))),
            "exists {key:?}"
        );
        assert!(
            matches!(storage.delete(key).await, Err(StorageError::InvalidKey(_))),
            "delete {key:?}"
        );
    }
}

/// Two handles on the same place (two services, or two replicas) see each other's objects.
async fn shared(first: &Storage, second: &Storage) {
    first
        .put(
            "shared/a.txt",
            Bytes::from_static(b"from first"),
            "text/plain",
        )
        .await
        .expect("put via first");
    assert_eq!(
        second
            .get("shared/a.txt", 100)
            .await
            .expect("get via second"),
        Bytes::from_static(b"from first")
    );
    second
        .delete("shared/a.txt")
        .await
        .expect("delete via second");
    assert!(!first
        .exists("shared/a.txt")
        .await
        .expect("exists via first"));
}

#[tokio::test]
async fn local_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    round_trip(&local(&dir).await).await;
}

#[tokio::test]
async fn local_refuses_objects_over_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    too_large(&local(&dir).await).await;
}

#[tokio::test]
async fn local_missing_key_is_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    missing(&local(&dir).await).await;
}

#[tokio::test]
async fn local_rejects_invalid_keys() {
    // The root is a folder inside a private temp dir, so "../x" would land where only we look.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let storage = Storage::open(
        root.to_str().expect("utf-8 temp path"),
        &S3Options::default(),
    )
    .await
    .expect("open local storage");
    invalid_keys(&storage).await;
    // Nothing escaped the root: the private parent holds only the root itself.
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read parent")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(entries.iter().all(|name| name == "root"), "{entries:?}");
}

#[tokio::test]
async fn local_storages_on_one_folder_share_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    shared(&local(&dir).await, &local(&dir).await).await;
}

#[tokio::test]
async fn local_open_creates_the_folder_and_url_is_absolute_file_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("var").join("objects");
    let storage = Storage::open(root.to_str().expect("utf-8"), &S3Options::default())
        .await
        .expect("open");
    assert!(root.is_dir());
    storage
        .put("out/image one.png", Bytes::from_static(b"png"), "image/png")
        .await
        .expect("put");

    let url = storage.url("out/image one.png");
    let canonical = root.canonicalize().expect("canonical root");
    let expected = url::Url::from_file_path(canonical.join("out/image one.png"))
        .expect("absolute path")
        .to_string();
    assert_eq!(url, expected);
    assert!(url.starts_with("file:///") && url.ends_with("/out/image%20one.png"));
    // The URL names the file that was written.
    let path = url::Url::parse(&url)
        .expect("valid url")
        .to_file_path()
        .expect("file path");
    assert_eq!(std::fs::read(path).expect("read back"), b"png");
}

#[tokio::test]
async fn local_put_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = local(&dir).await;
    for i in 0..5 {
        storage
            .put(
                "a/b.bin",
                Bytes::from(vec![i; 100]),
                "application/octet-stream",
            )
            .await
            .expect("put");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path().join("a"))
        .expect("read folder")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["b.bin"]);
}

#[tokio::test]
async fn s3_round_trip() {
    let server = S3Server::start().await;
    let storage = s3(&server).await;
    round_trip(&storage).await;
    assert_eq!(
        storage.url("jobs/1/image.jpg"),
        format!("s3://{}/jobs/1/image.jpg", server.bucket)
    );
}

#[tokio::test]
async fn s3_refuses_objects_over_the_limit() {
    let server = S3Server::start().await;
    too_large(&s3(&server).await).await;
}

#[tokio::test]
async fn s3_missing_key_is_not_found() {
    let server = S3Server::start().await;
    missing(&s3(&server).await).await;
}

#[tokio::test]
async fn s3_rejects_invalid_keys() {
    let server = S3Server::start().await;
    invalid_keys(&s3(&server).await).await;
}

#[tokio::test]
async fn s3_storages_on_one_bucket_share_objects() {
    let server = S3Server::start().await;
    shared(&s3(&server).await, &s3(&server).await).await;
}

#[tokio::test]
async fn s3_prefix_is_prepended_to_keys() {
    let server = S3Server::start().await;
    let bare = s3(&server).await;
    let prefixed = Storage::open(
        &format!("s3://{}/tenant-a/", server.bucket),
        &server.options(),
    )
    .await
    .expect("open with prefix");
    prefixed
        .put("x.txt", Bytes::from_static(b"hello"), "text/plain")
        .await
        .expect("put");
    assert_eq!(
        bare.get("tenant-a/x.txt", 100).await.expect("get full key"),
        Bytes::from_static(b"hello")
    );
    assert_eq!(
        prefixed.url("x.txt"),
        format!("s3://{}/tenant-a/x.txt", server.bucket)
    );
}

#[tokio::test]
async fn s3_url_uses_public_base_url() {
    let server = S3Server::start().await;
    let options = S3Options {
        public_base_url: Some("https://cdn.example.com/assets/".to_owned()),
        ..server.options()
    };
    let storage = Storage::open(&format!("s3://{}/p", server.bucket), &options)
        .await
        .expect("open");
    assert_eq!(
        storage.url("out/image one.png"),
        "https://cdn.example.com/assets/p/out/image%20one.png"
    );
}

#[tokio::test]
async fn s3_missing_bucket_fails_check() {
    let server = S3Server::start().await;
    let storage = Storage::open("s3://no-such-bucket", &server.options())
        .await
        .expect("open");
    assert!(matches!(
        storage.check().await,
        Err(StorageError::Backend(_))
    ));
}

#[tokio::test]
async fn s3_wrong_credentials_are_a_backend_error() {
    let server = S3Server::start().await;
    let options = S3Options {
        secret_access_key: Some("wrong".to_owned()),
        ..server.options()
    };
    let storage = s3_with(&server, &options).await;
    assert!(matches!(
        storage
            .put("a.txt", Bytes::from_static(b"x"), "text/plain")
            .await,
        Err(StorageError::Backend(_))
    ));
}

async fn s3_with(server: &S3Server, options: &S3Options) -> Storage {
    Storage::open(&server.location(), options)
        .await
        .expect("open")
}

#[tokio::test]
async fn bad_locations_and_options_are_config_errors() {
    let options = S3Options {
        access_key_id: Some("id".to_owned()),
        secret_access_key: Some("secret".to_owned()),
        ..S3Options::default()
    };
    for location in ["s3://", "s3:///prefix", "s3://bucket/../up", ""] {
        assert!(
            matches!(
                Storage::open(location, &options).await,
                Err(StorageError::Config(_))
            ),
            "{location:?}"
        );
    }
    let half_credentials = S3Options {
        secret_access_key: None,
        ..options.clone()
    };
    assert!(matches!(
        Storage::open("s3://bucket", &half_credentials).await,
        Err(StorageError::Config(_))
    ));
    let bad_endpoint = S3Options {
        endpoint: Some("ftp://example.com".to_owned()),
        ..options
    };
    assert!(matches!(
        Storage::open("s3://bucket", &bad_endpoint).await,
        Err(StorageError::Config(_))
    ));
}

#[test]
fn debug_output_hides_the_secret() {
    let options = S3Options {
        secret_access_key: Some("super-secret".to_owned()),
        ..S3Options::default()
    };
    assert!(!format!("{options:?}").contains("super-secret"));
}
