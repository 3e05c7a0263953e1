//! Result links are minted when a job, an event or a webhook body is read, from the stored object
//! keys: the URL stored with an output is never answered, so an old job gets fresh links and a
//! deleted object's link dies with its job.

use atelier_proto::v1 as pb;
use atelier_storage::Links;
use serde_json::Value;

/// Replaces the output's and its thumbnail's URLs with fresh links.
pub async fn output(links: &Links, output: &mut pb::Output) {
    output.url = links.url(&output.key, &output.content_type).await;
    if let Some(thumbnail) = output.thumbnail.as_mut() {
        thumbnail.url = links.url(&thumbnail.key, &thumbnail.content_type).await;
    }
}

/// Fresh links for every output of the job.
pub async fn job(links: &Links, job: &mut pb::Job) {
    for task in &mut job.tasks {
        for out in &mut task.outputs {
            output(links, out).await;
        }
    }
}

/// Fresh links in an `OutputReady` event; other events carry none.
pub async fn event(links: &Links, event: &mut pb::JobEvent) {
    if let Some(pb::job_event::Event::Output(ready)) = event.event.as_mut() {
        if let Some(out) = ready.output.as_mut() {
            output(links, out).await;
        }
    }
}

/// A webhook body with fresh links, minted as it is sent (a delivery may be retried for a day):
/// every object that has a non-empty string `key` next to a `url` gets its `url` re-minted.
pub async fn webhook_body(links: &Links, body: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    let mut objects = Vec::new();
    collect_linked(&mut value, &mut Vec::new(), &mut objects);
    if objects.is_empty() {
        return body.to_owned();
    }
    for path in objects {
        if let Some(Value::Object(map)) = pointer_mut(&mut value, &path) {
            let key = map.get("key").and_then(Value::as_str).unwrap_or_default();
            let content_type = map
                .get("content_type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let url = links.url(key, content_type).await;
            map.insert("url".into(), Value::String(url));
        }
    }
    value.to_string()
}

/// Paths (as JSON pointer segments) of objects holding a non-empty `key` and a `url`.
fn collect_linked(value: &mut Value, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            let linked = map
                .get("key")
                .and_then(Value::as_str)
                .is_some_and(|k| !k.is_empty())
                && map.contains_key("url");
            if linked {
                found.push(path.clone());
            }
            for (name, child) in map.iter_mut() {
                path.push(name.clone());
                collect_linked(child, path, found);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                collect_linked(child, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

fn pointer_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter()
        .try_fold(value, |current, segment| match current {
            Value::Object(map) => map.get_mut(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        })
}
