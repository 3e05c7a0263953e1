//! Provider configuration: a TOML or JSON file (`--providers-file`), or one provider from flags/env.
//!
//! ```toml
//! [[providers]]
//! name = "openai"
//! base_url = "https://api.openai.com/v1"
//! api_key_env = "OPENAI_API_KEY"     # or api_key = "sk-…"
//! max_concurrency = 3                # default 3
//! timeout_seconds = 120              # default 120
//! models = [{ id = "gpt-image-1", kinds = ["edit", "generate", "pose_set"] }]
//!
//! [[providers]]
//! name = "removebg"
//! protocol = "removebg"              # remove.bg's API; or "rembg" for a rembg server
//! base_url = "https://api.remove.bg"
//! api_key_env = "REMOVE_BG_API_KEY"
//! size = "full"                      # removebg only; default "full"
//! models = [{ id = "remove.bg", kinds = ["basic_clean"] }]
//!
//! [[providers]]
//! name = "ark"
//! protocol = "ark"                   # VolcEngine Ark: POST {base}/api/v3/images/generations
//! base_url = "https://ark.cn-beijing.volces.com"
//! api_key_file = "/run/secrets/ark"  # or api_key / api_key_env
//! requests_per_minute = 500          # token bucket; unset = unlimited
//! response_format = "url"            # or "b64_json"
//! upstream_models = { seedream = "doubao-seedream-4-0-250828" }  # id → the provider's model name
//! models = [{ id = "seedream", kinds = ["generate", "edit", "pose_set"] }]
//!
//! [[providers]]
//! name = "dashscope"
//! protocol = "dashscope"             # Alibaba DashScope (Model Studio)
//! base_url = "https://dashscope.aliyuncs.com"
//! api_key_env = "DASHSCOPE_API_KEY"
//! async_models = ["wan2.2-t2i-flash"] # these use the task API (X-DashScope-Async) and polling
//! models = [{ id = "qwen-image-edit", kinds = ["edit", "pose_set"] },
//!           { id = "wan2.2-t2i-flash", kinds = ["generate"] }]
//!
//! [[providers]]
//! name = "runninghub"
//! protocol = "runninghub"            # ComfyUI workflows on RunningHub
//! base_url = "https://www.runninghub.cn"
//! api_key_env = "RUNNINGHUB_API_KEY"
//! models = [{ id = "model_pose12", kinds = ["pose_set"] }]
//! [[providers.workflows]]
//! model = "model_pose12"
//! workflow_id = "1950000000000000000"
//! image_node = { node_id = "12", field_name = "image" }
//! prompt_node = { node_id = "6", field_name = "text" }
//! seed_node = { node_id = "3", field_name = "seed" }
//! images_per_run = 12                # pose_set: one run yields all 12 shots (1 = one run per shot)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;

use super::{ModelKind, DEFAULT_MAX_CONCURRENCY};

/// Seconds a provider call may take when the configuration says nothing.
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 120.0;

/// A credential: never printed by `Debug`, never logged.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// One model of a provider and the kinds it serves.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The provider's model name, sent as `model`.
    pub id: String,
    /// Kinds this model runs.
    pub kinds: Vec<ModelKind>,
}

/// The API a provider speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The OpenAI-compatible Images API (edit, generate, pose_set).
    #[default]
    #[value(name = "openai")]
    OpenAi,
    /// remove.bg's API, `POST {base}/v1.0/removebg` (basic_clean).
    #[value(name = "removebg")]
    RemoveBg,
    /// A self-hosted rembg server, `POST {base}/api/remove` (basic_clean).
    #[value(name = "rembg")]
    Rembg,
    /// VolcEngine Ark (Doubao Seedream), `POST {base}/api/v3/images/generations`.
    #[value(name = "ark")]
    Ark,
    /// Alibaba DashScope: the multimodal generation endpoint, or the asynchronous task API.
    #[value(name = "dashscope")]
    DashScope,
    /// ComfyUI workflows on RunningHub, `POST {base}/task/openapi/create` and polling.
    #[value(name = "runninghub")]
    RunningHub,
}

