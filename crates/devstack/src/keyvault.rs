//! Key Vault secrets data plane (the subset the SDKs use), over HTTPS.
//!
//! * No `Authorization` → 401 with the challenge the SDK policies parse, before
//!   the body is read (the SDK's first request has no body).
//! * Bearer tokens are validated through the issuer's JWKS; `aud` must be
//!   `https://vault.azure.net`.
//! * RBAC per principal: "Key Vault Secrets User" reads, "Officer" also writes;
//!   a denial is the real 403 `Forbidden` / `ForbiddenByRbac` body.
//! * Any `api-version`; `GET /secrets/{name}/` (trailing slash) is the latest.

use crate::validate::TokenValidator;
use crate::world::{VaultRole, World};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

pub const VAULT_AUDIENCE: &str = "https://vault.azure.net";

#[derive(Clone, Debug)]
struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    created: i64,
    enabled: bool,
    tags: Value,
}

/// A secret to seed, as in the seed file `{"secrets":[{"name","value","contentType"}]}`.
#[derive(Clone, Debug, Deserialize)]
pub struct SeedSecret {
    pub name: String,
    pub value: String,
    #[serde(default, rename = "contentType")]
    pub content_type: Option<String>,
}

#[derive(Deserialize)]
pub struct SeedFile {
    pub secrets: Vec<SeedSecret>,
}

pub struct VaultState {
    world: Arc<RwLock<World>>,
    validator: Arc<TokenValidator>,
    /// name (lower case: names are case-insensitive) → versions, newest last.
    secrets: Mutex<BTreeMap<String, (String, Vec<Version>)>>,
}

impl VaultState {
    pub fn new(
        world: Arc<RwLock<World>>,
        validator: Arc<TokenValidator>,
        seed: &[SeedSecret],
    ) -> Self {
        let state = Self {
            world,
            validator,
            secrets: Mutex::default(),
        };
        for s in seed {
            state.put(&s.name, s.value.clone(), s.content_type.clone(), json!({}));
        }
        state
    }

    fn put(&self, name: &str, value: String, content_type: Option<String>, tags: Value) -> Version {
        let version = Version {
            id: uuid::Uuid::new_v4().simple().to_string(),
            value,
            content_type,
            created: time::OffsetDateTime::now_utc().unix_timestamp(),
            enabled: true,
            tags,
        };
        self.secrets
            .lock()
            .unwrap()
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| (name.to_owned(), vec![]))
            .1
            .push(version.clone());
        version
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/secrets", web::get().to(list_secrets))
        .route("/secrets/", web::get().to(list_secrets))
        .route("/secrets/{name}", web::get().to(get_latest))
        .route("/secrets/{name}/", web::get().to(get_latest))
        .route("/secrets/{name}", web::put().to(set_secret))
        .route("/secrets/{name}/versions", web::get().to(list_versions))
        .route("/secrets/{name}/{version}", web::get().to(get_version))
        .default_service(web::to(not_found));
}

fn kv_error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("x-ms-keyvault-service-version", "1.9.devstack"))
        .json(json!({ "error": { "code": code, "message": message } }))
}

fn challenge(state: &VaultState) -> String {
    format!(
        "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"{VAULT_AUDIENCE}\"",
        state.validator.tenant()
    )
}

fn unauthorized(state: &VaultState, message: &str) -> HttpResponse {
    let mut res = kv_error(401, "Unauthorized", message);
    res.headers_mut().insert(
        actix_web::http::header::WWW_AUTHENTICATE,
        challenge(state).parse().unwrap(),
    );
    res
}

enum Action {
    Get,
    List,
    Set,
}

impl Action {
    fn rbac_name(&self) -> &'static str {
        match self {
            Self::Get => "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            Self::List => "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            Self::Set => "Microsoft.KeyVault/vaults/secrets/setSecret/action",
        }
    }

    fn allowed_for(&self, role: Option<VaultRole>) -> bool {
        matches!(
            (self, role),
            (_, Some(VaultRole::SecretsOfficer))
                | (Self::Get | Self::List, Some(VaultRole::SecretsUser))
        )
    }
}

