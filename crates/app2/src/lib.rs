//! app2: a sample API meant to sit behind App Service Authentication (EasyAuth).
//!
//! EasyAuth validates the caller's token and may check `allowedApplications`,
//! but it never checks app roles. app2 therefore enforces its required role
//! (`REQUIRED_ROLE`, default `App2.Access`) itself.

pub mod principal;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use principal::Principal;
use serde_json::json;
use std::net::TcpListener;

/// The role app2 requires unless `REQUIRED_ROLE` says otherwise.
pub const DEFAULT_REQUIRED_ROLE: &str = "App2.Access";

#[derive(Clone, Debug)]
pub struct Settings {
    /// App Service passes `PORT`; 0 picks a free one.
    pub port: u16,
    pub required_role: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        let port = match std::env::var("PORT") {
            Ok(p) => p.parse().map_err(|e| format!("PORT {p:?}: {e}"))?,
            Err(_) => 8080,
        };
        let required_role = std::env::var("REQUIRED_ROLE")
            .ok()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_REQUIRED_ROLE.to_owned());
        Ok(Self {
            port,
            required_role,
        })
    }
}

pub struct Application {
    port: u16,
    server: Server,
}

struct RequiredRole(String);

impl Application {
    /// Binds 127.0.0.1 (behind the gate). App Service containers use `build_on`.
    pub fn build(settings: Settings) -> std::io::Result<Self> {
        Self::build_on("127.0.0.1", settings)
    }

    pub fn build_on(host: &str, settings: Settings) -> std::io::Result<Self> {
        let listener = TcpListener::bind((host, settings.port))?;
        let port = listener.local_addr()?.port();
        let role = web::Data::new(RequiredRole(settings.required_role));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(role.clone())
                .route("/api/health", web::get().to(health))
                .route("/api/whoami", web::get().to(whoami))
                .default_service(web::to(not_found))
        })
        .workers(2)
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn problem(status: u16, title: &str, detail: String) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/problem+json")
        .json(json!({"type": "about:blank", "title": title, "status": status, "detail": detail}))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The caller as EasyAuth described it, if it holds the required role.
async fn whoami(req: HttpRequest, role: web::Data<RequiredRole>) -> HttpResponse {
    let Some(principal) = req
        .headers()
        .get("x-ms-client-principal")
        .and_then(|v| v.to_str().ok())
        .and_then(Principal::from_header)
    else {
        return problem(
            401,
            "Unauthorized",
            "no authenticated caller: app2 expects App Service Authentication to inject X-MS-CLIENT-PRINCIPAL".into(),
        );
    };
    if !principal.has_role(&role.0) {
        return HttpResponse::Forbidden()
            .content_type("application/problem+json")
            .json(json!({
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
                "detail": format!("the caller's token carries no app role {}; assign it to the caller's service principal", role.0),
                "required_role": role.0,
                "app_id": principal.app_id,
                "object_id": principal.object_id,
                "roles": principal.roles,
            }));
    }
    HttpResponse::Ok().json(json!({
        "app_id": principal.app_id,
        "object_id": principal.object_id,
        "tenant_id": principal.tenant_id,
        "roles": principal.roles,
        "required_role": role.0,
    }))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    problem(
        404,
        "Not Found",
        format!("no route for {} {}", req.method(), req.path()),
    )
}
