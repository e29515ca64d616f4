//! Entra's token endpoint for the partner tenant (`login.microsoftonline.com`
//! in Azure), over HTTPS as the official clients insist: the
//! `client_credentials` grant with a `jwt-bearer` client assertion, which is
//! how a managed identity's token becomes a token of another tenant.
//!
//! | path | what |
//! |---|---|
//! | `POST /{tenant}/oauth2/v2.0/token` | the exchange, checked against the world's FIC records |
//! | `GET /{tenant}/v2.0/.well-known/openid-configuration` | discovery (MSAL reads it first) |
//! | `GET /{tenant}/discovery/v2.0/keys` | the partner issuer's keys |
//!
//! Refusals carry Entra's exact shape: `error`, `error_description` (the
//! AADSTS text with its trace and correlation ids), `error_codes`,
//! `timestamp`, `trace_id`, `correlation_id`, `error_uri`.

use crate::issuer::{self, Issuer, TokenVersion, v1_issuer, v2_issuer};
use crate::world::{FederatedCredential, World};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::sync::{Arc, RwLock};

/// The client assertion type the `jwt-bearer` profile names.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub struct LoginState {
    pub world: Arc<RwLock<World>>,
    /// Tenant A's issuer: it signed the managed identity's assertion.
    pub home_issuer: Arc<Issuer>,
    /// The partner tenant's issuer: it signs the exchanged tokens.
    pub partner_issuer: Arc<Issuer>,
    /// `https://127.0.0.1:<port>` (`DEVSTACK_LOGIN_AUTHORITY`).
    pub authority: String,
}

impl LoginState {
    /// Whether `tenant` is the partner tenant, the only one this endpoint serves.
    fn serves(&self, tenant: &str) -> bool {
        tenant == self.world.read().unwrap().partner.tenant_id
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/{tenant}/oauth2/v2.0/token", web::post().to(token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            web::get().to(discovery),
        )
        .route("/{tenant}/discovery/v2.0/keys", web::get().to(keys));
}

/// The form of a token request, every field optional so that a missing one
/// gets Entra's AADSTS900144 rather than a framework error.
#[derive(Default)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    scope: Option<String>,
}

/// One refusal, as Entra words it.
struct Refusal {
    status: u16,
    error: &'static str,
    code: u32,
    text: String,
}

impl Refusal {
    fn new(status: u16, error: &'static str, code: u32, text: String) -> Self {
        Self {
            status,
            error,
            code,
            text,
        }
    }

    fn respond(self, correlation_id: &str) -> HttpResponse {
        let now = time::OffsetDateTime::now_utc();
        let timestamp = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let trace_id = uuid::Uuid::new_v4().to_string();
        HttpResponse::build(
            actix_web::http::StatusCode::from_u16(self.status)
                .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
        )
        .insert_header(("Cache-Control", "no-store, no-cache"))
        .json(json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
                self.code, self.text
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        }))
    }
}

const WIF_DOCS: &str = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation";

async fn token(
    req: HttpRequest,
    tenant: web::Path<String>,
    body: web::Bytes,
    state: web::Data<LoginState>,
) -> HttpResponse {
    // Entra echoes the caller's client-request-id as the correlation id.
    let correlation_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| crate::world_guid(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let form: TokenForm = parse_form(&body);
    let world = state.world.read().unwrap().clone();
    match exchange(&world, &tenant, &form, &state) {
        Ok(body) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store, no-cache"))
            .json(body),
        Err(refusal) => {
            tracing::info!(
                tenant = %tenant,
                code = refusal.code,
                "login: token request refused"
            );
            refusal.respond(&correlation_id)
        }
    }
}

fn parse_form(body: &[u8]) -> TokenForm {
    let mut form = TokenForm::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            "grant_type" => &mut form.grant_type,
            "client_id" => &mut form.client_id,
            "client_assertion_type" => &mut form.client_assertion_type,
            "client_assertion" => &mut form.client_assertion,
            "scope" => &mut form.scope,
            _ => continue,
        };
        *slot = Some(v.into_owned());
    }
    form
}

fn missing(parameter: &str) -> Refusal {
    Refusal::new(
        400,
        "invalid_request",
        900144,
        format!("The request body must contain the following parameter: '{parameter}'."),
    )
}

