//! Microsoft Graph v1.0, the part the handler and the official Graph SDKs
//! use to read service principals and app role assignments (spec §1), over
//! HTTPS and backed by the same world whose roles the issuer puts in tokens.
//!
//! * `servicePrincipals/{id}`, `servicePrincipals(appId='…')` (one entity),
//!   `servicePrincipals?$filter=appId eq '…'` (a collection),
//!   `servicePrincipals/{id}/appRoleAssignments` (paged by [`PAGE_SIZE`],
//!   with an opaque `$skiptoken` in `@odata.nextLink`); `$select` narrows.
//! * A bad signature, issuer or audience (both Graph audiences are accepted)
//!   is 401 `InvalidAuthenticationToken`. Without `Application.Read.All`
//!   (or `Directory.Read.All`) in `roles`, anything but the caller's own
//!   service principal is 403 `Authorization_RequestDenied`.
//! * Throttling (the `graph-throttled` scenario, or `POST /_devstack/throttle`)
//!   is 429 `TooManyRequests` with a fractional `Retry-After`.
//! * Every answer has `request-id` and `client-request-id`.

use crate::validate::{Rejection, TokenValidator};
use crate::world::{AppRegistration, World};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

/// Assignments per page: small, so every client has to follow `@odata.nextLink`.
pub const PAGE_SIZE: usize = 1;
/// Graph's own appId, and the audiences its tokens may carry.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// The permissions that let an app read other principals and assignments.
const READ_PERMISSIONS: &[&str] = &["Application.Read.All", "Directory.Read.All"];
const ODATA_JSON: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

pub struct GraphState {
    pub world: Arc<RwLock<World>>,
    validator: Arc<TokenValidator>,
    /// Requests still to throttle (`u32::MAX`: all of them).
    throttle: AtomicU32,
    /// 429s answered so far (`GET /_devstack/throttle` reports it).
    throttled: AtomicU32,
    /// Its own public URL, for `@odata.nextLink` and `@odata.context`.
    pub base_url: RwLock<String>,
}

impl GraphState {
    pub fn new(world: Arc<RwLock<World>>, validator: Arc<TokenValidator>, throttled: bool) -> Self {
        Self {
            world,
            validator,
            throttle: AtomicU32::new(if throttled { u32::MAX } else { 0 }),
            throttled: AtomicU32::new(0),
            base_url: RwLock::new(String::new()),
        }
    }

    /// Throttles the next `times` requests.
    pub fn throttle(&self, times: u32) {
        self.throttle.store(times, Ordering::SeqCst);
    }

    fn take_throttle(&self) -> bool {
        let take = self
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u32::MAX => Some(u32::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        if take {
            self.throttled.fetch_add(1, Ordering::SeqCst);
        }
        take
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/_devstack/throttle", web::post().to(post_throttle))
        .route("/_devstack/throttle", web::get().to(get_throttle))
        .default_service(web::to(dispatch));
}

#[derive(serde::Deserialize)]
struct Throttle {
    times: u32,
}

async fn get_throttle(state: web::Data<GraphState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"throttled": state.throttled.load(Ordering::SeqCst)}))
}

async fn post_throttle(state: web::Data<GraphState>, body: web::Json<Throttle>) -> HttpResponse {
    state.throttle(body.times);
    HttpResponse::NoContent().finish()
}

/// Graph's error envelope, with the headers every answer carries.
fn error(req: &HttpRequest, status: u16, code: &str, message: &str) -> HttpResponse {
    let (request_id, client_request_id) = ids(req);
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut inner = json!({"date": date.trim_end_matches('Z'), "request-id": request_id, "client-request-id": client_request_id});
    if status == 429 {
        inner["code"] = json!("429");
        inner["message"] = json!("Please retry after");
        inner["status"] = json!("429");
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("request-id", request_id))
        .insert_header(("client-request-id", client_request_id))
        .content_type("application/json")
        .body(json!({"error": {"code": code, "message": message, "innerError": inner}}).to_string())
}

fn ids(req: &HttpRequest) -> (String, String) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64)
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    (request_id, client)
}

fn ok(req: &HttpRequest, body: Value) -> HttpResponse {
    let (request_id, client_request_id) = ids(req);
    HttpResponse::Ok()
        .insert_header(("request-id", request_id))
        .insert_header(("client-request-id", client_request_id))
        .content_type(ODATA_JSON)
        .body(body.to_string())
}

/// What a request asks for, from its decoded path.
enum Route {
    ById(String),
    ByAppId(String),
    Filter,
    Assignments(String),
}

fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v1.0/servicePrincipals")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Filter);
    }
    if let Some(key) = rest
        .strip_prefix("(appId='")
        .and_then(|r| r.strip_suffix("')"))
    {
        return Some(Route::ByAppId(key.replace("''", "'")));
    }
    let rest = rest.strip_prefix('/')?;
    match rest.split_once('/') {
        None => Some(Route::ById(rest.to_owned())),
        Some((id, "appRoleAssignments")) => Some(Route::Assignments(id.to_owned())),
        _ => None,
    }
}

