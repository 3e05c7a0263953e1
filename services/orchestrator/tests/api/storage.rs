//! The pair on a real S3-compatible server: uploads written by the orchestrator, read and written by
//! the processor.

use atelier_proto::v1 as pb;
use atelier_storage::testing::S3Server;
use std::time::{Duration, SystemTime};

use atelier_storage::{Links, Storage};
use sha2::{Digest, Sha256};

use crate::helpers::{as_account, clean_job, images, spawn_app_with, upload_source, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_outputs_live_in_the_bucket() {
    let s3 = S3Server::start().await;
    let options = s3.options();
    let location = s3.location();
    let (o_location, o_options, p_location, p_options) = (
        location.clone(),
        options.clone(),
        location.clone(),
        options.clone(),
    );
    let app = spawn_app_with(
        Backend::Sqlite,
        move |c| {
            c.storage = o_location;
            c.s3 = o_options;
        },
        move |p| {
            p.storage = p_location;
            p.s3 = p_options;
        },
    )
    .await;
    let bucket = Storage::open(&location, &options).await.expect("bucket");
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let upload = app
        .upload(&t, "alice", images::jpeg())
        .await
        .expect("upload");
    let job = app
        .submit(
            &t,
            "alice",
            clean_job(vec![upload_source(&upload.id)], pb::CleanTemplate::Matting),
        )
        .await
        .expect("submit");
    let done = app.finish(&t, "alice", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    let output = &done.tasks[0].outputs[0];
    assert_eq!(output.name, "matting.png");
    // A presigned GET straight to the bucket, opened by a plain HTTP client without credentials.
    assert!(
        output
            .url
            .starts_with(&format!("{}/{}/", s3.endpoint, s3.bucket)),
        "{} is a path-style link into the bucket",
        output.url
    );
    assert!(output.url.contains("X-Amz-Signature="), "{}", output.url);
    let plain = reqwest::Client::new();
    let response = plain.get(&output.url).send().await.expect("GET link");
    assert_eq!(response.status(), 200, "{}", output.url);
    let body = response.bytes().await.expect("body");
    assert_eq!(hex::encode(Sha256::digest(&body)), output.sha256);
    let thumb = output.thumbnail.as_ref().expect("thumbnail");
    let response = plain.get(&thumb.url).send().await.expect("thumbnail link");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.bytes().await.expect("body").len() as u64,
        thumb.bytes
    );

    // A tampered signature, or a link for another key under this signature: refused.
    let tampered = {
        let (head, signature) = output.url.split_once("X-Amz-Signature=").expect("signed");
        let flipped: String = signature
            .chars()
            .map(|c| if c == '0' { '1' } else { '0' })
            .collect();
        format!("{head}X-Amz-Signature={flipped}")
    };
    let refused = plain.get(&tampered).send().await.expect("tampered");
    assert_eq!(refused.status(), 403, "a tampered link is refused");
    let other_key = output.url.replacen("matting.png", "white-bg.jpg", 1);
    assert_ne!(other_key, output.url);
    let refused = plain.get(&other_key).send().await.expect("other key");
    assert_eq!(refused.status(), 403, "the signature covers the key");

    // A link minted two hours ago with a one-hour lifetime has expired.
    let links = Links::new(bucket.clone(), None, None, Duration::from_secs(3600)).expect("links");
    let old = links
        .url_at(
            &output.key,
            "image/png",
            SystemTime::now() - Duration::from_secs(7200),
        )
        .await;
    assert!(old.contains("X-Amz-Signature="), "{old}");
    let refused = plain.get(&old).send().await.expect("expired");
    assert_eq!(refused.status(), 403, "an expired link is refused");
    // Minted now, the same way, it works: the refusal is about time alone.
    let now = links.url(&output.key, "image/png").await;
    assert_eq!(plain.get(&now).send().await.expect("fresh").status(), 200);

    // Reading the job again mints new links; the stored output keeps only its key.
    let again = app.finish(&t, "alice", &job.id).await;
    assert_eq!(again.tasks[0].outputs[0].key, output.key);
    assert!(again.tasks[0].outputs[0].url.contains("X-Amz-Signature="));
    let stored = bucket
        .get(&output.key, 64 << 20)
        .await
        .expect("output in the bucket");
    assert_eq!(stored.len() as u64, output.bytes);
    assert!(bucket.exists(&thumb.key).await.expect("exists"));
    assert!(
        !app.storage.exists(&output.key).await.expect("local check"),
        "nothing went to the local folder"
    );

    // Deletion on S3: a job sharing the cached objects keeps them, the last one takes them along.
    let second = app
        .submit(
            &t,
            "alice",
            clean_job(vec![upload_source(&upload.id)], pb::CleanTemplate::Matting),
        )
        .await
        .expect("submit");
    let second = app.finish(&t, "alice", &second.id).await;
    assert!(second.tasks[0].from_cache, "{second:?}");
    let keys: Vec<String> = done.tasks[0]
        .outputs
        .iter()
        .flat_map(|o| {
            std::iter::once(o.key.clone()).chain(o.thumbnail.as_ref().map(|t| t.key.clone()))
        })
        .collect();
    let delete = |id: String| {
        let mut jobs = app.jobs.clone();
        let key = t.key.clone();
        async move {
            jobs.delete_job(as_account(
                pb::DeleteJobRequest { job_id: id },
                &key,
                "alice",
            ))
            .await
            .map(|r| r.into_inner())
        }
    };
    let first = delete(job.id.clone()).await.expect("delete the first job");
    assert_eq!(first.objects_deleted, 0);
    assert_eq!(first.objects_kept as usize, keys.len());
    for key in &keys {
        assert!(
            bucket.exists(key).await.expect("exists"),
            "{key} is still used"
        );
    }
    let link = &second.tasks[0].outputs[0].url;
    let response = plain.get(link).send().await.expect("shared link");
    assert_eq!(response.status(), 200);
    assert_eq!(
        hex::encode(Sha256::digest(response.bytes().await.expect("body"))),
        output.sha256
    );
    let last = delete(second.id.clone())
        .await
        .expect("delete the second job");
    assert_eq!(last.objects_deleted as usize, keys.len());
    for key in &keys {
        assert!(
            !bucket.exists(key).await.expect("exists"),
            "{key} is gone from the bucket"
        );
    }
    let dead = plain.get(link).send().await.expect("dead link");
    assert_eq!(dead.status(), 404, "the deleted job's link no longer opens");
}
