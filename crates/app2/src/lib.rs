//! app2: a sample API meant to sit behind App Service Authentication (EasyAuth).
//!
//! EasyAuth validates the caller's token and may check `allowedApplications`,
//! but it never checks app roles, and it protects app2 only while every
//! request goes through it. So app2 validates the bearer token itself, as
//! Microsoft tells APIs to: the signature against its tenant's JWKS, the
//! issuer (v1 or v2 of its tenant), the audience (its client id or App ID URI),
//! the lifetime, and the required role (`REQUIRED_ROLE`, default `App2.Access`).
//!
//! `X-MS-CLIENT-PRINCIPAL` is read only when the platform says EasyAuth is on
//! (`WEBSITE_AUTH_ENABLED=True`), and then it must agree with the token.

pub mod jwt;
pub mod principal;
pub mod server_span;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use jwt::TokenValidator;
use principal::Principal;
use serde_json::{Map, Value, json};
use server_span::Verdict;
use std::net::TcpListener;
use std::time::Duration;

/// The role app2 requires unless `REQUIRED_ROLE` says otherwise.
pub const DEFAULT_REQUIRED_ROLE: &str = "App2.Access";

/// Clock skew allowed on `exp` and `nbf`: small, since both sides sync to NTP.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Settings {
    /// App Service passes `PORT`; 0 picks a free one.
    pub port: u16,
    pub required_role: String,
    /// Whose tokens app2 accepts: its tenant and app registration.
    pub auth: AuthSettings,
}