impl Protocol {
    /// The name used in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::RemoveBg => "removebg",
            Self::Rembg => "rembg",
            Self::Ark => "ark",
            Self::DashScope => "dashscope",
            Self::RunningHub => "runninghub",
        }
    }

    /// Whether the protocol cuts out (serves basic_clean and nothing else).
    pub fn is_matting(self) -> bool {
        matches!(self, Self::RemoveBg | Self::Rembg)
    }

    /// Whether calls need an API key (they all do, except OpenAI-compatible and rembg servers).
    pub fn needs_key(self) -> bool {
        matches!(
            self,
            Self::RemoveBg | Self::Ark | Self::DashScope | Self::RunningHub
        )
    }
}

/// Which input of a workflow node receives a value (RunningHub's `nodeInfoList` entry).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeField {
    /// The node's id in the workflow, e.g. `"12"`.
    pub node_id: String,
    /// The input's name, e.g. `"image"`, `"text"`, `"seed"`.
    pub field_name: String,
}

/// A RunningHub workflow serving one model: where the source image, the prompt and the seed go.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    /// The model id (from `models`) this workflow runs.
    pub model: String,
    /// RunningHub's workflow id.
    pub workflow_id: String,
    /// Receives the uploaded source image's file name (edit, pose_set).
    #[serde(default)]
    pub image_node: Option<NodeField>,
    /// Receives the prompt.
    #[serde(default)]
    pub prompt_node: Option<NodeField>,
    /// Receives the seed, when the task has one.
    #[serde(default)]
    pub seed_node: Option<NodeField>,
    /// Images one run yields: 12 for a workflow that makes a whole pose set in one run; 1 (the
    /// default) for one run per image or shot.
    #[serde(default = "one")]
    pub images_per_run: u32,
}

fn one() -> u32 {
    1
}

/// Milliseconds between polls of an asynchronous task when the configuration says nothing.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 2000;

fn default_poll_interval() -> u64 {
    DEFAULT_POLL_INTERVAL_MS
}

/// The output sizes remove.bg accepts as `size`.
pub const REMOVE_BG_SIZES: [&str; 8] = [
    "auto", "preview", "small", "regular", "medium", "hd", "full", "4k",
];

/// remove.bg's `size` when the configuration says nothing: the photo's own resolution.
const DEFAULT_REMOVE_BG_SIZE: &str = "full";

/// One provider: the OpenAI Images API, or a remote matting service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name shown in capabilities, metrics and logs.
    pub name: String,
    /// The API it speaks; `openai` when unset.
    #[serde(default)]
    pub protocol: Protocol,
    /// Base URL: up to and including the version for `openai` (`https://api.openai.com/v1`), the
    /// server's root for `removebg` (`https://api.remove.bg`) and `rembg` (`http://rembg:7000`).
    pub base_url: String,
    /// The API key: `Authorization: Bearer` for `openai` and `rembg` (a proxy in front of it),
    /// `X-Api-Key` for `removebg`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// An environment variable holding the API key (read at start-up), instead of `api_key`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Models and the kinds each serves.
    pub models: Vec<ModelConfig>,
    /// Calls in flight at once to this provider, across all tasks of this processor.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    /// Seconds one call may take, body included.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// remove.bg's output `size` (`removebg` only): `full` when unset.
    #[serde(default)]
    pub size: Option<String>,
    /// A file holding the API key (read at start-up, surrounding whitespace dropped).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Requests started per minute (a token bucket holding up to one minute's worth; waiting for a
    /// token is not an error). Unset: no limit beyond `max_concurrency`.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// The provider's own name for a model id, when it differs (`seedream` →
    /// `doubao-seedream-4-0-250828`); lets several providers offer the same id as fallbacks.
    #[serde(default)]
    pub upstream_models: BTreeMap<String, String>,
    /// DashScope models that only offer the asynchronous task API.
    #[serde(default)]
    pub async_models: Vec<String>,
    /// Milliseconds between polls of an asynchronous task (DashScope async, RunningHub).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_ms: u64,
    /// RunningHub: the workflow of each model.
    #[serde(default)]
    pub workflows: Vec<WorkflowConfig>,
    /// Ark: `url` (the default; the images are fetched through the guarded downloader) or
    /// `b64_json` (the images come in the answer).
    #[serde(default)]
    pub response_format: Option<String>,
}

