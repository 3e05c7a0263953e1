//! `models`: what the processors offer, as configured in their providers.

use atelier_proto::v1 as pb;
use serde_json::json;

use crate::client::Api;
use crate::render::{names, note, print_json, print_line};

/// `models`: one line per model, `id  provider  kinds`.
pub async fn list(api: &Api, as_json: bool) -> anyhow::Result<()> {
    let request = api.call(pb::ListModelsRequest {})?;
    let models = api.jobs().list_models(request).await?.into_inner().models;
    if as_json {
        let list: Vec<_> = models
            .iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "provider": m.provider,
                    "kinds": m.kinds.iter().map(|k| names::kind(*k)).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!({ "models": list }));
        return Ok(());
    }
    if models.is_empty() {
        note("no models are configured on any processor");
    }
    for model in &models {
        let kinds: Vec<String> = model.kinds.iter().map(|k| names::kind(*k)).collect();
        print_line(&format!(
            "{}  {}  {}",
            model.id,
            model.provider,
            kinds.join(",")
        ));
    }
    Ok(())
}
