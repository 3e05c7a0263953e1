//! Remote model providers: which provider serves which model for which kind, and the adapters that
//! call them: the OpenAI-compatible Images API, VolcEngine Ark, Alibaba DashScope, RunningHub
//! workflows, and for basic_clean's matting remove.bg and self-hosted rembg servers.
//!
//! A model id may be offered by several providers: they are tried in configuration order, the next
//! one when a call fails in a way another provider may not (rate limits, server errors, a rejected
//! key), before the attempt is spent.

mod ark;
mod config;
mod dashscope;
mod error;
mod matting;
mod openai;
pub mod pose;
mod runninghub;

use std::sync::Arc;

use atelier_proto::v1;

pub use config::{
    parse_model_list, ModelConfig, NodeField, Protocol, ProviderConfig, ProvidersFile, Secret,
    WorkflowConfig, REMOVE_BG_SIZES,
};
pub use error::ProviderError;
pub use matting::{answer_mask, MAX_RETRY_AFTER};
pub use openai::{ImageCall, Provider, ProviderImage, Reply};

use crate::download::Downloader;
use crate::metrics::Metrics;

/// Concurrent calls per provider when the configuration says nothing (SPEC §4).
pub const DEFAULT_MAX_CONCURRENCY: u32 = 3;

/// A job kind a provider model can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Image + prompt → edited image(s) (OpenAI `/images/edits`, Ark image-to-image, …).
    Edit,
    /// Prompt → image(s) (OpenAI `/images/generations`, Ark text-to-image, …).
    Generate,
    /// Product image → 12 model shots: an edit call per shot, or one workflow run yielding all 12.
    PoseSet,
    /// basic_clean's cut-out, by a remote matting service (protocol `removebg` or `rembg`).
    BasicClean,
}

impl ModelKind {
    /// The name used in configuration, metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Edit => "edit",
            Self::Generate => "generate",
            Self::PoseSet => "pose_set",
            Self::BasicClean => "basic_clean",
        }
    }

    /// The wire enum.
    pub fn job_kind(self) -> v1::JobKind {
        match self {
            Self::Edit => v1::JobKind::Edit,
            Self::Generate => v1::JobKind::Generate,
            Self::PoseSet => v1::JobKind::PoseSet,
            Self::BasicClean => v1::JobKind::BasicClean,
        }
    }

    /// Parses a configuration name (`edit`, `generate`, `pose_set`, `basic_clean`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "edit" => Some(Self::Edit),
            "generate" => Some(Self::Generate),
            "pose_set" | "pose-set" => Some(Self::PoseSet),
            "basic_clean" | "basic-clean" => Some(Self::BasicClean),
            _ => None,
        }
    }
}

/// A provider and the model it runs a task with, and the other providers of the same model id to
/// fall back on, in order.
#[derive(Clone, Debug)]
pub struct ModelRoute {
    /// The adapter, with its concurrency limit.
    pub provider: Arc<Provider>,
    /// The configured model id.
    pub model: String,
    /// Further providers offering `model` for the same kind, tried in order after `provider`.
    pub fallbacks: Vec<Arc<Provider>>,
}

impl ModelRoute {
    /// `provider` then the fallbacks, skipping those that have rejected their key.
    pub fn candidates(&self) -> impl Iterator<Item = &Arc<Provider>> {
        std::iter::once(&self.provider)
            .chain(self.fallbacks.iter())
            .filter(|p| p.available())
    }
}

/// Every configured provider, in configuration order.
#[derive(Debug, Default)]
pub struct Providers {
    providers: Vec<Arc<Provider>>,
}

impl Providers {
    /// Builds the adapters for `configs` (already validated).
    pub fn new(
        configs: Vec<ProviderConfig>,
        downloader: &Downloader,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, ProviderError> {
        let providers = configs
            .into_iter()
            .map(|c| Provider::new(c, downloader.clone(), Arc::clone(metrics)).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Self { providers })
    }

    /// Whether no provider is configured.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The provider and model for `kind`: the named model, or the first model serving the kind.
    pub fn route(&self, kind: ModelKind, model: Option<&str>) -> Result<ModelRoute, String> {
        if self.providers.is_empty() {
            return Err(format!(
                "{} needs a model provider, and no model provider is configured",
                kind.as_str()
            ));
        }
        let serves = |p: &Provider, id: &str| {
            p.models()
                .iter()
                .any(|m| m.kinds.contains(&kind) && m.id == id)
        };
        let first = self
            .providers
            .iter()
            .filter(|p| p.available())
            .find_map(|p| {
                p.models()
                    .iter()
                    .find(|m| m.kinds.contains(&kind) && model.is_none_or(|want| m.id == want))
                    .map(|m| (p, m.id.clone()))
            });
        let found = first.map(|(p, id)| ModelRoute {
            provider: Arc::clone(p),
            fallbacks: self
                .providers
                .iter()
                .filter(|other| !Arc::ptr_eq(other, p) && other.available() && serves(other, &id))
                .cloned()
                .collect(),
            model: id,
        });
        found.ok_or_else(|| match model {
            Some(model) => format!(
                "model `{model}` is not offered for {} by this processor; see ListModels",
                kind.as_str()
            ),
            None => format!(
                "no configured model provider serves {}; see ListModels",
                kind.as_str()
            ),
        })
    }

    /// The remote matting model for basic_clean: the one named `model`, or the first configured.
    pub fn matting(&self, model: Option<&str>) -> Option<ModelRoute> {
        self.providers.iter().find_map(|p| {
            p.models()
                .iter()
                .find(|m| {
                    m.kinds.contains(&ModelKind::BasicClean)
                        && model.is_none_or(|want| m.id == want)
                })
                .map(|m| ModelRoute {
                    provider: Arc::clone(p),
                    model: m.id.clone(),
                    fallbacks: Vec::new(),
                })
        })
    }

    /// The remote matting models, `model (provider)`, for messages.
    pub fn matting_names(&self) -> Vec<String> {
        self.providers
            .iter()
            .flat_map(|p| {
                p.models()
                    .iter()
                    .filter(|m| m.kinds.contains(&ModelKind::BasicClean))
                    .map(move |m| format!("{} ({})", m.id, p.name()))
            })
            .collect()
    }

    /// The model kinds some provider serves (basic_clean is always offered, so it is not among them).
    pub fn kinds(&self) -> Vec<ModelKind> {
        let mut kinds = Vec::new();
        for kind in [ModelKind::Edit, ModelKind::Generate, ModelKind::PoseSet] {
            let served = self
                .providers
                .iter()
                .filter(|p| p.available())
                .any(|p| p.models().iter().any(|m| m.kinds.contains(&kind)));
            if served {
                kinds.push(kind);
            }
        }
        kinds
    }

    /// What `GetCapabilities` reports.
    pub fn info(&self) -> Vec<v1::ProviderInfo> {
        self.providers
            .iter()
            .filter(|p| p.available())
            .map(|p| v1::ProviderInfo {
                name: p.name().to_string(),
                models: p
                    .models()
                    .iter()
                    .map(|m| v1::Model {
                        id: m.id.clone(),
                        provider: p.name().to_string(),
                        kinds: m.kinds.iter().map(|k| k.job_kind() as i32).collect(),
                    })
                    .collect(),
                max_concurrency: p.max_concurrency(),
            })
            .collect()
    }
}