/// Authenticates and authorizes; `Err` is the response to send.
async fn authorize(
    req: &HttpRequest,
    state: &VaultState,
    action: Action,
    secret: Option<&str>,
) -> Result<(), HttpResponse> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let Some(token) = auth.and_then(|a| {
        a.strip_prefix("Bearer ")
            .or_else(|| a.strip_prefix("bearer "))
    }) else {
        return Err(unauthorized(
            state,
            "AKV10000: Request is missing a Bearer or PoP token.",
        ));
    };
    let audiences = [VAULT_AUDIENCE.to_owned(), format!("{VAULT_AUDIENCE}/")];
    let claims = match state
        .validator
        .validate(token, &audiences, &state.validator.tenant_issuers())
        .await
    {
        Ok(c) => c,
        Err(crate::validate::Rejection::Audience { found, .. }) => {
            return Err(unauthorized(
                state,
                &format!("AKV10022: Invalid audience. Expected {VAULT_AUDIENCE}, found: {found}."),
            ));
        }
        Err(crate::validate::Rejection::Expired) => {
            return Err(unauthorized(state, "AKV10032: Token expired."));
        }
        Err(other) => {
            return Err(unauthorized(
                state,
                &format!("AKV10032: Invalid token: {other}."),
            ));
        }
    };
    let oid = claims
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let appid = claims
        .get("appid")
        .or_else(|| claims.get("azp"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let world = state.world.read().unwrap();
    if action.allowed_for(world.vault_role(oid)) {
        return Ok(());
    }
    let vault_id = format!(
        "/subscriptions/{}/resourcegroups/{}/providers/microsoft.keyvault/vaults/{}",
        world.subscription_id, world.resource_group, world.vault_name
    );
    let resource = match secret {
        Some(name) => format!("{vault_id}/secrets/{name}"),
        None => vault_id,
    };
    // The real message, line for line (CRLF separated).
    let message = format!(
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={appid};oid={oid};iss={iss}\r\nAction: '{}'\r\nResource: '{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {};location=devstack\r\n",
        action.rbac_name(),
        resource.to_ascii_lowercase(),
        world.vault_name
    );
    Err(HttpResponse::Forbidden().json(json!({
        "error": { "code": "Forbidden", "message": message, "innererror": { "code": "ForbiddenByRbac" } }
    })))
}

fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn bundle(req: &HttpRequest, name: &str, v: &Version, with_value: bool) -> Value {
    let host = req.connection_info().host().to_owned();
    let mut body = json!({
        "id": format!("https://{host}/secrets/{name}/{}", v.id),
        "attributes": {
            "enabled": v.enabled, "created": v.created, "updated": v.created,
            "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90
        },
        "tags": v.tags,
    });
    if let Some(ct) = &v.content_type {
        body["contentType"] = json!(ct);
    }
    if with_value {
        body["value"] = json!(v.value);
    }
    body
}

fn secret_not_found(name: &str) -> HttpResponse {
    kv_error(
        404,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn bad_name(name: &str) -> HttpResponse {
    kv_error(
        400,
        "BadParameter",
        &format!("The request URI contains an invalid name: {name}"),
    )
}

async fn get_latest(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<VaultState>,
) -> HttpResponse {
    get(&req, &path, None, &state).await
}

async fn get_version(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<VaultState>,
) -> HttpResponse {
    let (name, version) = path.into_inner();
    get(&req, &name, Some(&version), &state).await
}

async fn get(
    req: &HttpRequest,
    name: &str,
    version: Option<&str>,
    state: &VaultState,
) -> HttpResponse {
    if let Err(res) = authorize(req, state, Action::Get, Some(name)).await {
        return res;
    }
    if !valid_name(name) {
        return bad_name(name);
    }
    let secrets = state.secrets.lock().unwrap();
    let Some((display, versions)) = secrets.get(&name.to_ascii_lowercase()) else {
        return secret_not_found(name);
    };
    let found = match version {
        None | Some("") => versions.last(),
        Some(v) => versions.iter().find(|x| x.id.eq_ignore_ascii_case(v)),
    };
    match found {
        Some(v) => HttpResponse::Ok().json(bundle(req, display, v, true)),
        None => secret_not_found(&format!("{name}/{}", version.unwrap_or_default())),
    }
}

#[derive(Deserialize)]
struct SetBody {
    value: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    tags: Option<Value>,
}

async fn set_secret(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<VaultState>,
) -> HttpResponse {
    let name = path.into_inner();
    if let Err(res) = authorize(&req, &state, Action::Set, Some(&name)).await {
        return res;
    }
    if !valid_name(&name) {
        return bad_name(&name);
    }
    let Ok(SetBody {
        value: Some(value),
        content_type,
        tags,
    }) = serde_json::from_slice::<SetBody>(&body)
    else {
        return kv_error(400, "BadParameter", "Property value is required.");
    };
    let v = state.put(&name, value, content_type, tags.unwrap_or(json!({})));
    HttpResponse::Ok().json(bundle(&req, &name, &v, true))
}

async fn list_secrets(req: HttpRequest, state: web::Data<VaultState>) -> HttpResponse {
    if let Err(res) = authorize(&req, &state, Action::List, None).await {
        return res;
    }
    let host = req.connection_info().host().to_owned();
    let items: Vec<Value> = state
        .secrets
        .lock()
        .unwrap()
        .values()
        .filter_map(|(name, versions)| {
            let v = versions.last()?;
            let mut item = bundle(&req, name, v, false);
            item["id"] = json!(format!("https://{host}/secrets/{name}"));
            Some(item)
        })
        .collect();
    HttpResponse::Ok().json(json!({ "value": items, "nextLink": null }))
}

async fn list_versions(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<VaultState>,
) -> HttpResponse {
    let name = path.into_inner();
    if let Err(res) = authorize(&req, &state, Action::List, Some(&name)).await {
        return res;
    }
    let secrets = state.secrets.lock().unwrap();
    let Some((display, versions)) = secrets.get(&name.to_ascii_lowercase()) else {
        return secret_not_found(&name);
    };
    let items: Vec<Value> = versions
        .iter()
        .map(|v| bundle(&req, display, v, false))
        .collect();
    HttpResponse::Ok().json(json!({ "value": items, "nextLink": null }))
}

async fn not_found(req: HttpRequest, state: web::Data<VaultState>) -> HttpResponse {
    // Unauthenticated requests get the challenge whatever the path, as in Azure.
    if req.headers().get("authorization").is_none() {
        return unauthorized(
            &state,
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
    }
    kv_error(404, "NotFound", "The requested resource was not found.")
}
