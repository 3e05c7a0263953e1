//! The command line: global connection flags and one subcommand per API call.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use atelier_types::{CleanTemplate, Fit, ImageFormat, JobState, Kind, MattingMethod, Scene};

/// `atelier`: the command-line client of Atelier.
#[derive(Debug, Parser)]
#[command(
    name = "atelier",
    version,
    about = "Command-line client of Atelier: upload images, submit and watch jobs, manage accounts"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where and as whom to call, and how to print.
#[derive(Clone, Debug, Args)]
pub struct Global {
    /// Orchestrator address.
    #[arg(
        long,
        global = true,
        env = "ATELIER_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// API key of the tenant (`atl_…`), sent as `authorization: Bearer`.
    #[arg(long, global = true, env = "ATELIER_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Account (external id) a tenant-wide key acts as, sent as `x-atelier-account`.
    #[arg(long, global = true, env = "ATELIER_ACCOUNT")]
    pub account: Option<String>,
    /// Admin token of the orchestrator, for `admin` commands.
    #[arg(
        long,
        global = true,
        env = "ATELIER_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Machine output: one JSON object per result, one per line. A job, its tasks and events are the
    /// REST API's JSON (`GET /v1/jobs/{id}`), the same a webhook delivers.
    #[arg(long, global = true, env = "ATELIER_JSON")]
    pub json: bool,
}

/// One call of the API.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload a local JPEG, PNG or WebP file; prints the upload id.
    Upload {
        /// The file to upload.
        file: PathBuf,
    },
    /// Submit a job; local files among the sources are uploaded first.
    Submit(Box<SubmitArgs>),
    /// Follow a job's events until it ends, then print its outputs.
    Watch(WatchArgs),
    /// Show a job.
    Get { job_id: String },
    /// Save every output of a job into a folder (default: the job id), checking each file's SHA-256.
    Download {
        job_id: String,
        /// Folder to save into; created if missing. Files land in `DIR/<task id>/<name>`.
        dir: Option<PathBuf>,
    },
    /// Delete a finished job: its outputs, thumbnails and events (the quota ledger keeps its rows).
    Delete { job_id: String },
    /// List jobs, newest first.
    List(ListArgs),
    /// Cancel every task of a job that is not finished yet (refunded).
    Cancel { job_id: String },
    /// Show the account: balance, membership, active jobs.
    Account(AccountArgs),
    /// List the account's quota ledger (grants, charges, refunds).
    Ledger(LedgerArgs),
    /// Webhook endpoints and their deliveries, with the tenant's key.
    #[command(subcommand)]
    Webhooks(WebhookCommand),
    /// Administration with the admin token.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Check a service's gRPC health; exits 0 only when it is SERVING.
    Health(HealthArgs),
    /// List the models the processors offer: id, provider and kinds.
    Models,
    /// Statistics of the caller's jobs: by state and kind, rates, durations, and upstream provider
    /// usage (calls, images, failures, seconds) per provider and model.
    Stats(StatsArgs),
}

/// The name of a kind written on the command line: `basic-clean`, `pose-set`, ….
pub fn kind_name(kind: Kind) -> String {
    kind.as_str().replace('_', "-")
}

/// `submit KIND SOURCES...`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// What to make.
    #[arg(value_enum)]
    pub kind: Kind,
    /// http(s) URLs, `upload:<id>`, or local files (uploaded first); one task each. Required for
    /// every kind but generate, which takes none.
    pub sources: Vec<String>,
    // Before the kinds' options: a flattened group's help heading carries over to later fields.
    /// Submitting again with the same key returns the original job instead of a new one.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// A label `key=value` on the job; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Receives signed webhook deliveries of this job's terminal events.
    #[arg(long)]
    pub callback_url: Option<String>,
    /// Follow the job until it ends, like `watch`.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub transform: TransformArgs,
    #[command(flatten)]
    pub clean: CleanArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Options of `submit basic-clean`.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "basic-clean")]
pub struct CleanArgs {
    /// Which outputs to make (default all).
    #[arg(long, value_enum)]
    pub template: Option<CleanTemplate>,
    /// How the subject is found (default auto: the processor's model when it has one).
    #[arg(long, value_enum)]
    pub method: Option<MattingMethod>,
    /// A cut-out rated below this (0..1) fails with 3010 and is refunded (default 0.5).
    #[arg(long, value_parser = parse_confidence)]
    pub min_confidence: Option<f32>,
}

