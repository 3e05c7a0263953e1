//! Atelier's vocabulary: what a job makes, the states of jobs and tasks, and the enums of the job
//! parameters. Each word has one spelling, the lower-case snake_case form stored in the database and
//! written in JSON (`basic_clean`, `partially_succeeded`, `white_bg`), and maps to and from the wire
//! enums of `atelier_proto::v1`, whose UNSPECIFIED value is no word.
//!
//! Derives for the crates that carry the words come behind features: `serde` (the JSON spelling),
//! `sea-orm` (a TEXT column holding the stored form), `clap` (command-line values, kebab-case with
//! the snake_case form as an alias) and `utoipa` (the OpenAPI schema).

use std::fmt;
use std::str::FromStr;

use atelier_proto::v1 as pb;

/// A word that is not one of an enum's spellings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownWord {
    /// The enum it was read as.
    pub of: &'static str,
    /// What was read.
    pub text: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a {}", self.text, self.of)
    }
}

impl std::error::Error for UnknownWord {}

/// What every word of the vocabulary offers, for code that handles any of them.
pub trait Word: Copy + Sized + 'static {
    /// Every value, in the wire enum's order.
    const ALL: &'static [Self];
    /// The stored and JSON form.
    fn as_str(self) -> &'static str;
    /// The protobuf number.
    fn number(self) -> i32;
    /// The value of a protobuf number; `None` for UNSPECIFIED and numbers it does not know.
    fn from_number(value: i32) -> Option<Self>;
}

macro_rules! vocabulary {
    (
        $(#[$doc:meta])*
        $name:ident => $pb:ident {
            $( $(#[$vattr:meta])* $variant:ident = $text:tt ),+ $(,)?
        }
    ) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
        #[cfg_attr(feature = "sea-orm", derive(sea_orm::EnumIter, sea_orm::DeriveActiveEnum))]
        #[cfg_attr(feature = "sea-orm", sea_orm(rs_type = "String", db_type = "Text"))]
        #[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
        #[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
        $(#[$doc])*
        pub enum $name {
            $(
                $(#[$vattr])*
                #[cfg_attr(feature = "sea-orm", sea_orm(string_value = $text))]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in the wire enum's order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stored and JSON form.
            pub const fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text ),+ }
            }

            /// Reads the stored form back.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $( $text => Some(Self::$variant), )+ _ => None }
            }

            /// The wire enum.
            pub const fn to_proto(self) -> pb::$pb {
                match self { $( Self::$variant => pb::$pb::$variant ),+ }
            }

            /// From the wire enum; `None` for UNSPECIFIED.
            pub fn from_proto(value: pb::$pb) -> Option<Self> {
                match value {
                    $( pb::$pb::$variant => Some(Self::$variant), )+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }

            /// The protobuf number.
            pub const fn number(self) -> i32 {
                self.to_proto() as i32
            }

            /// The value of a protobuf number; `None` for UNSPECIFIED and numbers it does not know.
            pub fn from_number(value: i32) -> Option<Self> {
                pb::$pb::try_from(value).ok().and_then(Self::from_proto)
            }
        }

        impl Word for $name {
            const ALL: &'static [Self] = $name::ALL;

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn number(self) -> i32 {
                $name::number(self)
            }

            fn from_number(value: i32) -> Option<Self> {
                $name::from_number(value)
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text).ok_or_else(|| UnknownWord {
                    of: stringify!($name),
                    text: text.to_string(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$name> for pb::$pb {
            fn from(value: $name) -> Self {
                value.to_proto()
            }
        }

        impl TryFrom<pb::$pb> for $name {
            type Error = UnknownWord;

            fn try_from(value: pb::$pb) -> Result<Self, Self::Error> {
                Self::from_proto(value).ok_or_else(|| UnknownWord {
                    of: stringify!($name),
                    text: value.as_str_name().to_string(),
                })
            }
        }
    };
}

vocabulary! {
    /// What a job makes.
    #[cfg_attr(feature = "utoipa", schema(as = JobKind))]
    Kind => JobKind {
        #[cfg_attr(feature = "clap", value(help = "Resize, crop, rotate, flip, convert"))]
        Transform = "transform",
        #[cfg_attr(feature = "clap", value(
            alias = "basic_clean",
            help = "Background removal: matting.png, white-bg.jpg, enhanced.jpg"
        ))]
        BasicClean = "basic_clean",
        #[cfg_attr(feature = "clap", value(help = "Model edit of each source image by a prompt"))]
        Edit = "edit",
        #[cfg_attr(feature = "clap", value(help = "Model images from a prompt alone; takes no sources"))]
        Generate = "generate",
        #[cfg_attr(feature = "clap", value(
            alias = "pose_set",
            help = "Twelve model shots of each product image in a scene"
        ))]
        PoseSet = "pose_set",
    }
}

