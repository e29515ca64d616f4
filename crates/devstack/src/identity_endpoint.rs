//! The App Service identity endpoint (2019-08-01 and 2017-09-01), IMDS, and
//! the issuer's OIDC discovery, on plain HTTP like the real local endpoint.
//!
//! | path | protocol |
//! |---|---|
//! | `GET /msi/token` | 2019-08-01, header `X-IDENTITY-HEADER`, `client_id`/`object_id`/`principal_id`/`mi_res_id` |
//! | `GET /MSI/token/` | 2017-09-01, header `secret`, `clientid` |
//! | `GET /metadata/identity/oauth2/token` | IMDS, header `Metadata: true`, returns `expires_in` |
//! | `GET /{tid}[/v2.0]/.well-known/openid-configuration`, `…/discovery[/v2.0]/keys` | OIDC + JWKS |
//! | `/admin/faults`, `/admin/requests` | fault injection and request log for tests |

use crate::issuer::{self, Issuer, TokenVersion};
use crate::world::{ManagedIdentity, World};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// One scripted failure step.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FaultStep {
    /// Status to answer with (200 with `garbage` sends an unusable body).
    pub status: u16,
    /// How many requests this step answers.
    #[serde(default = "one")]
    pub times: u32,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub garbage: bool,
    #[serde(default)]
    pub retry_after: Option<u64>,
}

fn one() -> u32 {
    1
}

/// Faults for one resource (or every resource when `resource` is absent).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FaultPlan {
    #[serde(default)]
    pub resource: Option<String>,
    pub steps: VecDeque<FaultStep>,
}

/// A token request as received (no secret: header values are not kept).
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    pub path: String,
    pub raw_query: String,
    pub query: HashMap<String, String>,
    pub header_names: Vec<String>,
    pub status: u16,
}

pub struct IdentityState {
    pub world: Arc<RwLock<World>>,
    pub issuer: Arc<Issuer>,
    pub identity_header: String,
    pub msi_secret: String,
    /// `http://127.0.0.1:<port>`, the base of the discovery URLs.
    pub authority: String,
    /// The partner tenant's id and issuer: its discovery and keys are served
    /// here too, so the partner API validates its tokens as app2 does.
    pub partner: Option<(String, Arc<Issuer>)>,
    faults: Mutex<Vec<FaultPlan>>,
    /// The last [`MAX_RECORDED_REQUESTS`] token requests, oldest first.
    requests: Mutex<VecDeque<RecordedRequest>>,
}

/// How many token requests the log keeps: a caller looping on the endpoint
/// must not grow devstack's memory.
pub const MAX_RECORDED_REQUESTS: usize = 1000;

/// `a == b` in time that does not depend on where they differ, for secrets
/// (the identity header, the legacy secret) that a caller may probe.
pub fn secret_eq(a: Option<&str>, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.is_some_and(|a| bool::from(a.as_bytes().ct_eq(b.as_bytes())))
}