/// Entra's checks, in its order: the tenant, the request, the client app in
/// that tenant, the assertion, the FIC records, the requested resource.
fn exchange(
    world: &World,
    tenant: &str,
    form: &TokenForm,
    state: &LoginState,
) -> Result<Value, Refusal> {
    let partner = &world.partner;
    if tenant != partner.tenant_id {
        return Err(Refusal::new(
            400,
            "invalid_tenant",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        ));
    }
    let grant = form
        .grant_type
        .as_deref()
        .ok_or_else(|| missing("grant_type"))?;
    if grant != "client_credentials" {
        return Err(Refusal::new(
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let client_id = form
        .client_id
        .as_deref()
        .ok_or_else(|| missing("client_id"))?;
    let scope = form.scope.as_deref().ok_or_else(|| missing("scope"))?;
    let assertion_type = form
        .client_assertion_type
        .as_deref()
        .ok_or_else(|| missing("client_assertion_type"))?;
    let assertion = form
        .client_assertion
        .as_deref()
        .ok_or_else(|| missing("client_assertion"))?;
    if assertion_type != JWT_BEARER {
        return Err(Refusal::new(
            400,
            "invalid_request",
            70002,
            format!("The client_assertion_type '{assertion_type}' is not supported."),
        ));
    }
    let app = &world.federated_app;
    let sp_object_id = match &app.partner_sp_object_id {
        Some(oid) if app.client_id.eq_ignore_ascii_case(client_id) => oid.clone(),
        _ => {
            return Err(Refusal::new(
                400,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                ),
            ));
        }
    };
    let presented = verified_assertion(assertion, &state.home_issuer)?;
    match_fic(&app.federated_credentials, &presented)?;
    let resource = scope.strip_suffix("/.default").unwrap_or("");
    let api = &partner.api;
    if resource.is_empty() || scope.split_whitespace().count() != 1 {
        return Err(Refusal::new(
            400,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    }
    if resource != api.app_id_uri && !resource.eq_ignore_ascii_case(&api.client_id) {
        return Err(Refusal::new(
            400,
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
            ),
        ));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let lifetime = world.token_lifetime_secs;
    let roles = world.partner_roles_of(&sp_object_id, now);
    let iss = v1_issuer(tenant);
    let mut claims = json!({
        "aud": resource,
        "iss": iss, "idp": iss,
        "iat": now, "nbf": now, "exp": now + lifetime,
        "aio": "devstack",
        "appid": app.client_id,
        // 2: the client authenticated with an assertion (a certificate or a FIC).
        "appidacr": "2",
        "idtyp": "app",
        "oid": sp_object_id, "sub": sp_object_id,
        "tid": tenant,
        "rh": "0.devstack.",
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": "1.0",
    });
    if !roles.is_empty() {
        claims["roles"] = json!(roles);
    }
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime - 1,
        "ext_expires_in": lifetime - 1,
        "access_token": state.partner_issuer.sign(&claims, TokenVersion::V1),
    }))
}

/// What the assertion presented, once its signature and lifetime check out.
struct Presented {
    iss: String,
    sub: String,
    aud: String,
}

fn verified_assertion(assertion: &str, home: &Issuer) -> Result<Presented, Refusal> {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false; // matched against the FIC below, as Entra does
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(assertion, &home.decoding_key(), &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refusal::new(
                    400,
                    "invalid_client",
                    700024,
                    "Client assertion is not within its valid time range.".into(),
                ),
                _ => Refusal::new(
                    401,
                    "invalid_client",
                    700027,
                    "Client assertion failed signature validation.".into(),
                ),
            })?;
    let text = |name: &str| {
        data.claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Presented {
        iss: text("iss"),
        sub: text("sub"),
        aud: text("aud"),
    })
}

/// Entra's FIC matching: issuer and audience exactly, subject case-sensitively;
/// the error names the first thing no record matches.
fn match_fic(fics: &[FederatedCredential], p: &Presented) -> Result<(), Refusal> {
    let matches = |f: &&FederatedCredential| {
        f.issuer == p.iss && f.subject == p.sub && f.audiences.contains(&p.aud)
    };
    if fics.iter().any(|f| matches(&f)) {
        return Ok(());
    }
    let (iss, sub, aud) = (&p.iss, &p.sub, &p.aud);
    let no_match = |code: u32, what: &str, value: &str| {
        Refusal::new(
            401,
            "invalid_client",
            code,
            format!(
                "No matching federated identity record found for presented assertion {what} '{value}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. {WIF_DOCS}"
            ),
        )
    };
    if fics.is_empty() {
        return Err(Refusal::new(
            400,
            "invalid_request",
            70021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'. {WIF_DOCS}"
            ),
        ));
    }
    let same_issuer: Vec<&FederatedCredential> = fics.iter().filter(|f| f.issuer == *iss).collect();
    if same_issuer.is_empty() {
        return Err(no_match(700211, "issuer", iss));
    }
    if !same_issuer.iter().any(|f| f.subject == *sub) {
        if same_issuer
            .iter()
            .any(|f| f.subject.eq_ignore_ascii_case(sub))
        {
            return Err(Refusal::new(
                401,
                "invalid_client",
                7002138,
                format!(
                    "No matching federated identity record found for presented assertion subject '{sub}'. The subject matches a federated identity credential only when compared case-insensitively; subjects are case-sensitive. {WIF_DOCS}"
                ),
            ));
        }
        return Err(no_match(700213, "subject", sub));
    }
    Err(no_match(700212, "audience", aud))
}