async fn dispatch(req: HttpRequest, state: web::Data<GraphState>) -> HttpResponse {
    let path = percent_encoding::percent_decode_str(req.path())
        .decode_utf8_lossy()
        .into_owned();
    if req.method() != actix_web::http::Method::GET {
        return error(
            &req,
            405,
            "Request_BadRequest",
            "Only GET is served by devstack's Graph.",
        );
    }
    // Authentication comes first, as in Graph.
    let claims = match authenticate(&req, &state).await {
        Ok(claims) => claims,
        Err(message) => return error(&req, 401, "InvalidAuthenticationToken", &message),
    };
    if state.take_throttle() {
        let mut res = error(&req, 429, "TooManyRequests", "Please retry again later.");
        let headers = res.headers_mut();
        headers.insert(
            actix_web::http::header::RETRY_AFTER,
            "0.25".parse().unwrap(),
        );
        headers.insert(
            actix_web::http::header::HeaderName::from_static("x-ms-throttle-scope"),
            "Tenant_Application/ReadWrite/devstack".parse().unwrap(),
        );
        headers.insert(
            actix_web::http::header::HeaderName::from_static("x-ms-throttle-information"),
            "ResourceUnitLimitExceeded".parse().unwrap(),
        );
        return res;
    }
    let Some(route) = route(&path) else {
        return error(
            &req,
            400,
            "BadRequest",
            &format!("Resource not found for the segment '{path}'."),
        );
    };
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let select: Option<Vec<String>> =
        param("$select").map(|s| s.split(',').map(|f| f.trim().to_owned()).collect());
    let world = state.world.read().unwrap().clone();
    let caller = claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let may_read_all = claims
        .get("roles")
        .and_then(Value::as_array)
        .is_some_and(|r| {
            r.iter()
                .any(|v| v.as_str().is_some_and(|v| READ_PERMISSIONS.contains(&v)))
        });
    let denied = || {
        error(
            &req,
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    };
    let base = state.base_url.read().unwrap().clone();
    match route {
        Route::ById(id) => match service_principal(&world, |sp| sp["id"] == id.as_str()) {
            Some(sp) if may_read_all || sp["id"] == caller.as_str() => {
                ok(&req, entity(&base, sp, select.as_deref()))
            }
            Some(_) => denied(),
            None => not_found(&req, &id),
        },
        Route::ByAppId(app_id) => {
            match service_principal(&world, |sp| {
                sp["appId"]
                    .as_str()
                    .is_some_and(|a| a.eq_ignore_ascii_case(&app_id))
            }) {
                Some(sp) if may_read_all || sp["id"] == caller.as_str() => {
                    ok(&req, entity(&base, sp, select.as_deref()))
                }
                Some(_) => denied(),
                None => not_found(&req, &format!("appId={app_id}")),
            }
        }
        Route::Filter => {
            if !may_read_all {
                return denied();
            }
            let Some(app_id) = param("$filter").and_then(|f| {
                f.trim()
                    .strip_prefix("appId eq '")
                    .and_then(|r| r.strip_suffix('\''))
                    .map(str::to_owned)
            }) else {
                return error(
                    &req,
                    400,
                    "Request_UnsupportedQuery",
                    "devstack's Graph filters service principals by appId eq '…' only.",
                );
            };
            let value: Vec<Value> = all_service_principals(&world)
                .into_iter()
                .filter(|sp| {
                    sp["appId"]
                        .as_str()
                        .is_some_and(|a| a.eq_ignore_ascii_case(&app_id))
                })
                .map(|sp| selected(sp, select.as_deref()))
                .collect();
            ok(
                &req,
                json!({"@odata.context": context(&base, select.as_deref(), ""), "value": value}),
            )
        }
        Route::Assignments(principal) => {
            if !may_read_all {
                return denied();
            }
            if service_principal(&world, |sp| sp["id"] == principal.as_str()).is_none() {
                return not_found(&req, &principal);
            }
            let all = assignments(&world, &principal);
            let skip: usize = param("$skiptoken").and_then(decode_skiptoken).unwrap_or(0);
            let page: Vec<Value> = all.iter().skip(skip).take(PAGE_SIZE).cloned().collect();
            let mut body = json!({
                "@odata.context": format!("{base}/$metadata#servicePrincipals('{principal}')/appRoleAssignments"),
                "value": page,
            });
            if skip + PAGE_SIZE < all.len() {
                body["@odata.nextLink"] = json!(format!(
                    "{base}/servicePrincipals/{principal}/appRoleAssignments?$skiptoken={}",
                    encode_skiptoken(skip + PAGE_SIZE)
                ));
            }
            ok(&req, body)
        }
    }
}

fn not_found(req: &HttpRequest, id: &str) -> HttpResponse {
    error(
        req,
        404,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

/// An opaque token, as Graph's are (base64 of a marker and the offset).
fn encode_skiptoken(offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("devstack:{offset}"))
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("devstack:")?
        .parse()
        .ok()
}

async fn authenticate(req: &HttpRequest, state: &GraphState) -> Result<Map<String, Value>, String> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("Access token is empty.")?;
    let audiences = [
        GRAPH_RESOURCE.to_owned(),
        format!("{GRAPH_RESOURCE}/"),
        GRAPH_APP_ID.to_owned(),
    ];
    state
        .validator
        .validate(token, &audiences, &state.validator.tenant_issuers())
        .await
        .map_err(|r| match r {
            Rejection::Audience { .. } => {
                "Access token validation failure. Invalid audience.".to_owned()
            }
            Rejection::Expired => "Lifetime validation failed, the token is expired.".to_owned(),
            Rejection::Issuer(_) => "Access token validation failure. Invalid issuer.".to_owned(),
            _ => "Access token validation failure.".to_owned(),
        })
}

fn context(base: &str, select: Option<&[String]>, suffix: &str) -> String {
    match select {
        Some(fields) => format!(
            "{base}/$metadata#servicePrincipals({}){suffix}",
            fields.join(",")
        ),
        None => format!("{base}/$metadata#servicePrincipals{suffix}"),
    }
}

fn entity(base: &str, sp: Value, select: Option<&[String]>) -> Value {
    let mut out = json!({"@odata.context": context(base, select, "/$entity")});
    if let (Some(out), Value::Object(fields)) = (out.as_object_mut(), selected(sp, select)) {
        out.extend(fields);
    }
    out
}

fn selected(sp: Value, select: Option<&[String]>) -> Value {
    match (select, sp) {
        (Some(fields), Value::Object(map)) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| fields.iter().any(|f| f.eq_ignore_ascii_case(k)))
                .collect(),
        ),
        (_, sp) => sp,
    }
}