impl IdentityState {
    /// A Storage token for app1's system identity, for devstack's own setup
    /// (creating containers), signed like every other token it issues.
    pub fn storage_token_for_app1(&self) -> String {
        let world = self.world.read().unwrap();
        let audience = issuer::Audience {
            aud: "https://storage.azure.com".into(),
            version: issuer::TokenVersion::V1,
            roles: vec![],
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = issuer::access_token_claims(&world, &world.app1, &audience, now);
        self.issuer.sign(&claims, audience.version)
    }

    pub fn new(
        world: Arc<RwLock<World>>,
        issuer: Arc<Issuer>,
        authority: String,
        identity_header: String,
        msi_secret: String,
    ) -> Self {
        Self {
            world,
            issuer,
            identity_header,
            msi_secret,
            authority,
            partner: None,
            faults: Mutex::default(),
            requests: Mutex::default(),
        }
    }

    /// Also serves discovery and keys for the partner tenant `tenant`.
    pub fn with_partner(mut self, tenant: String, issuer: Arc<Issuer>) -> Self {
        self.partner = Some((tenant, issuer));
        self
    }

    /// The issuer of `tenant`, if it is one this endpoint serves.
    fn issuer_of(&self, tenant: &str) -> Option<&Issuer> {
        if tenant == self.world.read().unwrap().tenant_id {
            return Some(&self.issuer);
        }
        self.partner
            .as_ref()
            .filter(|(t, _)| t == tenant)
            .map(|(_, i)| i.as_ref())
    }

    pub fn add_faults(&self, plan: FaultPlan) {
        self.faults.lock().unwrap().push(plan);
    }

    /// Takes the next fault step for `resource`, if any is scripted.
    fn next_fault(&self, resource: &str) -> Option<FaultStep> {
        let mut plans = self.faults.lock().unwrap();
        let plan = plans
            .iter_mut()
            .find(|p| !p.steps.is_empty() && p.resource.as_deref().is_none_or(|r| r == resource))?;
        let step = plan.steps.front_mut()?;
        let taken = step.clone();
        step.times = step.times.saturating_sub(1);
        if step.times == 0 {
            plan.steps.pop_front();
        }
        Some(taken)
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/msi/token", web::get().to(app_service_2019))
        .route("/MSI/token/", web::get().to(app_service_2017))
        .route("/MSI/token", web::get().to(app_service_2017))
        .route("/metadata/identity/oauth2/token", web::get().to(imds))
        .route(
            "/{tenant}/.well-known/openid-configuration",
            web::get().to(discovery_v1),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            web::get().to(discovery_v2),
        )
        .route("/{tenant}/discovery/keys", web::get().to(keys_v1))
        .route("/{tenant}/discovery/v2.0/keys", web::get().to(keys_v2))
        .route("/admin/faults", web::post().to(post_faults))
        .route("/admin/faults", web::delete().to(clear_faults))
        .route("/admin/requests", web::get().to(get_requests))
        .route("/admin/requests", web::delete().to(clear_requests))
        .route("/admin/world", web::get().to(get_world));
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    V2019,
    V2017,
    Imds,
}

/// App Service's error shape.
fn app_service_error(status: u16, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("Server", "Kestrel"))
        .content_type("application/json; charset=utf-8")
        .json(json!({
            "statusCode": status,
            "message": message,
            "correlationId": uuid::Uuid::new_v4().to_string()
        }))
}

/// IMDS / Entra's error shape.
fn imds_error(status: u16, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({ "error": error, "error_description": description }))
}

fn error(protocol: Protocol, status: u16, code: &str, message: &str) -> HttpResponse {
    match protocol {
        Protocol::Imds => imds_error(status, code, message),
        _ => app_service_error(status, message),
    }
}

async fn app_service_2019(req: HttpRequest, state: web::Data<IdentityState>) -> HttpResponse {
    token(req, state, Protocol::V2019).await
}

async fn app_service_2017(req: HttpRequest, state: web::Data<IdentityState>) -> HttpResponse {
    token(req, state, Protocol::V2017).await
}

async fn imds(req: HttpRequest, state: web::Data<IdentityState>) -> HttpResponse {
    token(req, state, Protocol::Imds).await
}

async fn token(
    req: HttpRequest,
    state: web::Data<IdentityState>,
    protocol: Protocol,
) -> HttpResponse {
    // Both `resource=https://x` (azure-core) and `resource=https%3A%2F%2Fx` (requests) arrive.
    let query: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let response = answer(&req, &state, protocol, &query).await;
    let mut log = state.requests.lock().unwrap();
    if log.len() == MAX_RECORDED_REQUESTS {
        log.pop_front();
    }
    log.push_back(RecordedRequest {
        path: req.path().to_owned(),
        raw_query: req.query_string().to_owned(),
        query,
        header_names: req
            .headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect(),
        status: response.status().as_u16(),
    });
    drop(log);
    response
}