async fn discovery(tenant: web::Path<String>, state: web::Data<LoginState>) -> HttpResponse {
    if !state.serves(&tenant) {
        return crate::identity_endpoint::unknown_tenant(&tenant);
    }
    HttpResponse::Ok().json(issuer::openid_configuration(
        &state.authority,
        &tenant,
        TokenVersion::V2,
    ))
}

async fn keys(tenant: web::Path<String>, state: web::Data<LoginState>) -> HttpResponse {
    if !state.serves(&tenant) {
        return crate::identity_endpoint::unknown_tenant(&tenant);
    }
    HttpResponse::Ok().json(state.partner_issuer.jwks(&v2_issuer(&tenant)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "5b3f2a1c-0d4e-4f6a-8b7c-9d0e1f2a3b4c";
    const ISS: &str = "https://login.microsoftonline.com/0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a/v2.0";

    fn fic(issuer: &str, subject: &str, audience: &str) -> FederatedCredential {
        FederatedCredential {
            name: "app1".into(),
            issuer: issuer.into(),
            subject: subject.into(),
            audiences: vec![audience.into()],
        }
    }

    fn presented() -> Presented {
        Presented {
            iss: ISS.into(),
            sub: OID.into(),
            aud: crate::world::TOKEN_EXCHANGE_AUDIENCE.into(),
        }
    }

    fn code(fics: &[FederatedCredential]) -> Option<(u32, u16, &'static str, String)> {
        match_fic(fics, &presented())
            .err()
            .map(|r| (r.code, r.status, r.error, r.text))
    }

    #[test]
    fn fics_match_exactly_and_name_the_first_mismatch() {
        let aud = crate::world::TOKEN_EXCHANGE_AUDIENCE;
        assert_eq!(code(&[fic(ISS, OID, aud)]), None);
        let (c, status, error, text) = code(&[]).unwrap();
        assert_eq!((c, status, error), (70021, 400, "invalid_request"));
        assert!(
            text.contains(&format!("Assertion Subject: '{OID}'")),
            "{text}"
        );
        let sts = "https://sts.windows.net/0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a/";
        assert_eq!(code(&[fic(sts, OID, aud)]).unwrap().0, 700211);
        let upper = OID.to_uppercase();
        assert_eq!(code(&[fic(ISS, &upper, aud)]).unwrap().0, 7002138);
        let (c, status, _, text) = code(&[fic(ISS, "another", aud)]).unwrap();
        assert_eq!((c, status), (700213, 401));
        assert!(text.contains(&format!("subject '{OID}'")), "{text}");
        assert_eq!(
            code(&[fic(ISS, OID, "api://AzureADTokenExchangeUSGov")])
                .unwrap()
                .0,
            700212
        );
        // Any one matching record is enough.
        assert_eq!(code(&[fic(sts, OID, aud), fic(ISS, OID, aud)]), None);
    }

    /// Only tenant A's key makes a valid assertion: a token signed by any
    /// other key is refused before any FIC is looked at.
    #[test]
    fn assertions_are_checked_against_the_home_tenants_key() {
        let home = Issuer::generate().unwrap();
        let stranger = Issuer::generate().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({"iss": ISS, "sub": OID, "aud": crate::world::TOKEN_EXCHANGE_AUDIENCE,
            "iat": now, "nbf": now, "exp": now + 600, "ver": "2.0"});
        let signed = |by: &Issuer| by.sign(&claims, TokenVersion::V2);
        let presented = verified_assertion(&signed(&home), &home).ok().unwrap();
        assert_eq!((presented.iss.as_str(), presented.sub.as_str()), (ISS, OID));
        let refused = verified_assertion(&signed(&stranger), &home).err().unwrap();
        assert_eq!(
            (refused.code, refused.status, refused.error),
            (700027, 401, "invalid_client")
        );
    }

    #[test]
    fn refusals_have_entras_shape() {
        let res = Refusal::new(401, "invalid_client", 700213, "No match.".into())
            .respond("c0ffee00-0000-4000-8000-000000000000");
        assert_eq!(res.status(), 401);
        let body = actix_web::body::MessageBody::try_into_bytes(res.into_body()).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_codes"], json!([700213]));
        assert_eq!(
            body["correlation_id"],
            "c0ffee00-0000-4000-8000-000000000000"
        );
        let text = body["error_description"].as_str().unwrap();
        assert!(
            text.starts_with("AADSTS700213: No match. Trace ID: "),
            "{text}"
        );
        assert!(text.contains("Correlation ID: c0ffee00-0000-4000-8000-000000000000 Timestamp: "));
        assert!(body["trace_id"].is_string() && body["timestamp"].is_string());
    }
}