vocabulary! {
    /// `queued → running → succeeded | partially_succeeded | failed | cancelled`.
    JobState => JobState {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        #[cfg_attr(feature = "clap", value(alias = "partially_succeeded"))]
        PartiallySucceeded = "partially_succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

vocabulary! {
    /// `queued → running → (retry_wait → running)* → succeeded | failed | cancelled`.
    TaskState => TaskState {
        Queued = "queued",
        Running = "running",
        #[cfg_attr(feature = "clap", value(alias = "retry_wait"))]
        RetryWait = "retry_wait",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

vocabulary! {
    /// How a resize fits the box.
    Fit => Fit {
        #[cfg_attr(feature = "clap", value(help = "Inside the box, keeping the aspect ratio; may upscale"))]
        Contain = "contain",
        #[cfg_attr(feature = "clap", value(help = "Cover the box, cropping the overflow"))]
        Cover = "cover",
        #[cfg_attr(feature = "clap", value(help = "Stretch to exactly the box"))]
        Fill = "fill",
        #[cfg_attr(feature = "clap", value(help = "Like contain, but never upscales"))]
        Inside = "inside",
    }
}

vocabulary! {
    /// An image format.
    ImageFormat => ImageFormat {
        #[cfg_attr(feature = "clap", value(alias = "jpg"))]
        Jpeg = "jpeg",
        Png = "png",
        Webp = "webp",
    }
}

vocabulary! {
    /// How basic_clean finds the subject: `auto` (the configured model, else classical), `model`
    /// (a segmentation model or matting service; 3006 without one), `classical` (plain
    /// backgrounds only).
    MattingMethod => MattingMethod {
        #[cfg_attr(feature = "clap", value(
            help = "The processor's segmentation model (or the one --model names), else classical"
        ))]
        Auto = "auto",
        #[cfg_attr(feature = "clap", value(
            help = "A segmentation model or remote matting service; 3006 when the processor has none"
        ))]
        Model = "model",
        #[cfg_attr(feature = "clap", value(help = "The border-colour estimate: plain backgrounds only"))]
        Classical = "classical",
    }
}

vocabulary! {
    /// Which basic_clean outputs to make.
    CleanTemplate => CleanTemplate {
        #[cfg_attr(feature = "clap", value(help = "matting + white-bg + enhanced"))]
        All = "all",
        #[cfg_attr(feature = "clap", value(
            help = "matting.png: the product on a transparent background"
        ))]
        Matting = "matting",
        #[cfg_attr(feature = "clap", value(
            alias = "white_bg",
            help = "white-bg.jpg: the product centred on white"
        ))]
        WhiteBg = "white_bg",
        #[cfg_attr(feature = "clap", value(help = "enhanced.jpg: levels, contrast, sharpening"))]
        Enhanced = "enhanced",
    }
}

vocabulary! {
    /// The setting of a pose_set shoot.
    Scene => Scene {
        Street = "street",
        Studio = "studio",
        Indoor = "indoor",
    }
}