fn service_principal(world: &World, pick: impl Fn(&Value) -> bool) -> Option<Value> {
    all_service_principals(world)
        .into_iter()
        .find(|sp| pick(sp))
}

/// Every service principal of the world: the two managed identities, app2 and Graph.
fn all_service_principals(world: &World) -> Vec<Value> {
    let identity = |mi: &crate::world::ManagedIdentity, explicit: bool| {
        json!({
            "id": mi.object_id, "appId": mi.client_id, "displayName": mi.name,
            "servicePrincipalType": "ManagedIdentity", "accountEnabled": true,
            "alternativeNames": [format!("isExplicit={}", if explicit { "True" } else { "False" }), mi.resource_id],
            "servicePrincipalNames": [mi.client_id, format!("https://identity.azure.net/{}", mi.object_id)],
            "appRoles": [],
        })
    };
    vec![
        identity(&world.app1, false),
        identity(&world.user_assigned, true),
        application(&world.app2),
        application(&world.graph),
    ]
}

fn application(app: &AppRegistration) -> Value {
    json!({
        "id": app.sp_object_id, "appId": app.client_id, "displayName": app.display_name,
        "servicePrincipalType": "Application", "accountEnabled": true, "alternativeNames": [],
        "servicePrincipalNames": [app.client_id, app.app_id_uri],
        "appRoles": app.app_roles.iter().map(|r| json!({
            "id": r.id, "value": r.value, "displayName": r.value, "description": r.value,
            "allowedMemberTypes": r.allowed_member_types, "isEnabled": r.is_enabled, "origin": "Application",
        })).collect::<Vec<_>>(),
    })
}

fn assignments(world: &World, principal: &str) -> Vec<Value> {
    let principal_name = [&world.app1, &world.user_assigned]
        .into_iter()
        .find(|mi| mi.object_id == principal)
        .map(|mi| mi.name.clone())
        .unwrap_or_default();
    world
        .grants
        .iter()
        .filter(|g| g.principal == principal)
        .filter_map(|g| {
            let app = world.application(&g.resource_app_id)?;
            Some(json!({
                "id": g.id, "appRoleId": g.role_id, "principalId": g.principal,
                "principalType": "ServicePrincipal", "principalDisplayName": principal_name,
                "resourceId": app.sp_object_id, "resourceDisplayName": app.display_name,
                "createdDateTime": time::OffsetDateTime::from_unix_timestamp(g.created).ok()
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                "deletedDateTime": null,
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_skiptokens() {
        assert!(
            matches!(route("/v1.0/servicePrincipals(appId='a''b')"), Some(Route::ByAppId(a)) if a == "a'b")
        );
        assert!(
            matches!(route("/v1.0/servicePrincipals/x/appRoleAssignments"), Some(Route::Assignments(x)) if x == "x")
        );
        assert!(matches!(
            route("/v1.0/servicePrincipals"),
            Some(Route::Filter)
        ));
        assert!(route("/v1.0/servicePrincipals/x/owners").is_none());
        assert_eq!(decode_skiptoken(&encode_skiptoken(3)), Some(3));
        assert_eq!(decode_skiptoken("junk"), None);
    }
}
