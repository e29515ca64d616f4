//! Wiring: settings → shared state → actix-web server on 127.0.0.1.

use crate::azure::AzureClients;
use crate::configuration::{AzureSettings, Settings};
use crate::identity::IdentityProvider;
use crate::problem::Problem;
use crate::protocol::{forward, payload};
use crate::telemetry;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, middleware, web};
use std::net::TcpListener;
use std::sync::Arc;

/// Limits applied before any function runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
}

/// State shared by every function.
pub struct AppState {
    pub identity: Arc<IdentityProvider>,
    pub azure: AzureClients,
    pub settings: AzureSettings,
    pub limits: Limits,
}

impl AppState {
    /// Builds the provider and clients; no network call is made.
    pub fn new(settings: &Settings) -> std::io::Result<Self> {
        let http = crate::http_client::build_with(
            settings.azure.extra_ca_cert.as_deref(),
            settings.azure.upstream_timeout,
        )
        .map_err(std::io::Error::other)?;
        let identity = Arc::new(IdentityProvider::new(
            settings.identity.clone(),
            Arc::new(http.clone()),
        ));
        identity.log_source();
        Ok(Self::with_identity(settings, identity, http))
    }

    /// As [`AppState::new`], with a prepared provider (tests inject doubles).
    pub fn with_identity(
        settings: &Settings,
        identity: Arc<IdentityProvider>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            azure: AzureClients::new(&settings.azure, identity.clone(), http),
            identity,
            settings: settings.azure.clone(),
            limits: Limits {
                max_body_bytes: settings.azure.max_body_bytes,
            },
        }
    }
}

/// The bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Binds `127.0.0.1:<port>` (0 picks a free one) and builds the server.
    /// Makes no outbound call: the host's 30 s readiness window is for binding.
    pub fn build(settings: Settings) -> std::io::Result<Self> {
        let state = AppState::new(&settings)?;
        Self::build_with(settings, state)
    }

    /// As [`Application::build`], with prepared state.
    pub fn build_with(settings: Settings, state: AppState) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", settings.server.port))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(state);
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::from_fn(telemetry::request_span))
                .app_data(app_state.clone())
                .route("/", web::get().to(readiness))
                .configure(forward::configure)
                .configure(payload::configure)
                .default_service(web::to(no_such_function))
        })
        // We own shutdown (see `main`): SIGTERM and SIGINT both stop gracefully.
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        tracing::info!(port, "handler listening on 127.0.0.1");
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from elsewhere (signal handler, tests).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// `GET /`: the host's readiness probe and health ping. Any status counts; be quick.
async fn readiness() -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn no_such_function(req: HttpRequest) -> Result<HttpResponse, Problem> {
    Err(Problem::not_found(format!(
        "no function serves {} {}",
        req.method(),
        req.path()
    )))
}