impl Kind {
    /// The kind a set of parameters asks for.
    pub fn of(params: &pb::job_params::Params) -> Self {
        use pb::job_params::Params;
        match params {
            Params::Transform(_) => Self::Transform,
            Params::BasicClean(_) => Self::BasicClean,
            Params::Edit(_) => Self::Edit,
            Params::Generate(_) => Self::Generate,
            Params::PoseSet(_) => Self::PoseSet,
        }
    }

    /// Whether the kind runs on a model provider rather than the local engine.
    pub fn uses_model(self) -> bool {
        matches!(self, Self::Edit | Self::Generate | Self::PoseSet)
    }

    /// Whether jobs of this kind read source images (every kind but generate).
    pub fn takes_sources(self) -> bool {
        !matches!(self, Self::Generate)
    }
}

impl JobState {
    /// Terminal states never change again: succeeded, partially_succeeded, failed, cancelled.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// The states that still change.
    pub const ACTIVE: [Self; 2] = [Self::Queued, Self::Running];

    /// The states that never change again.
    pub const TERMINAL: [Self; 4] = [
        Self::Succeeded,
        Self::PartiallySucceeded,
        Self::Failed,
        Self::Cancelled,
    ];
}

impl TaskState {
    /// Terminal states never change again: succeeded, failed, cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The states that still need work.
    pub const ACTIVE: [Self; 3] = [Self::Queued, Self::Running, Self::RetryWait];

    /// The states of a task waiting for an attempt: a claim takes it from either.
    pub const WAITING: [Self; 2] = [Self::Queued, Self::RetryWait];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<W: Word + FromStr + PartialEq + fmt::Debug>() {
        for &word in W::ALL {
            assert_eq!(W::from_number(word.number()), Some(word));
            assert_eq!(word.as_str().parse::<W>().ok(), Some(word));
        }
        assert_eq!(W::from_number(0), None, "UNSPECIFIED is no word");
        assert_eq!(W::from_number(999), None);
        assert!("UNSPECIFIED".parse::<W>().is_err());
    }

    #[test]
    fn every_word_round_trips() {
        round_trips::<Kind>();
        round_trips::<JobState>();
        round_trips::<TaskState>();
        round_trips::<Fit>();
        round_trips::<ImageFormat>();
        round_trips::<MattingMethod>();
        round_trips::<CleanTemplate>();
        round_trips::<Scene>();
    }

    #[test]
    fn spellings_are_the_stored_ones() {
        assert_eq!(Kind::BasicClean.as_str(), "basic_clean");
        assert_eq!(Kind::PoseSet.to_proto(), pb::JobKind::PoseSet);
        assert_eq!(JobState::PartiallySucceeded.as_str(), "partially_succeeded");
        assert_eq!(TaskState::RetryWait.as_str(), "retry_wait");
        assert_eq!(CleanTemplate::WhiteBg.as_str(), "white_bg");
        assert_eq!(Kind::parse("basic-clean"), None);
        assert_eq!(
            "bogus"
                .parse::<Scene>()
                .expect_err("not a scene")
                .to_string(),
            "`bogus` is not a Scene"
        );
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<_> = JobState::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal.len(), 4);
        assert!(TaskState::ACTIVE.iter().all(|s| !s.is_terminal()));
        assert!(TaskState::WAITING
            .iter()
            .all(|s| TaskState::ACTIVE.contains(s) && *s != TaskState::Running));
        assert!(JobState::ACTIVE.iter().all(|s| !s.is_terminal()));
        assert!(TaskState::Cancelled.is_terminal());
    }

    #[test]
    fn a_job_state_is_terminal_or_active() {
        for &state in JobState::ALL {
            assert_eq!(JobState::TERMINAL.contains(&state), state.is_terminal());
            assert_eq!(JobState::ACTIVE.contains(&state), !state.is_terminal());
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn json_is_the_stored_form() {
        for &state in TaskState::ALL {
            assert_eq!(
                serde_json::to_string(&state).expect("json"),
                format!("\"{}\"", state.as_str())
            );
        }
        for &kind in Kind::ALL {
            assert_eq!(
                serde_json::from_str::<Kind>(&format!("\"{kind}\"")).expect("json"),
                kind
            );
        }
    }
}
