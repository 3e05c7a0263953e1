//! basic_clean's matting: the segmentation models this processor loaded at start, and the choice
//! of method for each task (SPEC §3: a model when one is configured, the classical estimate only
//! where it can be trusted). Local models come first; a remote matting provider (remove.bg, rembg)
//! serves when it is named, or when no local model is loaded.

use std::path::Path;
use std::sync::Arc;

use atelier_matting::{load_runtime, ModelSpec, Segmenter};
use atelier_proto::v1;

use crate::process::{CleanWork, MattingMethod, ProcessError};
use crate::providers::{ModelRoute, Providers};

/// The name under which local models appear in ListModels and GetCapabilities.
pub const LOCAL_PROVIDER: &str = "onnx";

/// How one basic_clean task cuts out.
#[derive(Clone, Debug)]
pub enum MattingRoute {
    /// The classical border-colour estimate.
    Classical,
    /// A segmentation model in this processor.
    Local(Arc<Segmenter>),
    /// A remote matting provider and the model it offers.
    Remote(ModelRoute),
}

impl MattingRoute {
    /// What the content cache keys the result on: results of different methods never mix.
    pub fn cache_name(&self) -> String {
        match self {
            MattingRoute::Classical => "classical".into(),
            MattingRoute::Local(s) => format!("{LOCAL_PROVIDER}:{}", s.name()),
            MattingRoute::Remote(r) => format!("remote:{}:{}", r.provider.name(), r.model),
        }
    }
}

/// The loaded models; the first is the default.
#[derive(Debug, Default)]
pub struct MattingModels {
    models: Vec<Arc<Segmenter>>,
}

impl MattingModels {
    /// Loads ONNX Runtime from `runtime` and every model (blocking: run it off the async threads).
    /// Any problem stops start-up with a message naming the file.
    pub fn load(
        specs: &[ModelSpec],
        runtime: &Path,
        sessions: usize,
        threads: usize,
    ) -> Result<Self, String> {
        if specs.is_empty() {
            return Ok(Self::default());
        }
        let mut names = std::collections::HashSet::new();
        for spec in specs {
            if !names.insert(spec.name.as_str()) {
                return Err(format!(
                    "two matting models are named `{}` (after their files); rename one",
                    spec.name
                ));
            }
        }
        load_runtime(runtime).map_err(|e| e.to_string())?;
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            threads
        };
        let models = specs
            .iter()
            .map(|spec| Segmenter::load(spec, sessions, threads).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Self { models })
    }

    /// The method and model a task asked for, resolved against what is loaded here and the remote
    /// matting providers: a named model is looked up locally first, then remotely; with no name,
    /// the first local model, else the first remote one, else (auto only) the classical method.
    pub fn route(
        &self,
        work: &CleanWork,
        remote: &Providers,
    ) -> Result<MattingRoute, ProcessError> {
        let local = |name: Option<&str>| {
            self.models
                .iter()
                .find(|m| name.is_none_or(|want| m.name() == want))
                .cloned()
                .map(MattingRoute::Local)
        };
        let any = |name: Option<&str>| {
            local(name).or_else(|| remote.matting(name).map(MattingRoute::Remote))
        };
        match (work.method, work.model.as_deref()) {
            (MattingMethod::Classical, _) => Ok(MattingRoute::Classical),
            (MattingMethod::Auto | MattingMethod::Model, Some(name)) => {
                any(Some(name)).ok_or_else(|| {
                    ProcessError::ModelUnavailable(format!(
                        "no matting model named `{name}` on this processor; it has {}",
                        self.describe(remote)
                    ))
                })
            }
            (MattingMethod::Auto, None) => Ok(any(None).unwrap_or(MattingRoute::Classical)),
            (MattingMethod::Model, None) => any(None).ok_or_else(|| {
                ProcessError::ModelUnavailable(
                    "basic_clean with method model needs a matting model, and this processor \
                     has none: start it with --matting-model FAMILY:PATH or configure a matting \
                     provider (protocol removebg or rembg)"
                        .into(),
                )
            }),
        }
    }

    /// The models as ListModels and GetCapabilities show them; `None` when there are none.
    pub fn info(&self) -> Option<v1::ProviderInfo> {
        (!self.models.is_empty()).then(|| v1::ProviderInfo {
            name: LOCAL_PROVIDER.into(),
            models: self
                .models
                .iter()
                .map(|m| v1::Model {
                    id: m.name().to_string(),
                    provider: LOCAL_PROVIDER.into(),
                    kinds: vec![v1::JobKind::BasicClean as i32],
                })
                .collect(),
            max_concurrency: 0,
        })
    }

    fn describe(&self, remote: &Providers) -> String {
        let mut names: Vec<String> = self.models.iter().map(|m| m.name().to_string()).collect();
        names.extend(remote.matting_names());
        if names.is_empty() {
            "no matting models (start it with --matting-model FAMILY:PATH, or configure a \
             matting provider)"
                .into()
        } else {
            names.join(", ")
        }
    }
}
