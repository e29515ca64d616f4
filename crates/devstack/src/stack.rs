//! Starting and stopping the whole local Azure: identity endpoint + issuer,
//! Key Vault, Azurite, the EasyAuth gate and app2, Graph, and a partner
//! tenant (its token endpoint and its API).

use crate::azurite::{self, Azurite};
use crate::easyauth::{GateConfig, GateState};
use crate::graph::GraphState;
use crate::identity_endpoint::{self, IdentityState};
use crate::issuer::Issuer;
use crate::keyvault::{self, SeedFile, SeedSecret, VaultState};
use crate::login::LoginState;
use crate::scenario::Scenario;
use crate::tls::{LocalTls, TlsFiles};
use crate::traces::TraceStore;
use crate::validate::TokenValidator;
use crate::world::World;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use app_telemetry::{Export, Telemetry};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// How long finished spans wait before a batch goes to the viewer: short, so a
/// run shows up while you look (the SDK's default is 5 s).
pub const EXPORT_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// The seed secrets used when no file is given.
/// The container app1's callers may use (`BLOB_CONTAINERS`), as in the Bicep.
pub const DATA_CONTAINER: &str = "app1-data";
/// Where `flow` writes its records (`AUDIT_CONTAINER`), as in the Bicep.
pub const AUDIT_CONTAINER: &str = "audit";
/// The containers devstack creates in Azurite at start, as the Bicep does in Azure.
pub const APP_CONTAINERS: &[&str] = &[DATA_CONTAINER, AUDIT_CONTAINER];

pub const DEFAULT_SEED: &str = include_str!("../seed/secrets.json");

/// Ports to listen on; 0 picks a free one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ports {
    pub identity: u16,
    pub keyvault: u16,
    pub storage: u16,
    pub gate: u16,
    /// Microsoft Graph (HTTPS).
    pub graph: u16,
    /// The partner tenant's token endpoint (HTTPS).
    pub login: u16,
    /// The trace viewer and OTLP/HTTP receiver.
    pub traces: u16,
}

impl Ports {
    /// The documented fixed ports (`devstack up --fixed-ports`).
    pub fn fixed() -> Self {
        Self {
            identity: 41564,
            keyvault: 8443,
            storage: 10000,
            gate: 8444,
            graph: 8445,
            login: 8446,
            traces: 4318,
        }
    }
}

#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Certificates, the authsettings file and the Azurite install live here.
    pub state_dir: PathBuf,
    pub ports: Ports,
    /// Start Azurite (needs Node.js).
    pub azurite: bool,
    /// Where Azurite is installed (shared between runs); default `<state_dir>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Seed secrets file; `None` uses [`DEFAULT_SEED`].
    pub seed_file: Option<PathBuf>,
    /// The world to simulate.
    pub world: World,
    /// One classic failure to reproduce.
    pub scenario: Option<Scenario>,
}

impl StackOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            ports: Ports::default(),
            azurite: true,
            cache_dir: None,
            seed_file: None,
            world: World::new(),
            scenario: None,
        }
    }
}

/// A running devstack.
pub struct Stack {
    pub world: Arc<RwLock<World>>,
    pub identity: web::Data<IdentityState>,
    pub gate: web::Data<GateState>,
    pub graph: web::Data<GraphState>,
    pub tls: TlsFiles,
    pub ca_pem: String,
    pub identity_url: String,
    pub keyvault_url: String,
    pub storage_url: Option<String>,
    pub gate_url: String,
    pub app2_url: String,
    /// Graph's v1.0 base (`…/v1.0`), as DOWNSTREAM_APIS__GRAPH__BASE_URL.
    pub graph_url: String,
    /// The partner tenant's authority (`DEVSTACK_LOGIN_AUTHORITY`, app1's LOGIN_AUTHORITY).
    pub login_url: String,
    /// The partner API (app2's code, validating tenant-B tokens itself).
    pub partner_url: String,
    pub auth_settings_file: PathBuf,
    pub seed_secret: String,
    pub scenario: Option<Scenario>,
    /// The trace viewer: OTLP/HTTP in, the page and `/api/traces` out.
    pub traces_url: String,
    pub traces: web::Data<TraceStore>,
    /// app2's tracer provider, flushed on stop.
    app2_telemetry: Telemetry,
    servers: Vec<ServerHandle>,
    azurite: Option<Azurite>,
}

/// app2's settings in this world, as App Service with EasyAuth on would give them.
pub fn app2_settings(world: &World, authority: &str) -> app2::Settings {
    app2::Settings {
        port: 0,
        required_role: app2::DEFAULT_REQUIRED_ROLE.into(),
        auth: app2::AuthSettings {
            tenant_id: world.tenant_id.clone(),
            client_id: world.app2.client_id.clone(),
            app_id_uri: world.app2.app_id_uri.clone(),
            authority: authority.to_owned(),
            easyauth_enabled: true,
        },
    }
}