/// Options of `submit transform`.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "transform")]
pub struct TransformArgs {
    /// Target width in pixels (height follows the aspect ratio when not given). generate: the
    /// image width, given with --height (neither: the model's default).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub width: Option<u32>,
    /// Target height in pixels (width follows the aspect ratio when not given). generate: the
    /// image height, given with --width.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub height: Option<u32>,
    /// How the image fits the width × height box.
    #[arg(long, value_enum)]
    pub fit: Option<Fit>,
    /// Crop before resizing: `X,Y,WIDTH,HEIGHT` in source pixels.
    #[arg(long, value_name = "X,Y,W,H", value_parser = parse_crop)]
    pub crop: Option<[u32; 4]>,
    /// Output format (default: the source's).
    #[arg(long, value_enum)]
    pub format: Option<ImageFormat>,
    /// JPEG/WebP quality 1..=100 (default 85). WebP is lossy at this quality; 100 means lossless.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub quality: Option<u32>,
    /// Lossless WebP whatever --quality (without it WebP is lossy unless --quality 100). PNG is
    /// always lossless; JPEG has no lossless mode, so the server refuses it with a JPEG output.
    #[arg(long)]
    pub lossless: bool,
    /// Clockwise rotation in degrees: 0, 90, 180 or 270.
    #[arg(long, value_parser = parse_rotation)]
    pub rotate: Option<u32>,
    /// Mirror left to right.
    #[arg(long)]
    pub flip_h: bool,
    /// Mirror top to bottom.
    #[arg(long)]
    pub flip_v: bool,
}

impl TransformArgs {
    /// Whether any transform option was given.
    pub fn any(&self) -> bool {
        self.width.is_some()
            || self.height.is_some()
            || self.fit.is_some()
            || self.crop.is_some()
            || self.format.is_some()
            || self.quality.is_some()
            || self.lossless
            || self.rotate.is_some()
            || self.flip_h
            || self.flip_v
    }
}

/// Options of the model kinds: `submit edit`, `submit generate`, `submit pose-set`.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "edit, generate, pose-set")]
pub struct ModelArgs {
    /// edit, generate: what to make (required).
    #[arg(long)]
    pub prompt: Option<String>,
    /// edit, generate: what to keep out of the image.
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// edit, generate, pose-set (and basic-clean's matting step): the model id (default: the
    /// processor's).
    #[arg(long)]
    pub model: Option<String>,
    /// edit, generate: a fixed seed, for repeatable (and cacheable) results.
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<i64>,
    /// edit: output size `WIDTHxHEIGHT`, e.g. 1024x1024 (default: the model's).
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// edit, generate: images to make, 1..=4 (default 1); each is charged.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub num_images: Option<u32>,
    /// generate: sampling steps, 1..=500 (default: the model's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub steps: Option<u32>,
    /// generate: how closely to follow the prompt, 0..=100 (default: the model's).
    #[arg(long, value_parser = parse_guidance)]
    pub guidance_scale: Option<f32>,
    /// pose-set: where the shots are set (default studio).
    #[arg(long, value_enum)]
    pub scene: Option<Scene>,
    /// pose-set: the product category, e.g. shoes, dress, hoodie (required).
    #[arg(long)]
    pub category: Option<String>,
    /// pose-set: a few words about the product.
    #[arg(long)]
    pub description: Option<String>,
}

/// `--min-confidence`: a number in 0..=1.
fn parse_confidence(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number between 0 and 1")),
    }
}

/// `watch JOB_ID`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    pub job_id: String,
    /// Only events after this sequence (resume an earlier watch).
    #[arg(long, default_value_t = 0)]
    pub after: u64,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum)]
    pub state: Option<JobState>,
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,
    /// Only jobs with this label, `key=value`.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Option<String>,
    /// 1..=100 (default 20).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub page_size: Option<u32>,
    /// The `next page` token of an earlier list.
    #[arg(long)]
    pub page_token: Option<String>,
}

/// `account`.
#[derive(Debug, Args)]
pub struct AccountArgs {
    /// As admin: the tenant of the account named by --account.
    #[arg(long)]
    pub tenant: Option<String>,
}

/// `stats`: jobs created in a range (both ends optional).
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Jobs created at or after this RFC 3339 time.
    #[arg(long, value_parser = parse_timestamp)]
    pub created_gte: Option<prost_types::Timestamp>,
    /// Jobs created before this RFC 3339 time.
    #[arg(long, value_parser = parse_timestamp)]
    pub created_lt: Option<prost_types::Timestamp>,
}