/// What app2 validates tokens against.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// `APP2_TENANT_ID` (else the tenant in `WEBSITE_AUTH_OPENID_ISSUER`).
    pub tenant_id: String,
    /// `APP2_CLIENT_ID` (else `WEBSITE_AUTH_CLIENT_ID`): a v2 token's `aud`.
    pub client_id: String,
    /// `APP2_APP_ID_URI` (default `api://<client id>`): a v1 token's `aud`.
    pub app_id_uri: String,
    /// `APP2_AUTHORITY` (default `https://login.microsoftonline.com`): where
    /// the OIDC discovery documents and JWKS are.
    pub authority: String,
    /// `WEBSITE_AUTH_ENABLED=True`, set by the platform when EasyAuth is on.
    pub easyauth_enabled: bool,
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Settings::from_env`], reading from `lookup` (tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let port = match get("PORT") {
            Some(p) => p.parse().map_err(|e| format!("PORT {p:?}: {e}"))?,
            None => 8080,
        };
        let required_role =
            get("REQUIRED_ROLE").unwrap_or_else(|| DEFAULT_REQUIRED_ROLE.to_owned());
        // Without its tenant and client id app2 cannot validate a token, and
        // it never falls back to trusting headers: refuse to start instead.
        let tenant_id = get("APP2_TENANT_ID")
            .or_else(|| {
                get("WEBSITE_AUTH_OPENID_ISSUER")
                    .and_then(|iss| iss.split('/').find(|s| is_guid(s)).map(str::to_owned))
            })
            .ok_or("APP2_TENANT_ID is not set (nor WEBSITE_AUTH_OPENID_ISSUER): app2 validates tokens itself and needs its tenant id")?;
        let client_id = get("APP2_CLIENT_ID")
            .or_else(|| get("WEBSITE_AUTH_CLIENT_ID"))
            .ok_or("APP2_CLIENT_ID is not set (nor WEBSITE_AUTH_CLIENT_ID): app2 validates tokens itself and needs its app registration's client id")?;
        if !is_guid(&tenant_id) || !is_guid(&client_id) {
            return Err("APP2_TENANT_ID and APP2_CLIENT_ID must be GUIDs".into());
        }
        Ok(Self {
            port,
            required_role,
            auth: AuthSettings {
                app_id_uri: get("APP2_APP_ID_URI").unwrap_or_else(|| format!("api://{client_id}")),
                authority: get("APP2_AUTHORITY")
                    .unwrap_or_else(|| jwt::PUBLIC_AUTHORITY.to_owned()),
                easyauth_enabled: get("WEBSITE_AUTH_ENABLED")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
                tenant_id,
                client_id,
            },
        })
    }
}

fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

pub struct Application {
    port: u16,
    server: Server,
}

/// What every request needs: the role, the audiences and issuers, the keys.
struct Gatekeeper {
    required_role: String,
    audiences: Vec<String>,
    issuers: Vec<String>,
    easyauth_enabled: bool,
    validator: TokenValidator,
}

impl Application {
    /// Binds 127.0.0.1 (behind the gate). App Service containers use `build_on`.
    pub fn build(settings: Settings) -> std::io::Result<Self> {
        Self::build_on("127.0.0.1", settings)
    }

    pub fn build_on(host: &str, settings: Settings) -> std::io::Result<Self> {
        Self::build_traced(host, settings, &app_telemetry::Telemetry::off("app2"))
    }

    /// As [`Application::build_on`], with spans going to `telemetry`'s provider.
    pub fn build_traced(
        host: &str,
        settings: Settings,
        telemetry: &app_telemetry::Telemetry,
    ) -> std::io::Result<Self> {
        let tracer = telemetry
            .is_enabled()
            .then(|| web::Data::new(server_span::AppTracer(telemetry.tracer())));
        let listener = TcpListener::bind((host, settings.port))?;
        let port = listener.local_addr()?.port();
        let auth = settings.auth;
        let gatekeeper = web::Data::new(Gatekeeper {
            required_role: settings.required_role,
            audiences: vec![auth.client_id.clone(), auth.app_id_uri.clone()],
            issuers: vec![
                jwt::v1_issuer(&auth.tenant_id),
                jwt::v2_issuer(&auth.tenant_id),
            ],
            easyauth_enabled: auth.easyauth_enabled,
            validator: TokenValidator::new(auth.authority, auth.tenant_id).with_leeway(CLOCK_SKEW),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(server_span::server_span))
                .configure(|cfg| {
                    // No tracer (OTEL_SDK_DISABLED): the middleware passes requests through.
                    if let Some(tracer) = &tracer {
                        cfg.app_data(tracer.clone());
                    }
                })
                .app_data(gatekeeper.clone())
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
    let verdict = Verdict {
        refusal: Some(format!("{status} {title}: {detail}")),
        ..Verdict::default()
    };
    let mut res = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    );
    if status == 401 {
        res.insert_header((
            "WWW-Authenticate",
            format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                jwt::challenge_text(&detail)
            ),
        ));
    }
    let mut res = res
        .content_type("application/problem+json")
        .json(json!({"type": "about:blank", "title": title, "status": status, "detail": detail}));
    res.extensions_mut().insert(verdict);
    res
}

fn unauthorized(detail: impl Into<String>) -> HttpResponse {
    problem(401, "Unauthorized", detail.into())
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The caller, from its validated token, if it holds the required role.
async fn whoami(req: HttpRequest, gate: web::Data<Gatekeeper>) -> HttpResponse {
    let claims = match authenticate(&req, &gate).await {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let roles: Vec<String> = claims
        .get("roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let app_id = text("appid").or_else(|| text("azp"));
    let object_id = text("oid");
    let mut verdict = Verdict {
        app_id: app_id.clone(),
        object_id: object_id.clone(),
        roles: roles.clone(),
        refusal: None,
    };
    let mut res = if !roles.iter().any(|r| *r == gate.required_role) {
        let detail = format!(
            "the caller's token carries no app role {}; assign it to the caller's service principal",
            gate.required_role
        );
        verdict.refusal = Some(format!("403 Forbidden: {detail}"));
        HttpResponse::Forbidden()
            .content_type("application/problem+json")
            .json(json!({
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
                "detail": detail,
                "required_role": gate.required_role,
                "app_id": app_id,
                "object_id": object_id,
                "roles": roles,
            }))
    } else {
        HttpResponse::Ok().json(json!({
            "app_id": app_id,
            "object_id": object_id,
            "tenant_id": text("tid"),
            "roles": roles,
            "required_role": gate.required_role,
        }))
    };
    res.extensions_mut().insert(verdict);
    res
}

/// The validated token's claims, or the 401 to answer. With EasyAuth on, the
/// principal it injected must describe the same caller as the token.
async fn authenticate(
    req: &HttpRequest,
    gate: &Gatekeeper,
) -> Result<Map<String, Value>, HttpResponse> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let token = header("authorization")
        .and_then(|a| a.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| a[7..].trim()))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            unauthorized("no bearer token: app2 validates the caller's access token itself, whatever headers come with the request")
        })?;
    let claims = gate
        .validator
        .validate(token, &gate.audiences, &gate.issuers)
        .await
        .map_err(|rejection| {
            tracing::info!(%rejection, "app2: bearer token rejected");
            unauthorized(format!("the bearer token was rejected: {rejection}"))
        })?;
    if gate.easyauth_enabled
        && let Some(value) = header("x-ms-client-principal")
    {
        let agrees = Principal::from_header(value).is_some_and(|p| {
            let claim = |name: &str| claims.get(name).and_then(Value::as_str);
            let token_app = claim("appid").or_else(|| claim("azp"));
            p.object_id.as_deref() == claim("oid") && p.app_id.as_deref() == token_app
        });
        if !agrees {
            tracing::warn!("app2: X-MS-CLIENT-PRINCIPAL does not describe the token's caller");
            return Err(unauthorized(
                "X-MS-CLIENT-PRINCIPAL does not describe the caller of the bearer token",
            ));
        }
    }
    Ok(claims)
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    problem(
        404,
        "Not Found",
        format!("no route for {} {}", req.method(), req.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a";
    const CID: &str = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn refuses_to_start_without_what_it_validates_against() {
        assert!(settings(&[]).unwrap_err().contains("APP2_TENANT_ID"));
        assert!(
            settings(&[("APP2_TENANT_ID", TID)])
                .unwrap_err()
                .contains("APP2_CLIENT_ID")
        );
        assert!(settings(&[("APP2_TENANT_ID", "x"), ("APP2_CLIENT_ID", CID)]).is_err());
    }

    #[test]
    fn platform_settings_are_the_fallback_and_easyauth_is_off_by_default() {
        let s = settings(&[
            (
                "WEBSITE_AUTH_OPENID_ISSUER",
                &format!("https://sts.windows.net/{TID}/v2.0"),
            ),
            ("WEBSITE_AUTH_CLIENT_ID", CID),
        ])
        .unwrap();
        assert_eq!(
            (s.auth.tenant_id.as_str(), s.auth.client_id.as_str()),
            (TID, CID)
        );
        assert_eq!(s.auth.app_id_uri, format!("api://{CID}"));
        assert_eq!(s.auth.authority, "https://login.microsoftonline.com");
        assert!(!s.auth.easyauth_enabled);
        let on = settings(&[
            ("APP2_TENANT_ID", TID),
            ("APP2_CLIENT_ID", CID),
            ("WEBSITE_AUTH_ENABLED", "True"),
        ]);
        assert!(on.unwrap().auth.easyauth_enabled);
    }
}