async fn answer(
    req: &HttpRequest,
    state: &IdentityState,
    protocol: Protocol,
    query: &HashMap<String, String>,
) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let (api_version, auth_ok) = match protocol {
        Protocol::V2019 => (
            "2019-08-01",
            secret_eq(header("X-IDENTITY-HEADER"), &state.identity_header),
        ),
        Protocol::V2017 => ("2017-09-01", secret_eq(header("secret"), &state.msi_secret)),
        Protocol::Imds => ("2018-02-01", header("Metadata") == Some("true")),
    };
    if !auth_ok {
        return match protocol {
            Protocol::Imds => imds_error(
                400,
                "bad_request_102",
                "Required metadata header not specified",
            ),
            Protocol::V2019 => app_service_error(
                400,
                "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.",
            ),
            Protocol::V2017 => app_service_error(
                400,
                "The secret header is missing or does not match MSI_SECRET.",
            ),
        };
    }
    let requested_version = query.get("api-version").map(String::as_str).unwrap_or("");
    let version_ok = match protocol {
        Protocol::Imds => !requested_version.is_empty(),
        _ => requested_version == api_version,
    };
    if !version_ok {
        return error(
            protocol,
            400,
            "invalid_request",
            &format!(
                "(UnsupportedApiVersion) The HTTP resource that matches the request URI '{}' does not support the API version '{requested_version}'.",
                req.uri()
            ),
        );
    }
    let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
        return error(
            protocol,
            400,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };

    if let Some(fault) = state.next_fault(resource) {
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        if fault.garbage {
            return HttpResponse::build(
                actix_web::http::StatusCode::from_u16(fault.status).unwrap(),
            )
            .content_type("text/html")
            .body("<html><body>502 Bad Gateway (devstack garbage)</body></html>");
        }
        if fault.status != 200 {
            let mut res = match fault.status {
                500 => error(
                    protocol,
                    500,
                    "unknown",
                    "An unexpected error occured while fetching the AAD Token.",
                ),
                429 => error(protocol, 429, "throttled", "Too many requests"),
                s => error(protocol, s, "devstack_fault", "Injected fault"),
            };
            if let Some(secs) = fault.retry_after {
                res.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    secs.to_string().parse().unwrap(),
                );
            }
            return res;
        }
    }

    let world = state.world.read().unwrap().clone();
    let selectors: Vec<(&str, &String)> = [
        "client_id",
        "clientid",
        "object_id",
        "principal_id",
        "mi_res_id",
        "msi_res_id",
    ]
    .into_iter()
    .filter_map(|k| query.get(k).map(|v| (k, v)))
    .collect();
    let allowed: &[&str] = match protocol {
        Protocol::V2019 => &["client_id", "object_id", "principal_id", "mi_res_id"],
        Protocol::V2017 => &["clientid"],
        Protocol::Imds => &["client_id", "object_id", "mi_res_id", "msi_res_id"],
    };
    if selectors.len() > 1 || selectors.iter().any(|(k, _)| !allowed.contains(k)) {
        return error(
            protocol,
            400,
            "invalid_request",
            "Unable to load the proper Managed Identity.",
        );
    }
    let identity: Option<&ManagedIdentity> = match selectors.first() {
        None => Some(&world.app1),
        Some((kind, value)) => world
            .attached_identities()
            .into_iter()
            .find(|id| match *kind {
                "client_id" | "clientid" => id.client_id.eq_ignore_ascii_case(value),
                "object_id" | "principal_id" => id.object_id.eq_ignore_ascii_case(value),
                _ => id.resource_id.eq_ignore_ascii_case(value),
            }),
    };
    let Some(identity) = identity else {
        return error(
            protocol,
            400,
            "invalid_request",
            "Unable to load the proper Managed Identity.",
        );
    };
    // The platform's token cache may hand out a token minted earlier.
    let now = world
        .tokens_minted_at
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
    let Some(audience) = issuer::resolve_audience(&world, resource, &identity.object_id, now)
    else {
        return error(
            protocol,
            400,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                world.tenant_id
            ),
        );
    };
    let claims = issuer::access_token_claims(&world, identity, &audience, now);
    let token = state.issuer.sign(&claims, audience.version);
    let exp = now + world.token_lifetime_secs;
    let mut body = json!({
        "access_token": token,
        // A digit string: the Rust SDK rejects a JSON number here.
        "expires_on": exp.to_string(),
        "not_before": now.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": identity.client_id,
    });
    if protocol == Protocol::Imds {
        body["expires_in"] = json!(world.token_lifetime_secs.to_string());
        body["ext_expires_in"] = json!(world.token_lifetime_secs.to_string());
        body["refresh_token"] = json!("");
    }
    let mut res = HttpResponse::Ok();
    if protocol != Protocol::Imds {
        res.insert_header(("Server", "Kestrel"));
    }
    res.content_type("application/json; charset=utf-8")
        .json(body)
}

