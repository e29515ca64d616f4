//! Wiring: settings → shared state → actix-web server on 127.0.0.1.

use crate::configuration::Settings;
use crate::problem::Problem;
use crate::protocol::{forward, payload};
use crate::state::AppState;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::net::TcpListener;

/// Why the handler could not start. `main` logs it and exits non-zero, which
/// the host reports and retries.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting cannot be used.
    #[error(transparent)]
    Settings(#[from] crate::configuration::SettingsError),
    /// `EXTRA_CA_CERT` cannot be read or is not PEM.
    #[error(transparent)]
    HttpClient(#[from] crate::http_client::HttpClientError),
    /// The port is taken or not ours to bind.
    #[error("could not bind 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
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
    pub fn build(settings: Settings) -> Result<Self, StartupError> {
        let state = AppState::new(&settings)?;
        Self::build_with(settings, state)
    }

    /// As [`Application::build`], with prepared state.
    pub fn build_with(settings: Settings, state: AppState) -> Result<Self, StartupError> {
        let wanted = settings.server.port;
        let bind_error = |source| StartupError::Bind {
            port: wanted,
            source,
        };
        let listener = TcpListener::bind(("127.0.0.1", wanted)).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let state = web::Data::new(state);
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .route("/", web::get().to(readiness))
                .configure(forward::configure(app_state.clone()))
                .configure(payload::configure)
                .default_service(web::to(no_such_function))
        })
        // We own shutdown (see `main`): SIGTERM and SIGINT both stop gracefully.
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)
        .map_err(bind_error)?
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