/// `ledger`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// As admin: the tenant of the account named by --account.
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub page_size: Option<u32>,
    #[arg(long)]
    pub page_token: Option<String>,
}

/// `admin …`: calls that need the admin token.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a tenant; prints its id.
    CreateTenant { name: String },
    /// Issue an API key; prints the secret (shown only once).
    CreateKey {
        tenant_id: String,
        /// Make a key that acts only as this account (default: tenant-wide).
        #[arg(long)]
        for_account: Option<String>,
    },
    /// Revoke an API key by its id.
    RevokeKey { key_id: String },
    /// Create an account (a no-op when it exists).
    UpsertAccount {
        tenant_id: String,
        external_id: String,
    },
    /// Add quota units to an account.
    Grant {
        tenant_id: String,
        account: String,
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        amount: i64,
        /// Why, for the ledger.
        #[arg(long, default_value = "granted with the atelier CLI")]
        reason: String,
        /// A second grant with the same key changes nothing.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Turn an account's membership on or off.
    Membership {
        tenant_id: String,
        account: String,
        #[arg(long, action = ArgAction::Set, required = true, value_name = "true|false")]
        active: bool,
        /// When the membership ends, RFC 3339 (e.g. 2030-01-01T00:00:00Z).
        #[arg(long, value_parser = parse_timestamp)]
        expires_at: Option<prost_types::Timestamp>,
    },
    /// Set how many days a tenant's results, uploads and job events are kept (0: the default).
    Retention {
        tenant_id: String,
        /// Finished jobs with their outputs, counted from when they finished.
        #[arg(long, default_value_t = 0)]
        output_days: u32,
        /// Uploads, counted from the upload.
        #[arg(long, default_value_t = 0)]
        upload_days: u32,
        /// Events (the log) of finished jobs.
        #[arg(long, default_value_t = 0)]
        event_days: u32,
    },
}

/// `webhooks …`: endpoints of the key's tenant (or of its account, for an account-scoped key).
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint for the tenant's jobs, or with --account for one account's; prints its
    /// signing secret, shown only this once.
    Create {
        /// The receiver, an http(s) URL.
        url: String,
        /// Which events to deliver, comma separated (default: terminal).
        #[arg(long, value_enum, value_delimiter = ',')]
        events: Vec<WebhookEventArg>,
    },
    /// List the endpoints; with a tenant-wide key the first, without a URL, signs the deliveries to
    /// jobs' callback URLs and shows its secret.
    List,
    /// Delete an endpoint by its id, or every endpoint of yours with this URL; pending deliveries
    /// are given up.
    Delete {
        /// An endpoint id, or an http(s) URL. (Not named `endpoint`: that is the global
        /// orchestrator address, which clap would fill from this argument.)
        #[arg(value_name = "ID_OR_URL")]
        target: String,
    },
    /// List delivery attempts, oldest first.
    Deliveries(DeliveriesArgs),
}

/// `--events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WebhookEventArg {
    /// The job's end: succeeded, partially succeeded, failed or cancelled.
    Terminal,
    /// Every progress event of the job's tasks.
    Progress,
}

impl WebhookEventArg {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Terminal => "terminal",
            Self::Progress => "progress",
        }
    }
}

/// `webhooks deliveries`.
#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// Only attempts of this endpoint (`--endpoint` is the orchestrator's address).
    #[arg(long)]
    pub endpoint_id: Option<String>,
    /// Only attempts of this job's events.
    #[arg(long)]
    pub job: Option<String>,
    /// 1..=100 (default 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub page_size: Option<u32>,
    /// The `next page` token of an earlier list.
    #[arg(long)]
    pub page_token: Option<String>,
}

/// `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Keep trying for up to this many seconds until the service is SERVING.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub wait: Option<f64>,
    /// The service name to check (default: the whole server).
    #[arg(long, default_value = "")]
    pub service: String,
    /// Check an HTTP URL instead (the gateway's `/healthz`): healthy when it answers 200.
    #[arg(long)]
    pub http: bool,
}

/// Parses `key=value`; the key must be non-empty.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("label `{s}` must be key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("label `{s}` has an empty key"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses `X,Y,WIDTH,HEIGHT`.
pub fn parse_crop(s: &str) -> Result<[u32; 4], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [x, y, w, h] = parts.as_slice() else {
        return Err(format!("crop `{s}` must be X,Y,WIDTH,HEIGHT"));
    };
    let number = |v: &str| {
        v.parse::<u32>()
            .map_err(|_| format!("crop `{s}`: `{v}` is not a whole number"))
    };
    let crop = [number(x)?, number(y)?, number(w)?, number(h)?];
    if crop[2] == 0 || crop[3] == 0 {
        return Err(format!("crop `{s}`: width and height must be above 0"));
    }
    Ok(crop)
}