async fn discovery_v1(path: web::Path<String>, state: web::Data<IdentityState>) -> HttpResponse {
    discovery(&path, &state, TokenVersion::V1)
}

async fn discovery_v2(path: web::Path<String>, state: web::Data<IdentityState>) -> HttpResponse {
    discovery(&path, &state, TokenVersion::V2)
}

/// Entra's answer for a tenant it does not know.
pub fn unknown_tenant(tenant: &str) -> HttpResponse {
    imds_error(
        400,
        "invalid_tenant",
        &format!("AADSTS90002: Tenant '{tenant}' not found."),
    )
}

fn discovery(tenant: &str, state: &IdentityState, version: TokenVersion) -> HttpResponse {
    if state.issuer_of(tenant).is_none() {
        return unknown_tenant(tenant);
    }
    HttpResponse::Ok().json(issuer::openid_configuration(
        &state.authority,
        tenant,
        version,
    ))
}

async fn keys_v1(path: web::Path<String>, state: web::Data<IdentityState>) -> HttpResponse {
    keys(&path, &state, issuer::v1_issuer)
}

async fn keys_v2(path: web::Path<String>, state: web::Data<IdentityState>) -> HttpResponse {
    keys(&path, &state, issuer::v2_issuer)
}

/// The tenant's JWKS (a tenant's keys are its issuer's: the partner's differ).
fn keys(tenant: &str, state: &IdentityState, issuer_name: fn(&str) -> String) -> HttpResponse {
    match state.issuer_of(tenant) {
        Some(issuer) => HttpResponse::Ok().json(issuer.jwks(&issuer_name(tenant))),
        None => unknown_tenant(tenant),
    }
}

/// Accepts a full plan (`{"resource","steps":[…]}`) or the shorthand
/// `{"resource","fail_times","status","delay_ms","garbage","retry_after"}`.
async fn post_faults(
    body: web::Json<serde_json::Value>,
    state: web::Data<IdentityState>,
) -> HttpResponse {
    let value = body.into_inner();
    let plan = if value.get("steps").is_some() {
        serde_json::from_value::<FaultPlan>(value)
    } else {
        serde_json::from_value::<FaultStep>(json!({
            "status": value.get("status").cloned().unwrap_or(json!(500)),
            "times": value.get("fail_times").cloned().unwrap_or(json!(1)),
            "delay_ms": value.get("delay_ms").cloned().unwrap_or(json!(0)),
            "garbage": value.get("garbage").cloned().unwrap_or(json!(false)),
            "retry_after": value.get("retry_after").cloned().unwrap_or(json!(null)),
        }))
        .map(|step| FaultPlan {
            resource: value
                .get("resource")
                .and_then(|r| r.as_str())
                .map(str::to_owned),
            steps: VecDeque::from([step]),
        })
    };
    match plan {
        Ok(plan) => {
            state.add_faults(plan);
            HttpResponse::NoContent().finish()
        }
        Err(e) => HttpResponse::BadRequest().json(json!({"error": e.to_string()})),
    }
}

async fn clear_faults(state: web::Data<IdentityState>) -> HttpResponse {
    state.faults.lock().unwrap().clear();
    HttpResponse::NoContent().finish()
}

async fn get_requests(state: web::Data<IdentityState>) -> HttpResponse {
    HttpResponse::Ok().json(&*state.requests.lock().unwrap())
}

async fn clear_requests(state: web::Data<IdentityState>) -> HttpResponse {
    state.requests.lock().unwrap().clear();
    HttpResponse::NoContent().finish()
}

async fn get_world(state: web::Data<IdentityState>) -> HttpResponse {
    HttpResponse::Ok().json(&*state.world.read().unwrap())
}

#[cfg(test)]
mod tests {
    use super::secret_eq;

    #[test]
    fn secrets_compare_whole() {
        assert!(secret_eq(Some("header-value"), "header-value"));
        assert!(!secret_eq(Some("header-valuE"), "header-value"));
        assert!(!secret_eq(Some("header-value-longer"), "header-value"));
        assert!(!secret_eq(Some(""), "header-value"));
        assert!(!secret_eq(None, "header-value"));
    }
}
