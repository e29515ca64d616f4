//! An App Service Authentication ("EasyAuth") gate in front of app2, configured
//! from a real authsettingsV2 document.
//!
//! * Strips every client-sent `X-MS-CLIENT-PRINCIPAL*` and `X-MS-TOKEN-*`
//!   header on every path: only the gate may set them.
//! * `excludedPaths` pass without authentication.
//! * No or invalid bearer token (missing, expired, tampered, `alg=none`, unknown
//!   `kid`, wrong audience or issuer) → 401 (`unauthenticatedClientAction`
//!   decides for a missing token).
//! * An app not in `allowedApplications` (`appid`/`azp`) or a principal not in
//!   `allowedPrincipals.identities` (`oid`) → 403. Both lists must pass.
//! * Otherwise the request goes to app2 with `X-MS-CLIENT-PRINCIPAL`, `-ID`,
//!   `-NAME` and `-IDP`. Roles are **not** checked: app2 must do that.

use crate::validate::{Rejection, TokenValidator};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::sync::Arc;

/// What the gate reads from authsettingsV2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateConfig {
    pub enabled: bool,
    pub require_authentication: bool,
    pub unauthenticated_action: String,
    pub excluded_paths: Vec<String>,
    pub open_id_issuer: String,
    pub client_id: String,
    pub allowed_audiences: Vec<String>,
    pub allowed_applications: Vec<String>,
    pub allowed_identities: Vec<String>,
    /// `WEBSITE_AUTH_AAD_ALLOWED_TENANTS` (an app setting, not in authsettingsV2).
    pub allowed_tenants: Vec<String>,
}

impl GateConfig {
    /// Parses an authsettingsV2 document, with or without the ARM `properties` wrapper.
    pub fn from_auth_settings(doc: &Value) -> anyhow::Result<Self> {
        let p = doc.get("properties").unwrap_or(doc);
        let aad = &p["identityProviders"]["azureActiveDirectory"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let validation = &aad["validation"];
        let policy = &validation["defaultAuthorizationPolicy"];
        let client_id = aad["registration"]["clientId"]
            .as_str()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "identityProviders.azureActiveDirectory.registration.clientId is required"
                )
            })?
            .to_owned();
        Ok(Self {
            enabled: p["platform"]["enabled"].as_bool().unwrap_or(false),
            require_authentication: p["globalValidation"]["requireAuthentication"]
                .as_bool()
                .unwrap_or(false),
            unauthenticated_action: p["globalValidation"]["unauthenticatedClientAction"]
                .as_str()
                .unwrap_or("RedirectToLoginPage")
                .to_owned(),
            excluded_paths: strings(&p["globalValidation"]["excludedPaths"]),
            open_id_issuer: aad["registration"]["openIdIssuer"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            client_id,
            allowed_audiences: strings(&validation["allowedAudiences"]),
            allowed_applications: strings(&policy["allowedApplications"]),
            allowed_identities: strings(&policy["allowedPrincipals"]["identities"]),
            allowed_tenants: vec![],
        })
    }

    /// The tenant in a tenant-specific `openIdIssuer`, if it is one.
    pub fn tenant(&self) -> Option<&str> {
        self.open_id_issuer
            .split('/')
            .find(|seg| crate::world_guid(seg))
    }
}

pub struct GateState {
    pub config: std::sync::RwLock<GateConfig>,
    pub validator: Arc<TokenValidator>,
    /// Where app2 listens (`http://127.0.0.1:<port>`).
    pub upstream: String,
    pub http: reqwest::Client,
}

const DENIED: &str = "You do not have permission to view this directory or page.";

fn is_platform_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("x-ms-client-principal") || n.starts_with("x-ms-token-")
}

/// Every path goes through the gate.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(gate));
}

pub async fn gate(req: HttpRequest, body: web::Bytes, state: web::Data<GateState>) -> HttpResponse {
    let config = state.config.read().unwrap().clone();
    // The excluded-path rule and the forwarded request use one normalized path,
    // or `/api/health/%2e%2e/whoami` would pass as excluded and reach /api/whoami.
    let path = crate::http_path::normalize(req.path());
    let excluded = config.excluded_paths.iter().any(|p| {
        path.eq_ignore_ascii_case(p)
            || path
                .to_ascii_lowercase()
                .starts_with(&format!("{}/", p.to_ascii_lowercase()))
    });

    if !config.enabled || excluded {
        return forward(&req, &path, body, &state, None).await;
    }

    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = bearer else {
        return match (
            config.require_authentication,
            config.unauthenticated_action.as_str(),
        ) {
            (false, _) | (_, "AllowAnonymous") => forward(&req, &path, body, &state, None).await,
            (_, "Return403") => HttpResponse::Forbidden()
                .content_type("text/plain")
                .body(DENIED),
            (_, "RedirectToLoginPage")
                if req
                    .headers()
                    .get("accept")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/html")) =>
            {
                HttpResponse::Found()
                    .insert_header(("Location", "/.auth/login/aad"))
                    .finish()
            }
            _ => unauthorized(&req, &config, None),
        };
    };

    // The client id is always an accepted audience; api://… only when listed.
    let mut audiences = config.allowed_audiences.clone();
    audiences.push(config.client_id.clone());
    let issuers = match config.tenant() {
        Some(t) => vec![crate::issuer::v1_issuer(t), crate::issuer::v2_issuer(t)],
        None => vec![], // multi-tenant: issuer not validated, see below
    };
    let result = if issuers.is_empty() {
        let iss = crate::validate::unverified_claims(token)
            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        state.validator.validate(token, &audiences, &[iss]).await
    } else {
        state.validator.validate(token, &audiences, &issuers).await
    };
    let claims = match result {
        Ok(c) => c,
        Err(rejection) => {
            tracing::info!(%rejection, "easyauth: bearer token rejected");
            return unauthorized(&req, &config, Some(&rejection));
        }
    };

    let claim = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let app = {
        let appid = claim("appid");
        if appid.is_empty() {
            claim("azp")
        } else {
            appid
        }
    };
    let oid = claim("oid");
    let app_ok = config.allowed_applications.is_empty()
        || config
            .allowed_applications
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&app));
    let principal_ok = config.allowed_identities.is_empty()
        || config
            .allowed_identities
            .iter()
            .any(|i| i.eq_ignore_ascii_case(&oid));
    let tenant_ok = config.allowed_tenants.is_empty()
        || config
            .allowed_tenants
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&claim("tid")));
    if !(app_ok && principal_ok && tenant_ok) {
        tracing::info!(
            app,
            oid,
            app_ok,
            principal_ok,
            tenant_ok,
            "easyauth: authorization policy denied the caller"
        );
        return HttpResponse::Forbidden()
            .content_type("text/plain")
            .body(DENIED);
    }
    forward(&req, &path, body, &state, Some(&claims)).await
}

