//! A Functions host stand-in (Azure Functions Core Tools cannot be installed
//! here). It reads the app like the host, starts `handler` with the host's
//! environment, and serves 127.0.0.1:7071 in proxy, forward or invocation-payload mode.
//!
//! | file | what |
//! |---|---|
//! | `app.rs` | host.json, local.settings.json, function folders |
//! | `route.rs` | ASP.NET route templates |
//! | `worker.rs` | launch, readiness, console, exit codes and restarts |
//! | `dispatch.rs` | routing, keys, forward and payload dispatch |

pub mod app;
pub mod dispatch;
pub mod route;
pub mod worker;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use app::FunctionApp;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use worker::{LaunchSpec, Worker};

/// The largest request body the host accepts (Core Tools: 104857600 bytes).
pub const MAX_REQUEST_BODY: usize = 104_857_600;

/// The host's default request-body limit in every mode
/// (`ScriptConstants.DefaultMaxRequestBodySize`), raised with the app setting
/// `FUNCTIONS_REQUEST_BODY_SIZE_LIMIT` (A10b).
pub const BODY_SIZE_LIMIT_SETTING: &str = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT";

/// How HTTP functions are dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostMode {
    /// As host.json says, like the real host (`auto`): proxying wins over
    /// forwarding for HTTP-in/out functions; everything else gets payloads.
    #[value(name = "auto")]
    FromHostJson,
    /// Proxy HTTP-in/out functions (YARP: verbatim, streamed both ways).
    Proxy,
    /// Forward HTTP-in/out functions as raw requests (the legacy mode).
    Forward,
    /// Send every invocation as a `{Data, Metadata}` payload.
    Payload,
}

/// Function keys, as `func start --enableAuth` would have them.
#[derive(Debug, Clone)]
pub struct Keys {
    pub master: String,
    /// The host's `default` function key.
    pub function: String,
}

/// 32 random bytes (two v4 UUIDs' worth), base64url like Core Tools' keys.
fn random_key() -> String {
    let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

pub struct HostOptions {
    pub app_root: PathBuf,
    /// Where the front door listens (7071 like `func start`; 0 picks a free port).
    pub port: u16,
    pub mode: HostMode,
    pub enforce_keys: bool,
    /// Use this executable instead of `defaultExecutablePath` (e.g. target/debug/handler).
    pub executable: Option<PathBuf>,
    /// The platform's environment on top of ours (devstack's endpoints); these
    /// win over local.settings.json `Values`, as existing variables do in Core Tools.
    pub platform_env: Vec<(String, String)>,
}

/// State shared with the front door.
pub struct HostShared {
    pub app: FunctionApp,
    pub worker: Worker,
    pub mode: HostMode,
    pub enforce_keys: bool,
    pub keys: Keys,
    pub http: reqwest::Client,
    /// Proxy mode's client: no overall timeout (responses stream), YARP's
    /// 240 s activity timeout instead.
    pub proxy_http: reqwest::Client,
    /// The request-body limit (`FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`, default 100 MB).
    pub body_limit: u64,
    /// `Logs` from payload replies: (invocation id, line).
    pub logs: Mutex<Vec<(String, String)>>,
}

pub struct FunctionsHost {
    pub shared: web::Data<HostShared>,
    pub url: String,
    server: ServerHandle,
}

impl FunctionsHost {
    pub async fn start(options: HostOptions) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        let app = FunctionApp::load(&options.app_root)?;
        for (name, error) in &app.errors {
            tracing::warn!(function = %name, %error, "function skipped");
        }
        anyhow::ensure!(
            !app.functions.is_empty(),
            "no functions found under {}: the host would not start the handler",
            app.root.display()
        );

        let listener = TcpListener::bind(("127.0.0.1", options.port))
            .with_context(|| format!("binding 127.0.0.1:{}", options.port))?;
        let front_port = listener.local_addr()?.port();
        let worker_port = crate::free_port()?;

        // Environment: ours + platform, then Values where not already set, then the host's own.
        let mut env: BTreeMap<String, String> = std::env::vars().collect();
        env.extend(options.platform_env.iter().cloned());
        for (k, v) in &app.values {
            env.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let root = app.root.display().to_string();
        env.insert("AZURE_FUNCTIONS_ENVIRONMENT".into(), "Development".into());
        env.insert("WEBSITE_HOSTNAME".into(), format!("localhost:{front_port}"));
        env.insert("AzureWebJobsScriptRoot".into(), root.clone());
        env.insert(
            "FUNCTIONS_CUSTOMHANDLER_PORT".into(),
            worker_port.to_string(),
        );
        env.insert("FUNCTIONS_HTTPWORKER_PORT".into(), worker_port.to_string());
        env.insert("FUNCTIONS_APP_ROOT_PATH".into(), root);

        let body_limit = env
            .get(BODY_SIZE_LIMIT_SETTING)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(MAX_REQUEST_BODY as u64);
        let spec = LaunchSpec::new(&app, options.executable.clone(), env, worker_port);
        tracing::info!(program = %spec.program, cwd = %spec.cwd.display(), port = worker_port, "starting the custom handler");
        let worker = Worker::start(spec);
        let timeout = app
            .host
            .function_timeout
            .unwrap_or(Duration::from_secs(30 * 60))
            + Duration::from_secs(60);
        let shared = web::Data::new(HostShared {
            app,
            worker,
            mode: options.mode,
            enforce_keys: options.enforce_keys,
            keys: Keys {
                master: random_key(),
                function: random_key(),
            },
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_gzip()
                .no_deflate()
                .timeout(timeout)
                .build()?,
            proxy_http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_gzip()
                .no_deflate()
                .read_timeout(Duration::from_secs(240))
                .build()?,
            body_limit,
            logs: Mutex::default(),
        });
        let data = shared.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(dispatch::front_door))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            shared,
            url: format!("http://127.0.0.1:{front_port}"),
            server: handle,
        })
    }

    /// Waits for the handler's first readiness.
    pub async fn ready(&self, timeout: Duration) -> bool {
        self.shared.worker.ready(timeout).await.is_some()
    }

    pub fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
        self.shared.worker.stop().await;
    }
}