/// Parses `WIDTHxHEIGHT` (either `x` or `X`), both sides above 0.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let parsed = s
        .trim()
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    match parsed {
        Some((w, h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(format!("size `{s}` must be WIDTHxHEIGHT, e.g. 1024x1024")),
    }
}

/// Parses a guidance scale from 0 to 100.
pub fn parse_guidance(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "guidance scale `{s}` must be a number from 0 to 100"
        )),
    }
}

/// Parses a clockwise rotation of 0, 90, 180 or 270 degrees.
pub fn parse_rotation(s: &str) -> Result<u32, String> {
    match s.trim() {
        "0" => Ok(0),
        "90" => Ok(90),
        "180" => Ok(180),
        "270" => Ok(270),
        _ => Err(format!("rotation `{s}` must be 0, 90, 180 or 270")),
    }
}

/// Parses an RFC 3339 time.
pub fn parse_timestamp(s: &str) -> Result<prost_types::Timestamp, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an RFC 3339 time such as 2030-01-01T00:00:00Z"))
}

/// Parses a non-negative, finite number of seconds.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_need_a_key_and_an_equals_sign() {
        assert_eq!(
            parse_label("team=shoes").ok(),
            Some(("team".into(), "shoes".into()))
        );
        assert_eq!(
            parse_label("note=a=b").ok(),
            Some(("note".into(), "a=b".into()))
        );
        assert_eq!(
            parse_label("empty=").ok(),
            Some(("empty".into(), String::new()))
        );
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=value").is_err());
        assert!(parse_label(" =value").is_err());
    }

    #[test]
    fn crops_rotations_times_and_seconds() {
        assert_eq!(parse_crop("1, 2,30,40"), Ok([1, 2, 30, 40]));
        assert!(parse_crop("1,2,3").is_err());
        assert!(parse_crop("1,2,0,4").is_err());
        assert!(parse_crop("a,2,3,4").is_err());
        assert_eq!(parse_rotation("270"), Ok(270));
        assert!(parse_rotation("45").is_err());
        assert_eq!(
            parse_timestamp("2030-01-01T00:00:00Z").map(|t| t.seconds),
            Ok(1_893_456_000)
        );
        assert!(parse_timestamp("tomorrow").is_err());
        assert_eq!(parse_seconds("1.5"), Ok(1.5));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from([
            "atelier",
            "submit",
            "transform",
            "a.jpg",
            "--width",
            "800",
            "--format",
            "webp",
            "--label",
            "a=b",
            "--json",
        ]);
        let cli = match cli {
            Ok(cli) => cli,
            Err(e) => panic!("parse failed: {e}"),
        };
        assert!(cli.global.json);
        let Command::Submit(submit) = cli.command else {
            panic!("not submit")
        };
        assert_eq!(submit.kind, Kind::Transform);
        assert_eq!(submit.transform.width, Some(800));
        assert_eq!(submit.labels, vec![("a".to_string(), "b".to_string())]);
    }

    #[test]
    fn webhook_commands_parse() {
        let cli = Cli::try_parse_from([
            "atelier",
            "webhooks",
            "create",
            "https://shop.example/hooks",
            "--events",
            "terminal,progress",
        ]);
        match cli.map(|c| c.command) {
            Ok(Command::Webhooks(WebhookCommand::Create { url, events })) => {
                assert_eq!(url, "https://shop.example/hooks");
                assert_eq!(
                    events,
                    [WebhookEventArg::Terminal, WebhookEventArg::Progress]
                );
            }
            other => panic!("not webhooks create: {other:?}"),
        }
        // The orchestrator's address (global --endpoint) and the webhook endpoint stay apart.
        let cli = Cli::try_parse_from([
            "atelier",
            "--endpoint",
            "http://127.0.0.1:1",
            "webhooks",
            "delete",
            "https://shop.example/hooks",
        ]);
        match cli {
            Ok(Cli {
                global,
                command: Command::Webhooks(WebhookCommand::Delete { target }),
            }) => {
                assert_eq!(global.endpoint, "http://127.0.0.1:1");
                assert_eq!(target, "https://shop.example/hooks");
            }
            other => panic!("not webhooks delete: {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "atelier",
            "--endpoint",
            "http://127.0.0.1:1",
            "webhooks",
            "deliveries",
        ]);
        assert!(
            matches!(
                cli.map(|c| c.command),
                Ok(Command::Webhooks(WebhookCommand::Deliveries(
                    DeliveriesArgs {
                        endpoint_id: None,
                        ..
                    }
                )))
            ),
            "deliveries without --endpoint-id"
        );
        let cli = Cli::try_parse_from(["atelier", "webhooks", "deliveries", "--job", "j1"]);
        assert!(
            matches!(
                cli.map(|c| c.command),
                Ok(Command::Webhooks(WebhookCommand::Deliveries(DeliveriesArgs { job: Some(ref j), .. }))) if j == "j1"
            ),
            "deliveries --job"
        );
    }

    #[test]
    fn sizes_and_guidance_scales() {
        assert_eq!(parse_size("1024x768"), Ok((1024, 768)));
        assert_eq!(parse_size(" 512 X 512 "), Ok((512, 512)));
        assert!(parse_size("1024").is_err());
        assert!(parse_size("0x512").is_err());
        assert!(parse_size("axb").is_err());
        assert_eq!(parse_guidance("7.5"), Ok(7.5));
        assert_eq!(parse_guidance("0"), Ok(0.0));
        assert!(parse_guidance("100.5").is_err());
        assert!(parse_guidance("-1").is_err());
        assert!(parse_guidance("inf").is_err());
    }

    #[test]
    fn the_model_kinds_parse() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["atelier", "submit"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv) {
                Ok(Cli {
                    command: Command::Submit(submit),
                    ..
                }) => submit,
                Ok(other) => panic!("not a submit: {other:?}"),
                Err(e) => panic!("{args:?} does not parse: {e}"),
            }
        };
        let generate = parse(&["generate", "--prompt", "a red sneaker", "--seed", "-3"]);
        assert_eq!(generate.kind, Kind::Generate);
        assert!(generate.sources.is_empty());
        assert_eq!(generate.model.seed, Some(-3));
        let edit = parse(&["edit", "a.jpg", "--size", "1024x1024", "--num-images", "4"]);
        assert_eq!(edit.kind, Kind::Edit);
        assert_eq!(edit.model.size, Some((1024, 1024)));
        assert_eq!(edit.model.num_images, Some(4));
        for alias in ["pose-set", "pose_set"] {
            let pose = parse(&[alias, "a.jpg", "--scene", "street", "--category", "shoes"]);
            assert_eq!(pose.kind, Kind::PoseSet);
            assert_eq!(pose.model.scene, Some(Scene::Street));
        }
        let list = Cli::try_parse_from(["atelier", "list", "--kind", "pose_set"]);
        assert!(
            matches!(
                list,
                Ok(Cli {
                    command: Command::List(ListArgs {
                        kind: Some(Kind::PoseSet),
                        ..
                    }),
                    ..
                })
            ),
            "{list:?}"
        );
    }

    #[test]
    fn usage_mistakes_are_refused_by_the_parser() {
        for args in [
            vec!["atelier", "submit", "resize", "a.jpg"],
            vec!["atelier", "submit", "edit", "a.jpg", "--num-images", "5"],
            vec!["atelier", "submit", "generate", "--num-images", "0"],
            vec!["atelier", "submit", "edit", "a.jpg", "--size", "1024"],
            vec!["atelier", "submit", "generate", "--steps", "501"],
            vec!["atelier", "submit", "generate", "--guidance-scale", "nan"],
            vec!["atelier", "submit", "pose-set", "a.jpg", "--scene", "beach"],
            vec!["atelier", "submit", "transform", "a.jpg", "--quality", "0"],
            vec!["atelier", "submit", "transform", "a.jpg", "--rotate", "45"],
            vec!["atelier", "submit", "transform", "a.jpg", "--label", "nope"],
            vec!["atelier", "admin", "grant", "t", "a", "0"],
            vec!["atelier", "webhooks", "create"],
            vec![
                "atelier",
                "webhooks",
                "create",
                "https://h",
                "--events",
                "everything",
            ],
            vec!["atelier", "webhooks", "deliveries", "--page-size", "0"],
            vec!["atelier", "admin", "membership", "t", "a"],
            vec![
                "atelier",
                "admin",
                "membership",
                "t",
                "a",
                "--active",
                "maybe",
            ],
        ] {
            assert!(
                Cli::try_parse_from(&args).is_err(),
                "{args:?} should be refused"
            );
        }
    }
}