fn unauthorized(
    req: &HttpRequest,
    config: &GateConfig,
    rejection: Option<&Rejection>,
) -> HttpResponse {
    let realm = req.connection_info().host().to_owned();
    let tenant = config.tenant().unwrap_or("common");
    let mut challenge = format!(
        "Bearer realm=\"{realm}\" authorization_uri=\"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize\" resource_id=\"{}\"",
        config.client_id
    );
    if let Some(rejection) = rejection {
        // As EasyAuth does: the reason goes in error_description (RFC 6750).
        challenge.push_str(&format!(
            " error=\"invalid_token\" error_description=\"{}\"",
            app2::jwt::challenge_text(&rejection.to_string())
        ));
    }
    HttpResponse::Unauthorized()
        .insert_header(("WWW-Authenticate", challenge))
        .content_type("text/plain")
        .body(DENIED)
}

/// The `X-MS-CLIENT-PRINCIPAL` document for a validated token.
pub fn client_principal(claims: &serde_json::Map<String, Value>) -> Value {
    const MAPPED: &[(&str, &str)] = &[
        (
            "oid",
            "http://schemas.microsoft.com/identity/claims/objectidentifier",
        ),
        (
            "tid",
            "http://schemas.microsoft.com/identity/claims/tenantid",
        ),
        (
            "sub",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
        ),
        (
            "idp",
            "http://schemas.microsoft.com/identity/claims/identityprovider",
        ),
        ("scp", "http://schemas.microsoft.com/identity/claims/scope"),
    ];
    let mut out = vec![];
    for (name, value) in claims {
        let typ = MAPPED
            .iter()
            .find(|(n, _)| n == name)
            .map_or(name.as_str(), |(_, t)| *t);
        match value {
            Value::Array(items) => {
                for item in items {
                    out.push(json!({"typ": typ, "val": item.as_str().map_or_else(|| item.to_string(), str::to_owned)}));
                }
            }
            Value::String(s) => out.push(json!({"typ": typ, "val": s})),
            other => out.push(json!({"typ": typ, "val": other.to_string()})),
        }
    }
    json!({
        "auth_typ": "aad",
        "claims": out,
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    })
}

async fn forward(
    req: &HttpRequest,
    path: &str,
    body: web::Bytes,
    state: &GateState,
    claims: Option<&serde_json::Map<String, Value>>,
) -> HttpResponse {
    let url = match req.uri().query() {
        Some(query) => format!("{}{path}?{query}", state.upstream),
        None => format!("{}{path}", state.upstream),
    };
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut out = state.http.request(method, url);
    for (name, value) in req.headers() {
        let n = name.as_str();
        if is_platform_header(n)
            || n.eq_ignore_ascii_case("host")
            || n.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        out = out.header(n, value.as_bytes());
    }
    if let Some(claims) = claims {
        let oid = claims
            .get("oid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = claims
            .get("appid")
            .or_else(|| claims.get("azp"))
            .and_then(Value::as_str)
            .unwrap_or(oid);
        out = out
            .header(
                "X-MS-CLIENT-PRINCIPAL",
                STANDARD.encode(client_principal(claims).to_string()),
            )
            .header("X-MS-CLIENT-PRINCIPAL-ID", oid)
            .header("X-MS-CLIENT-PRINCIPAL-NAME", name)
            .header("X-MS-CLIENT-PRINCIPAL-IDP", "aad");
    }
    let host = req.connection_info().host().to_owned();
    out = out
        .header("X-Forwarded-Host", host)
        .header("X-Forwarded-Proto", "https")
        .body(body);
    match out.send().await {
        Ok(res) => {
            let mut builder = HttpResponse::build(actix_web::http::StatusCode::from_u16(res.status().as_u16()).unwrap());
            for (name, value) in res.headers() {
                let n = name.as_str();
                if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding") || n.eq_ignore_ascii_case("connection") {
                    continue;
                }
                builder.append_header((n, value.as_bytes()));
            }
            builder.body(res.bytes().await.unwrap_or_default())
        }
        // App Service's front end answers 502 when the app is down.
        Err(_) => HttpResponse::BadGateway().content_type("text/plain").body("502 - Web server received an invalid response while acting as a gateway or proxy server."),
    }
}