fn default_concurrency() -> u32 {
    DEFAULT_MAX_CONCURRENCY
}

fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_SECONDS
}

impl ProviderConfig {
    /// A provider at `base_url` serving `models`, with default limits.
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: Option<&str>,
        models: Vec<ModelConfig>,
    ) -> Self {
        Self {
            name: name.to_string(),
            protocol: Protocol::OpenAi,
            base_url: base_url.to_string(),
            api_key: api_key.map(Secret::from),
            api_key_env: None,
            models,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            size: None,
            api_key_file: None,
            requests_per_minute: None,
            upstream_models: BTreeMap::new(),
            async_models: Vec::new(),
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            workflows: Vec::new(),
            response_format: None,
        }
    }

    /// A remote matting service (`removebg` or `rembg`) at `base_url` offering `models` for
    /// basic_clean, with default limits.
    pub fn matting(
        name: &str,
        protocol: Protocol,
        base_url: &str,
        api_key: Option<&str>,
        models: &[&str],
    ) -> Self {
        let models = models
            .iter()
            .map(|id| ModelConfig {
                id: (*id).to_string(),
                kinds: vec![ModelKind::BasicClean],
            })
            .collect();
        Self {
            protocol,
            ..Self::new(name, base_url, api_key, models)
        }
    }

    /// A provider of another `protocol` at `base_url` serving `models`, with default limits.
    pub fn with_protocol(
        name: &str,
        protocol: Protocol,
        base_url: &str,
        api_key: Option<&str>,
        models: Vec<ModelConfig>,
    ) -> Self {
        Self {
            protocol,
            ..Self::new(name, base_url, api_key, models)
        }
    }

    /// The name the provider knows model `id` by.
    pub fn upstream_model<'a>(&'a self, id: &'a str) -> &'a str {
        self.upstream_models.get(id).map_or(id, String::as_str)
    }

    /// remove.bg's `size` for this provider.
    pub fn remove_bg_size(&self) -> &str {
        self.size.as_deref().unwrap_or(DEFAULT_REMOVE_BG_SIZE)
    }

    /// Checks the values and resolves `api_key_env`; the message names the provider and the field.
    pub fn validated(mut self) -> Result<Self, String> {
        let name = self.name.trim().to_string();
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok_name {
            return Err(format!(
                "provider name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                self.name
            ));
        }
        self.name = name;
        let url = url::Url::parse(self.base_url.trim())
            .map_err(|e| format!("provider `{}`: base_url is not a URL: {e}", self.name))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "provider `{}`: base_url must be http or https",
                self.name
            ));
        }
        if self.models.is_empty() {
            return Err(format!("provider `{}`: list at least one model", self.name));
        }
        for model in &self.models {
            if model.id.trim().is_empty() || model.kinds.is_empty() {
                return Err(format!(
                    "provider `{}`: every model needs an id and at least one kind",
                    self.name
                ));
            }
            let matting = model.kinds.contains(&ModelKind::BasicClean);
            if self.protocol.is_matting() && model.kinds.iter().any(|k| *k != ModelKind::BasicClean)
            {
                return Err(format!(
                    "provider `{}`: protocol {} serves basic_clean only (model `{}`)",
                    self.name,
                    self.protocol.as_str(),
                    model.id
                ));
            }
            if matting && !self.protocol.is_matting() {
                return Err(format!(
                    "provider `{}`: basic_clean (model `{}`) needs protocol removebg or rembg",
                    self.name, model.id
                ));
            }
        }
        if let Some(size) = self.size.as_deref() {
            if self.protocol != Protocol::RemoveBg {
                return Err(format!(
                    "provider `{}`: size is a setting of protocol removebg",
                    self.name
                ));
            }
            if !REMOVE_BG_SIZES.contains(&size) {
                return Err(format!(
                    "provider `{}`: size `{size}` is not one of remove.bg's sizes ({})",
                    self.name,
                    REMOVE_BG_SIZES.join(", ")
                ));
            }
        }
        if !(1..=256).contains(&self.max_concurrency) {
            return Err(format!(
                "provider `{}`: max_concurrency must be between 1 and 256",
                self.name
            ));
        }
        if !(self.timeout_seconds.is_finite() && self.timeout_seconds > 0.0) {
            return Err(format!(
                "provider `{}`: timeout_seconds must be a positive number",
                self.name
            ));
        }
        if self.requests_per_minute == Some(0) {
            return Err(format!(
                "provider `{}`: requests_per_minute must be at least 1 (leave it out for no limit)",
                self.name
            ));
        }
        if self.poll_interval_ms == 0 || self.poll_interval_ms > 60_000 {
            return Err(format!(
                "provider `{}`: poll_interval_ms must be between 1 and 60000",
                self.name
            ));
        }
        for id in self.upstream_models.keys() {
            if !self.models.iter().any(|m| &m.id == id) {
                return Err(format!(
                    "provider `{}`: upstream_models names `{id}`, which is not among its models",
                    self.name
                ));
            }
        }
        if let Some(format) = self.response_format.as_deref() {
            if self.protocol != Protocol::Ark {
                return Err(format!(
                    "provider `{}`: response_format is a setting of protocol ark",
                    self.name
                ));
            }
            if !matches!(format, "url" | "b64_json") {
                return Err(format!(
                    "provider `{}`: response_format must be url or b64_json",
                    self.name
                ));
            }
        }
        if !self.async_models.is_empty() && self.protocol != Protocol::DashScope {
            return Err(format!(
                "provider `{}`: async_models is a setting of protocol dashscope",
                self.name
            ));
        }
        if self.protocol == Protocol::RunningHub {
            for model in &self.models {
                let Some(flow) = self.workflows.iter().find(|w| w.model == model.id) else {
                    return Err(format!(
                        "provider `{}`: model `{}` needs a [[providers.workflows]] entry",
                        self.name, model.id
                    ));
                };
                if !(1..=12).contains(&flow.images_per_run) {
                    return Err(format!(
                        "provider `{}`: workflow of `{}`: images_per_run must be 1 to 12",
                        self.name, model.id
                    ));
                }
                let needs_image = model
                    .kinds
                    .iter()
                    .any(|k| matches!(k, ModelKind::Edit | ModelKind::PoseSet));
                if needs_image && flow.image_node.is_none() {
                    return Err(format!(
                        "provider `{}`: workflow of `{}` serves edit or pose_set and needs image_node",
                        self.name, model.id
                    ));
                }
            }
        } else if !self.workflows.is_empty() {
            return Err(format!(
                "provider `{}`: workflows is a setting of protocol runninghub",
                self.name
            ));
        }
        if let Some(path) = self.api_key_file.as_deref() {
            let key = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "provider `{}`: cannot read api_key_file {}: {e}",
                    self.name,
                    path.display()
                )
            })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(format!(
                    "provider `{}`: api_key_file {} is empty",
                    self.name,
                    path.display()
                ));
            }
            self.api_key = Some(Secret(key.to_string()));
        }
        if let Some(var) = self.api_key_env.as_deref() {
            match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => self.api_key = Some(Secret(key)),
                _ => {
                    return Err(format!(
                        "provider `{}`: environment variable {var} (api_key_env) is not set",
                        self.name
                    ))
                }
            }
        }
        let has_key = self
            .api_key
            .as_ref()
            .is_some_and(|k| !k.expose().trim().is_empty());
        if self.protocol.needs_key() && !has_key {
            return Err(format!(
                "provider `{}`: protocol {} needs an API key (api_key, api_key_env or api_key_file)",
                self.name,
                self.protocol.as_str()
            ));
        }
        Ok(self)
    }
}