/// The partner API's settings: app2's code, registered in the partner tenant,
/// requiring its own role. No EasyAuth in front: it validates every token itself.
pub fn partner_settings(world: &World, authority: &str) -> app2::Settings {
    let api = &world.partner.api;
    app2::Settings {
        port: 0,
        required_role: crate::world::PARTNER_ROLE.into(),
        auth: app2::AuthSettings {
            tenant_id: world.partner.tenant_id.clone(),
            client_id: api.client_id.clone(),
            app_id_uri: api.app_id_uri.clone(),
            authority: authority.to_owned(),
            easyauth_enabled: false,
        },
    }
}

/// Runs one stand-in on its own 2-worker server, over TLS when given a config.
fn serve<D: Send + Sync + 'static>(
    data: web::Data<D>,
    configure: fn(&mut web::ServiceConfig),
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
) -> anyhow::Result<ServerHandle> {
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .workers(2)
        .disable_signals();
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config)?,
        None => server.listen(listener)?,
    }
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

fn bind(port: u16) -> anyhow::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        let state_dir = &options.state_dir;
        std::fs::create_dir_all(state_dir)?;
        let tls = LocalTls::generate()?;
        let tls_files = tls.write(&state_dir.join("tls"))?;
        let mut initial = options.world.clone();
        if let Some(scenario) = options.scenario {
            scenario.apply(&mut initial);
            tracing::info!(scenario = scenario.name(), "{}", scenario.describe());
        }
        let world = Arc::new(RwLock::new(initial.clone()));
        let tenant = options.world.tenant_id.clone();
        let mut servers = vec![];

        // The trace viewer first: app1 and app2 export to it.
        let traces = web::Data::new(TraceStore::new());
        let (listener, traces_port) = bind(options.ports.traces)?;
        let traces_url = format!("http://127.0.0.1:{traces_port}");
        servers.push(serve(
            traces.clone(),
            crate::traces::configure,
            listener,
            None,
        )?);

        // Identity endpoint + issuer (plain HTTP, like the platform's).
        let (listener, identity_port) = bind(options.ports.identity)?;
        let identity_url = format!("http://127.0.0.1:{identity_port}");
        let home_issuer = Arc::new(tokio::task::spawn_blocking(Issuer::generate).await??);
        let partner_issuer = Arc::new(tokio::task::spawn_blocking(Issuer::generate).await??);
        let identity = web::Data::new(
            IdentityState::new(
                world.clone(),
                home_issuer.clone(),
                identity_url.clone(),
                uuid::Uuid::new_v4().to_string(),
                uuid::Uuid::new_v4().to_string(),
            )
            .with_partner(initial.partner.tenant_id.clone(), partner_issuer.clone()),
        );
        if let Some(plan) = options.scenario.and_then(Scenario::faults) {
            identity.add_faults(plan);
        }
        servers.push(serve(
            identity.clone(),
            identity_endpoint::configure,
            listener,
            None,
        )?);

        let validator = Arc::new(TokenValidator::new(identity_url.clone(), tenant));

        // Key Vault (HTTPS).
        let seed: Vec<SeedSecret> = match &options.seed_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str::<SeedFile>(&text)?.secrets
            }
            None => serde_json::from_str::<SeedFile>(DEFAULT_SEED)?.secrets,
        };
        let seed_secret = seed.first().map(|s| s.name.clone()).unwrap_or_default();
        let vault = web::Data::new(VaultState::new(world.clone(), validator.clone(), &seed));
        let (listener, vault_port) = bind(options.ports.keyvault)?;
        servers.push(serve(
            vault,
            keyvault::configure,
            listener,
            Some(tls.server_config()?),
        )?);

        // app2, reachable only through the gate, set up as the platform sets up
        // an app with EasyAuth on: WEBSITE_AUTH_ENABLED=True, and its own
        // registration to validate tokens against (discovery at our issuer).
        // Its spans go to the viewer over OTLP/HTTP, like app1's.
        let app2_telemetry = Telemetry::new("app2", &Export::otlp(&traces_url, EXPORT_DELAY))?;
        let app2 = app2::Application::build_traced(
            "127.0.0.1",
            app2_settings(&initial, &identity_url),
            &app2_telemetry,
        )?;
        let app2_url = format!("http://127.0.0.1:{}", app2.port());
        servers.push(app2.handle());
        tokio::spawn(app2.run_until_stopped());

        // EasyAuth gate (HTTPS), configured from an authsettingsV2 file.
        let auth_settings_file = state_dir.join("app2-authsettingsV2.json");
        let settings_doc = initial.app2_auth_settings();
        std::fs::write(
            &auth_settings_file,
            serde_json::to_string_pretty(&settings_doc)?,
        )?;
        let gate_config = GateConfig::from_auth_settings(&serde_json::from_str(
            &std::fs::read_to_string(&auth_settings_file)?,
        )?)?;
        let gate = web::Data::new(GateState {
            config: RwLock::new(gate_config),
            validator: validator.clone(),
            upstream: app2_url.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        });
        let (listener, gate_port) = bind(options.ports.gate)?;
        servers.push(serve(
            gate.clone(),
            crate::easyauth::configure,
            listener,
            Some(tls.server_config()?),
        )?);

        // Microsoft Graph (HTTPS), reading the same world as the issuer.
        let graph = web::Data::new(GraphState::new(
            world.clone(),
            validator.clone(),
            options.scenario == Some(Scenario::GraphThrottled),
        ));
        let (listener, graph_port) = bind(options.ports.graph)?;
        let graph_url = format!("https://127.0.0.1:{graph_port}/v1.0");
        *graph.base_url.write().unwrap() = graph_url.clone();
        servers.push(serve(
            graph.clone(),
            crate::graph::configure,
            listener,
            Some(tls.server_config()?),
        )?);

        // The partner tenant: its token endpoint (HTTPS), and its API.
        let (listener, login_port) = bind(options.ports.login)?;
        let login_url = format!("https://127.0.0.1:{login_port}");
        let login = web::Data::new(LoginState {
            world: world.clone(),
            home_issuer,
            partner_issuer,
            authority: login_url.clone(),
        });
        servers.push(serve(
            login,
            crate::login::configure,
            listener,
            Some(tls.server_config()?),
        )?);
        let partner = app2::Application::build_traced(
            "127.0.0.1",
            partner_settings(&initial, &identity_url),
            &app2_telemetry,
        )?;
        let partner_url = format!("http://127.0.0.1:{}", partner.port());
        servers.push(partner.handle());
        tokio::spawn(partner.run_until_stopped());

        // Azurite (HTTPS, OAuth).
        let azurite = if options.azurite {
            let main_js = {
                let cache = options
                    .cache_dir
                    .clone()
                    .unwrap_or_else(|| state_dir.join("cache"));
                tokio::task::spawn_blocking(move || azurite::ensure_installed(&cache)).await??
            };
            Some(
                Azurite::start(
                    &main_js,
                    options.ports.storage,
                    &tls_files.server_cert,
                    &tls_files.server_key,
                )
                .await?,
            )
        } else {
            None
        };
        let storage_url = azurite.as_ref().map(|a| {
            format!(
                "https://127.0.0.1:{}/{}",
                a.port, options.world.storage_account
            )
        });
        if let Some(url) = &storage_url {
            let token = identity.storage_token_for_app1();
            azurite::create_containers(&tls.client()?, url, &token, APP_CONTAINERS).await?;
        }

        Ok(Self {
            world,
            identity,
            gate,
            graph,
            tls: tls_files,
            ca_pem: tls.ca_pem.clone(),
            identity_url,
            keyvault_url: format!("https://127.0.0.1:{vault_port}"),
            storage_url,
            gate_url: format!("https://127.0.0.1:{gate_port}"),
            app2_url,
            graph_url,
            login_url,
            partner_url,
            auth_settings_file,
            seed_secret,
            scenario: options.scenario,
            traces_url,
            traces,
            app2_telemetry,
            servers,
            azurite,
        })
    }

    /// The `KEY=VALUE` pairs written to the env file (see the README).
    pub fn env(&self) -> Vec<(String, String)> {
        let w = self.world.read().unwrap();
        let mut env = vec![
            (
                "IDENTITY_ENDPOINT",
                format!("{}/msi/token", self.identity_url),
            ),
            ("IDENTITY_HEADER", self.identity.identity_header.clone()),
            ("MSI_ENDPOINT", format!("{}/MSI/token/", self.identity_url)),
            ("MSI_SECRET", self.identity.msi_secret.clone()),
            ("DEVSTACK_AUTHORITY", self.identity_url.clone()),
            ("DEVSTACK_TENANT_ID", w.tenant_id.clone()),
            ("DEVSTACK_CA_CERT", self.tls.ca_cert.display().to_string()),
            ("DEVSTACK_TRACES_URL", self.traces_url.clone()),
            // The standard settings: app1 (and anything else run with this
            // env) exports its spans to the viewer.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.traces_url.clone()),
            (
                "OTEL_BSP_SCHEDULE_DELAY",
                EXPORT_DELAY.as_millis().to_string(),
            ),
            (
                "DEVSTACK_AUTHSETTINGS_FILE",
                self.auth_settings_file.display().to_string(),
            ),
            ("KEYVAULT_URL", self.keyvault_url.clone()),
            ("APP2_BASE_URL", self.gate_url.clone()),
            ("APP2_RESOURCE", w.app2.app_id_uri.clone()),
            ("DOWNSTREAM_APIS__GRAPH__BASE_URL", self.graph_url.clone()),
            // The partner API, in another tenant, reached with no secret: the
            // user-assigned identity is a federated credential of an app there.
            ("DEVSTACK_PARTNER_TENANT_ID", w.partner.tenant_id.clone()),
            ("DEVSTACK_LOGIN_AUTHORITY", self.login_url.clone()),
            ("LOGIN_AUTHORITY", self.login_url.clone()),
            (
                "DOWNSTREAM_APIS__PARTNER__BASE_URL",
                self.partner_url.clone(),
            ),
            (
                "DOWNSTREAM_APIS__PARTNER__SCOPES",
                format!("{}/.default", w.partner.api.app_id_uri),
            ),
            (
                "DOWNSTREAM_APIS__PARTNER__ALLOWED_PATHS",
                "api/whoami".into(),
            ),
            (
                "DOWNSTREAM_APIS__PARTNER__CLIENT_ID",
                w.user_assigned.client_id.clone(),
            ),
            (
                "DOWNSTREAM_APIS__PARTNER__TENANT_ID",
                w.partner.tenant_id.clone(),
            ),
            (
                "DOWNSTREAM_APIS__PARTNER__FEDERATED_CLIENT_ID",
                w.federated_app.client_id.clone(),
            ),
            ("APP2_CLIENT_ID", w.app2.client_id.clone()),
            ("APP1_CLIENT_ID", w.app1.client_id.clone()),
            ("APP1_OBJECT_ID", w.app1.object_id.clone()),
            ("DEVSTACK_UA_CLIENT_ID", w.user_assigned.client_id.clone()),
            ("DEVSTACK_UA_OBJECT_ID", w.user_assigned.object_id.clone()),
            (
                "DEVSTACK_UA_RESOURCE_ID",
                w.user_assigned.resource_id.clone(),
            ),
            ("DEVSTACK_SEED_SECRET", self.seed_secret.clone()),
        ];
        if let Some(url) = &self.storage_url {
            env.push(("STORAGE_ACCOUNT_URL", url.clone()));
        }
        env.push(("BLOB_CONTAINERS", DATA_CONTAINER.to_owned()));
        let removed = self.scenario.map(Scenario::removed_env).unwrap_or_default();
        env.into_iter()
            .filter(|(k, _)| !removed.contains(k))
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    /// The environment for app1's `handler`: [`Stack::env`] plus the two
    /// settings a local stack needs: trust devstack's CA, and accept a Key
    /// Vault challenge from a vault at 127.0.0.1 (never set this in Azure).
    pub fn handler_env(&self) -> Vec<(String, String)> {
        let mut env = self.env();
        env.push((
            "EXTRA_CA_CERT".into(),
            self.tls.ca_cert.display().to_string(),
        ));
        env.push((
            "KEYVAULT_SKIP_CHALLENGE_RESOURCE_CHECK".into(),
            "true".into(),
        ));
        env.push(("FLOW_SECRET_NAME".into(), self.seed_secret.clone()));
        env.push(("AUDIT_CONTAINER".into(), AUDIT_CONTAINER.into()));
        if let Some(scenario) = self.scenario {
            env.extend(scenario.handler_env(&self.world.read().unwrap()));
        }
        env
    }

    /// Writes [`Stack::env`] to `path` atomically (temp file + rename), so a
    /// reader never sees half a file: its existence means "ready".
    pub fn write_env_file(&self, path: &Path, extra: &[(String, String)]) -> anyhow::Result<()> {
        let mut text = String::from("# written by `devstack up`; valid while it runs\n");
        for (k, v) in self.env().iter().chain(extra) {
            text.push_str(&format!("{k}={v}\n"));
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn azurite_pid(&self) -> Option<u32> {
        self.azurite.as_ref().and_then(Azurite::pid)
    }

    /// Stops every server and child process.
    pub async fn stop(self) {
        // app2's last spans go out while the viewer still listens.
        let telemetry = self.app2_telemetry.clone();
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        for server in &self.servers {
            server.stop(true).await;
        }
        if let Some(azurite) = self.azurite {
            azurite.stop().await;
        }
    }
}
