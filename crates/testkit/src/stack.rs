//! The product on 127.0.0.1 for one test: a fresh database (a SQLite file or a new PostgreSQL
//! database), a real processor, a real orchestrator and, when asked, a real gateway in front, all on
//! free ports and sharing one storage folder. The orchestrator, gateway and CLI suites start it the
//! same way:
//!
//! ```ignore
//! let stack = Stack::builder(Backend::Postgres)
//!     .orchestrator(|c| c.max_attempts = 2)
//!     .gateway(|_| {})
//!     .start()
//!     .await;
//! ```

use std::path::PathBuf;
use std::time::Duration;

use atelier_gateway::RunningGateway;
use atelier_orchestrator::RunningOrchestrator;
use atelier_processor::RunningProcessor;
use sea_orm::ConnectionTrait;

/// The admin token of every stack.
pub const ADMIN: &str = "test-admin-token";
/// The token the orchestrator and the processor share, and outside workers report with.
pub const SERVICE: &str = "test-service-token";
/// The secret the orchestrator signs result links with and the gateway checks them with.
pub const LINK_SECRET: &str = "test-link-secret-0123456789";

/// Which database a stack runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named async test body (`async fn name(backend: Backend)`) on both databases, as
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::stack::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::stack::Backend::Postgres).await
                }
            }
        )+
    };
}

/// A fresh database URL: a SQLite file in `dir`, or a new database on the PostgreSQL server at
/// 127.0.0.1:5432.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}/atelier.db", dir.display()),
        Backend::Postgres => {
            let admin = sea_orm::Database::connect("postgres://postgres@127.0.0.1:5432/postgres")
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 (run scripts/install-test-deps.sh)");
            let name = format!("atelier_test_{}", uuid::Uuid::new_v4().simple());
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            admin.close().await.ok();
            format!("postgres://postgres@127.0.0.1:5432/{name}")
        }
    }
}

/// A running stack. Its folder (database file, objects) lives as long as it does.
pub struct Stack {
    pub processor: RunningProcessor,
    pub orchestrator: RunningOrchestrator,
    /// The gateway, when the builder asked for one.
    pub gateway: Option<RunningGateway>,
    pub database_url: String,
    /// The storage folder the services share.
    pub objects: PathBuf,
    /// The stack's folder.
    pub root: tempfile::TempDir,
}

type Adjust<'a, C> = Box<dyn FnOnce(&mut C) + 'a>;

/// Where a stack's database comes from.
enum Database {
    /// A fresh one of this backend, in a new folder.
    Fresh(Backend),
    /// One the test made, in its folder.
    Given(tempfile::TempDir, String),
}

/// How to start a [`Stack`]: each service's configuration adjusted after the test defaults.
pub struct Builder<'a> {
    database: Database,
    processor: Adjust<'a, atelier_processor::Config>,
    orchestrator: Adjust<'a, atelier_orchestrator::Config>,
    gateway: Option<Adjust<'a, atelier_gateway::Config>>,
}

impl Stack {
    /// A stack on a fresh database of `backend`.
    pub fn builder<'a>(backend: Backend) -> Builder<'a> {
        Builder::new(Database::Fresh(backend))
    }

    /// A stack on the database at `url` the test made, in `root` (kept as long as the stack).
    pub fn builder_on<'a>(root: tempfile::TempDir, url: String) -> Builder<'a> {
        Builder::new(Database::Given(root, url))
    }

    /// The gateway, for a stack started with one.
    pub fn gateway(&self) -> &RunningGateway {
        self.gateway
            .as_ref()
            .expect("the stack was started with a gateway")
    }
}

impl<'a> Builder<'a> {
    fn new(database: Database) -> Self {
        Self {
            database,
            processor: Box::new(|_| {}),
            orchestrator: Box::new(|_| {}),
            gateway: None,
        }
    }

    /// Adjusts the processor's configuration.
    pub fn processor(mut self, adjust: impl FnOnce(&mut atelier_processor::Config) + 'a) -> Self {
        self.processor = Box::new(adjust);
        self
    }

    /// Adjusts the orchestrator's configuration.
    pub fn orchestrator(
        mut self,
        adjust: impl FnOnce(&mut atelier_orchestrator::Config) + 'a,
    ) -> Self {
        self.orchestrator = Box::new(adjust);
        self
    }

    /// Starts a gateway in front, its configuration adjusted; the orchestrator's result links then
    /// point at the gateway's `/v1/files/`, signed with [`LINK_SECRET`].
    pub fn gateway(mut self, adjust: impl FnOnce(&mut atelier_gateway::Config) + 'a) -> Self {
        self.gateway = Some(Box::new(adjust));
        self
    }

    /// Starts the processor, the orchestrator and the gateway (when asked), in that order.
    pub async fn start(self) -> Stack {
        let (root, database_url) = match self.database {
            Database::Given(root, url) => (root, url),
            Database::Fresh(backend) => {
                let root = tempfile::tempdir().expect("temp dir");
                let url = fresh_database(backend, root.path()).await;
                (root, url)
            }
        };
        let objects = root.path().join("objects");
        let folder = objects.display().to_string();
        let mut pconfig = atelier_processor::Config::new(SERVICE, folder.clone());
        pconfig.allow_private_sources = vec!["127.0.0.1/32".parse().expect("cidr")];
        pconfig.download_timeout = Duration::from_secs(5);
        (self.processor)(&mut pconfig);
        let processor = atelier_processor::spawn(pconfig)
            .await
            .expect("processor starts");
        let mut config = atelier_orchestrator::Config::new(
            database_url.clone(),
            folder.clone(),
            vec![processor.url()],
        );
        config.admin_token = ADMIN.into();
        config.service_token = SERVICE.into();
        config.poll_seconds = 0.05;
        config.retry_base_seconds = 0.05;
        config.lease_seconds = 5.0;
        // Bound first, so the orchestrator can mint links to the gateway's `/v1/files/`.
        let gateway_listener = match self.gateway {
            Some(_) => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind the gateway");
                let address = listener.local_addr().expect("gateway address");
                config.link_secret = Some(LINK_SECRET.into());
                config.files_base_url = Some(format!("http://{address}"));
                Some(listener)
            }
            None => None,
        };
        (self.orchestrator)(&mut config);
        let orchestrator = atelier_orchestrator::spawn(config)
            .await
            .expect("orchestrator starts");
        let gateway = match (self.gateway, gateway_listener) {
            (Some(adjust), Some(listener)) => {
                let mut gconfig = atelier_gateway::Config::new(orchestrator.url());
                gconfig.storage = Some(folder);
                gconfig.link_secret = Some(LINK_SECRET.into());
                adjust(&mut gconfig);
                Some(
                    atelier_gateway::spawn_on(gconfig, listener)
                        .await
                        .expect("gateway starts"),
                )
            }
            _ => None,
        };
        Stack {
            processor,
            orchestrator,
            gateway,
            database_url,
            objects,
            root,
        }
    }
}