/// The file: `providers = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersFile {
    /// Every provider.
    pub providers: Vec<ProviderConfig>,
}

impl ProvidersFile {
    /// Reads a `.json` file as JSON and anything else as TOML.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read providers file {}: {e}", path.display()))?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Self::parse(&text, json).map_err(|e| format!("providers file {}: {e}", path.display()))
    }

    /// Parses the text as JSON or TOML.
    pub fn parse(text: &str, json: bool) -> Result<Self, String> {
        let value = if json {
            serde_json::from_str(text).map_err(|e| e.to_string())?
        } else {
            toml_to_json(text)?
        };
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

/// Parses `id=kind+kind,id=kind` (the single-provider environment form).
pub fn parse_model_list(entries: &[String]) -> Result<Vec<ModelConfig>, String> {
    entries
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|entry| {
            let (id, kinds) = entry.split_once('=').ok_or_else(|| {
                format!("model `{entry}` must read id=kind+kind, e.g. gpt-image-1=edit+generate")
            })?;
            let kinds = kinds
                .split('+')
                .map(|k| {
                    ModelKind::parse(k).ok_or_else(|| {
                        format!(
                            "model `{id}`: unknown kind `{k}` (edit, generate, pose_set, basic_clean)"
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ModelConfig {
                id: id.trim().to_string(),
                kinds,
            })
        })
        .collect()
}

fn toml_to_json(text: &str) -> Result<Value, String> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("not valid TOML: {}", e.message()))?;
    Ok(table_to_json(doc.as_table()))
}

fn table_to_json(table: &toml_edit::Table) -> Value {
    Value::Object(
        table
            .iter()
            .map(|(k, item)| (k.to_string(), item_to_json(item)))
            .collect(),
    )
}

fn item_to_json(item: &toml_edit::Item) -> Value {
    match item {
        toml_edit::Item::None => Value::Null,
        toml_edit::Item::Value(v) => value_to_json(v),
        toml_edit::Item::Table(t) => table_to_json(t),
        toml_edit::Item::ArrayOfTables(a) => Value::Array(a.iter().map(table_to_json).collect()),
    }
}

fn value_to_json(value: &toml_edit::Value) -> Value {
    use toml_edit::Value as T;
    match value {
        T::String(s) => Value::String(s.value().clone()),
        T::Integer(i) => Value::from(*i.value()),
        T::Float(f) => Value::from(*f.value()),
        T::Boolean(b) => Value::Bool(*b.value()),
        T::Datetime(d) => Value::String(d.value().to_string()),
        T::Array(a) => Value::Array(a.iter().map(value_to_json).collect()),
        T::InlineTable(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
        [[providers]]
        name = "openai"
        base_url = "https://api.openai.com/v1"
        api_key = "sk-secret"
        models = [{ id = "gpt-image-1", kinds = ["edit", "generate", "pose_set"] }]

        [[providers]]
        name = "local"
        base_url = "http://127.0.0.1:8000/v1"
        max_concurrency = 1
        timeout_seconds = 30

        [[providers.models]]
        id = "sdxl"
        kinds = ["generate"]
    "#;

    #[test]
    fn toml_and_json_read_the_same() {
        let file = ProvidersFile::parse(TOML, false).expect("toml");
        assert_eq!(file.providers.len(), 2);
        let openai = &file.providers[0];
        assert_eq!(openai.max_concurrency, 3);
        assert_eq!(
            openai.api_key.as_ref().map(Secret::expose),
            Some("sk-secret")
        );
        assert_eq!(openai.models[0].kinds.len(), 3);
        let local = &file.providers[1];
        assert_eq!((local.max_concurrency, local.timeout_seconds), (1, 30.0));
        assert_eq!(local.models[0].kinds, [ModelKind::Generate]);

        let json = r#"{"providers": [{"name": "p", "base_url": "http://127.0.0.1:1/v1",
            "models": [{"id": "m", "kinds": ["pose_set"]}]}]}"#;
        let file = ProvidersFile::parse(json, true).expect("json");
        assert_eq!(file.providers[0].models[0].kinds, [ModelKind::PoseSet]);
        assert!(file.providers[0].api_key.is_none());
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let file = ProvidersFile::parse(TOML, false).expect("toml");
        let printed = format!("{file:?}");
        assert!(!printed.contains("sk-secret"), "{printed}");
    }

    #[test]
    fn mistakes_are_named() {
        assert!(ProvidersFile::parse("providers = 3", false).is_err());
        assert!(ProvidersFile::parse("[[providers]]\nname = ", false).is_err());
        let unknown_kind = r#"{"providers": [{"name": "p", "base_url": "http://x/v1",
            "models": [{"id": "m", "kinds": ["paint"]}]}]}"#;
        assert!(ProvidersFile::parse(unknown_kind, true).is_err());
        let bad = ProviderConfig::new("bad name", "http://x/v1", None, vec![]).validated();
        assert!(bad.expect_err("bad").contains("provider name"));
        let no_models = ProviderConfig::new("p", "http://x/v1", None, vec![]).validated();
        assert!(no_models
            .expect_err("no models")
            .contains("at least one model"));
        let ftp = ProviderConfig::new("p", "ftp://x", None, vec![]).validated();
        assert!(ftp.is_err());
    }

    #[test]
    fn matting_providers_read_and_check_their_protocol() {
        let toml = r#"
            [[providers]]
            name = "removebg"
            protocol = "removebg"
            base_url = "https://api.remove.bg"
            api_key = "rb-key"
            size = "preview"
            max_concurrency = 2
            models = [{ id = "remove.bg", kinds = ["basic_clean"] }]

            [[providers]]
            name = "rembg"
            protocol = "rembg"
            base_url = "http://127.0.0.1:7000"
            models = [{ id = "isnet-general-use", kinds = ["basic_clean"] }]
        "#;
        let file = ProvidersFile::parse(toml, false).expect("toml");
        let removebg = file.providers[0].clone().validated().expect("valid");
        assert_eq!(removebg.protocol, Protocol::RemoveBg);
        assert_eq!(removebg.remove_bg_size(), "preview");
        assert_eq!(removebg.models[0].kinds, [ModelKind::BasicClean]);
        let rembg = file.providers[1].clone().validated().expect("valid");
        assert_eq!(rembg.protocol, Protocol::Rembg);
        assert_eq!(rembg.remove_bg_size(), "full");
        let unknown = toml.replace("protocol = \"rembg\"", "protocol = \"paint\"");
        assert!(ProvidersFile::parse(&unknown, false).is_err());

        let refuse = |config: ProviderConfig, expect: &str| {
            let err = config.validated().expect_err(expect);
            assert!(err.contains(expect), "{err}");
        };
        let mut keyless = removebg.clone();
        keyless.api_key = None;
        refuse(keyless, "needs an API key");
        let mut edits = rembg.clone();
        edits.models[0].kinds.push(ModelKind::Edit);
        refuse(edits, "basic_clean only");
        let mut openai = rembg.clone();
        openai.protocol = Protocol::OpenAi;
        refuse(openai, "needs protocol removebg or rembg");
        let mut big = removebg.clone();
        big.size = Some("huge".into());
        refuse(big, "not one of remove.bg's sizes");
        let mut sized = rembg;
        sized.size = Some("full".into());
        refuse(sized, "setting of protocol removebg");
    }

    /// The README's example configuration parses and validates (keys given inline here).
    #[test]
    fn the_readme_configuration_of_each_provider_is_valid() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("<!-- providers-example -->")
            .expect("the README marks its providers example");
        let block = &readme[start..];
        let open = block.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let close = block[open..].find("```").expect("closed") + open;
        let file = ProvidersFile::parse(&block[open..close], false).expect("valid TOML");
        let protocols: Vec<Protocol> = file.providers.iter().map(|p| p.protocol).collect();
        assert_eq!(
            protocols,
            [Protocol::Ark, Protocol::DashScope, Protocol::RunningHub]
        );
        for mut provider in file.providers {
            provider.api_key_env = None;
            provider.api_key_file = None;
            provider.api_key = Some("k".into());
            let name = provider.name.clone();
            let valid = provider
                .validated()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if valid.protocol == Protocol::Ark {
                assert_eq!(
                    valid.upstream_model("seedream"),
                    "doubao-seedream-4-0-250828"
                );
                assert_eq!(valid.requests_per_minute, Some(500));
            }
            if valid.protocol == Protocol::RunningHub {
                assert_eq!(valid.workflows[0].images_per_run, 12);
                assert_eq!(valid.poll_interval_ms, 3000);
            }
        }
    }

    #[test]
    fn foreign_protocols_check_their_settings() {
        let models = vec![ModelConfig {
            id: "m".into(),
            kinds: vec![ModelKind::PoseSet],
        }];
        let keyless =
            ProviderConfig::with_protocol("a", Protocol::Ark, "http://x", None, models.clone());
        assert!(keyless
            .validated()
            .expect_err("key")
            .contains("needs an API key"));
        let hub = ProviderConfig::with_protocol(
            "h",
            Protocol::RunningHub,
            "http://x",
            Some("k"),
            models.clone(),
        );
        assert!(hub.validated().expect_err("workflow").contains("workflows"));
        let mut asynchronous =
            ProviderConfig::with_protocol("a", Protocol::Ark, "http://x", Some("k"), models);
        asynchronous.async_models = vec!["m".into()];
        assert!(asynchronous
            .clone()
            .validated()
            .expect_err("async")
            .contains("protocol dashscope"));
        asynchronous.async_models.clear();
        asynchronous.requests_per_minute = Some(0);
        assert!(asynchronous.validated().is_err());

        let dir = std::env::temp_dir().join(format!("atelier-key-{}", std::process::id()));
        std::fs::write(&dir, "  file-key\n").expect("write key");
        let mut from_file = ProviderConfig::with_protocol(
            "f",
            Protocol::DashScope,
            "http://x",
            None,
            vec![ModelConfig {
                id: "qwen-image-edit".into(),
                kinds: vec![ModelKind::Edit],
            }],
        );
        from_file.api_key_file = Some(dir.clone());
        let valid = from_file.validated().expect("valid");
        assert_eq!(valid.api_key.as_ref().map(Secret::expose), Some("file-key"));
        assert!(!format!("{valid:?}").contains("file-key"));
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn the_env_model_list_parses() {
        let models = parse_model_list(&["gpt-image-1=edit+generate".into(), "x=pose_set".into()])
            .expect("valid");
        assert_eq!(models[0].kinds, [ModelKind::Edit, ModelKind::Generate]);
        assert_eq!(models[1].id, "x");
        let matting = parse_model_list(&["remove.bg=basic_clean".into()]).expect("valid");
        assert_eq!(matting[0].kinds, [ModelKind::BasicClean]);
        assert!(parse_model_list(&["nokinds".into()]).is_err());
        assert!(parse_model_list(&["m=paint".into()]).is_err());
    }
}
