//! The rules: one per classic failure, each naming the exact role, setting
//! and ids to change.

use super::refusal::{self, TokenRefusal};
use super::{Diagnosis, Facts, Principal, TokenView, UpstreamView, challenge_params};
use crate::azure::Stage;
use crate::identity::is_guid;
use crate::problem::ProblemType;
use serde_json::{Map, Value, json};

/// Token caching and propagation: why a correct fix may not show at once.
const PROPAGATION: &str = "Role assignments can take up to 10 minutes to take effect, and the platform caches managed-identity tokens for up to 24 hours: if the token's roles predate the change, restart the app to get a fresh one.";

fn claim(f: &Facts, name: &str) -> Option<String> {
    f.upstream
        .claims
        .as_ref()?
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn principal(f: &Facts) -> Principal {
    Principal {
        oid: claim(f, "oid"),
        appid: claim(f, "appid"),
        azp: claim(f, "azp"),
        tid: claim(f, "tid"),
        xms_mirid: claim(f, "xms_mirid"),
        source: f.identity.source,
        selector: f.identity.selector,
        id: f.identity.id.clone(),
    }
}

fn token(f: &Facts) -> Option<TokenView> {
    let claims = f.upstream.claims.as_ref()?;
    Some(TokenView {
        aud: claim(f, "aud"),
        iss: claim(f, "iss"),
        roles: claims
            .get("roles")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        exp: claims.get("exp").and_then(Value::as_i64),
        ver: claim(f, "ver"),
    })
}

/// The vault's name: Key Vault's 403 names it (`Vault: <name>;location=…` or
/// `key vault '<name>;location=…'`); else the first label of KEYVAULT_URL.
fn vault_name(f: &Facts) -> String {
    let from_message = f
        .upstream
        .message
        .split("Vault: ")
        .nth(1)
        .or_else(|| f.upstream.message.split("key vault '").nth(1))
        .and_then(|rest| rest.split([';', '\'', '\r', '\n']).next())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    from_message
        .map(str::to_owned)
        .or_else(|| f.target.vault.clone())
        .unwrap_or_else(|| "<vault>".into())
}

/// Where app2's client id is found when neither the refusal nor APP2_RESOURCE names it.
const APP2_CLIENT_ID_LOOKUP: &str = "app2's client id (APP2_RESOURCE names it as api://<client id>; or az webapp auth show -g <rg> -n <app2> --query identityProviders.azureActiveDirectory.registration.clientId)";

/// The GUID in `api://<guid>` (or a bare GUID), if that is what `s` is.
fn guid(s: &str) -> Option<String> {
    Some(
        s.trim_start_matches("api://")
            .trim_end_matches('/')
            .to_owned(),
    )
    .filter(|s| is_guid(s))
}

/// app2's client id: from EasyAuth's challenge, the audiences app2 said it
/// accepts, or APP2_RESOURCE, whichever names a GUID first.
fn app2_client_id(
    f: &Facts,
    challenge: &Map<String, Value>,
    expected: &[String],
) -> Option<String> {
    challenge
        .get("resource_id")
        .and_then(Value::as_str)
        .and_then(guid)
        .or_else(|| expected.iter().find_map(|e| guid(e)))
        .or_else(|| f.target.api_resource.as_deref().and_then(guid))
}

/// The appId of the API a token was for: the GUID in its resource
/// (`api://<guid>` or the bare client id), else in the token's `aud`.
pub fn api_app_id(resource: Option<&str>, claims: &Map<String, Value>) -> Option<String> {
    resource
        .and_then(guid)
        .or_else(|| claims.get("aud").and_then(Value::as_str).and_then(guid))
}

/// A 403 from an API in another tenant for a role its token lacks: the
/// assignment must be made there, to the app's service principal in that
/// tenant (the token's `oid`), and only that tenant's directory can show it.
fn partner_missing_role(f: &Facts, api: &str, oid: &str) -> (ProblemType, String, String) {
    let role = f.upstream.required_role.clone().unwrap_or_default();
    let federation = f.target.federation.as_ref().expect("checked by the caller");
    let (tenant, client) = (&federation.tenant_id, &federation.client_id);
    let resource = f
        .target
        .api_resource
        .clone()
        .unwrap_or_else(|| "<the API's Application ID URI>".into());
    let roles = f
        .upstream
        .claims
        .as_ref()
        .and_then(|c| c.get("roles"))
        .map(Value::to_string)
        .unwrap_or_else(|| "absent".into());
    (
        ProblemType::PartnerMissingAppRole,
        format!(
            "Tenant {tenant} issued app {client} a token (its service principal there is {oid}) without {api}'s app role {role}: the token's roles claim is {roles}. The token exchange worked; the assignment in tenant {tenant} is what is missing. This tenant's directory cannot see tenant {tenant}'s assignments, so the diagnosis cannot tell a missing assignment from one made after the token was issued."
        ),
        format!(
            r#"An admin of tenant {tenant} assigns {role} of {api} ({resource}) to service principal {oid} (app {client}): az login --tenant {tenant}; api=$(az ad sp show --id {resource} --query id -o tsv); role=$(az ad sp show --id {resource} --query "appRoles[?value=='{role}'].id" -o tsv); az rest --method POST --uri https://graph.microsoft.com/v1.0/servicePrincipals/{oid}/appRoleAssignments --body '{{"principalId":"{oid}","resourceId":"'$api'","appRoleId":"'$role'"}}'. Check what it holds there: az rest --uri https://graph.microsoft.com/v1.0/servicePrincipals/{oid}/appRoleAssignments (signed in to tenant {tenant}). The handler keeps the exchanged token until half its life: restart the app to use a new assignment at once."#
        ),
    )
}

/// How far `at` (unix seconds) is from the moment the facts were gathered.
fn relative(at: i64, now: i64) -> String {
    match at - now {
        d if d < 0 => format!("{} s ago by app1's clock", -d),
        d => format!("in {d} s by app1's clock"),
    }
}

/// app2's (or its EasyAuth's) 401, by the reason it gave.
fn app2_unauthorized(f: &Facts, challenge: &Map<String, Value>) -> (ProblemType, String, String) {
    let api = f.upstream.stage.as_str();
    let text = |name: &str| {
        challenge
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let said = format!("{} {}", text("error_description"), f.upstream.message);
    let said = said.trim();
    let aud = claim(f, "aud").unwrap_or_default();
    let iss = claim(f, "iss").unwrap_or_default();
    let tid = claim(f, "tid").unwrap_or_default();
    let app2_tenant = text("authorization_uri")
        .split('/')
        .find(|s| is_guid(s))
        .map(str::to_owned);
    let refusal = refusal::read(said);
    if let Some(app2_tenant) = &app2_tenant
        && !tid.is_empty()
        && *app2_tenant != tid
        && matches!(
            refusal,
            TokenRefusal::Issuer { .. } | TokenRefusal::Unstated
        )
    {
        return (
            ProblemType::App2TenantMismatch,
            format!(
                "{api}'s EasyAuth is configured for tenant {app2_tenant}, but the token was issued by tenant {tid} ({iss})."
            ),
            format!(
                "Use an identity of tenant {app2_tenant}, or make {api}'s openIdIssuer match tenant {tid}."
            ),
        );
    }
    let claim_time = |name: &str| {
        f.upstream
            .claims
            .as_ref()
            .and_then(|c| c.get(name))
            .and_then(Value::as_i64)
    };
    match refusal {
        TokenRefusal::KeysUnavailable => (
            ProblemType::App2SigningKeysUnavailable,
            format!("{api} could not fetch its issuer's signing keys, so it could not check any token; this one (aud {aud}, iss {iss}) was not judged. {api} said: {said}"),
            format!("Nothing is wrong with app1's token. Let {api} reach its issuer's OpenID metadata and keys (https://login.microsoftonline.com/{}/.well-known/openid-configuration and its jwks_uri): check {api}'s outbound network (NSG, firewall, proxy, private DNS). {api} remembers the failure for a few seconds, then fetches again by itself.", app2_tenant.as_deref().unwrap_or(&tid)),
        ),
        TokenRefusal::Signature => (
            ProblemType::App2TokenSignature,
            format!("{api} did not verify the token's signature: its signing key is not among the keys of the issuer {api} trusts, or the signature is bad. The token was issued by {iss} (tenant {tid}). {api} said: {said}"),
            format!("Make {api} trust the issuer that signs app1's tokens: the authority and tenant {api} validates against must be {iss}'s (same tenant, same cloud). Right after a key rollover, one retry is enough: {api} fetches the keys again for an unknown kid."),
        ),
        TokenRefusal::Expired | TokenRefusal::NotYetValid => {
            let (what, at) = if refusal == TokenRefusal::Expired {
                ("has expired: exp", claim_time("exp"))
            } else {
                ("is not valid yet: nbf", claim_time("nbf"))
            };
            let when = at.map(|t| format!("{t} ({})", relative(t, f.now))).unwrap_or_else(|| "absent".into());
            (
                ProblemType::App2TokenExpired,
                format!("{api} says the token {what} {when}."),
                format!("app1 refreshes tokens before they expire, so if app1's clock says the token is still valid, a clock is wrong: compare app1's and {api}'s clocks with an NTP source (a skew of more than 5 minutes is refused). If app1's clock agrees with {api}, restart app1 to drop its token cache."),
            )
        }
        TokenRefusal::Audience { found, expected } => {
            let client_id = app2_client_id(f, challenge, &expected).unwrap_or_else(|| APP2_CLIENT_ID_LOOKUP.into());
            let aud = found.unwrap_or(aud);
            let fragment = json!({"identityProviders": {"azureActiveDirectory": {"validation": {"allowedAudiences": [aud]}}}});
            let accepted = if expected.is_empty() { String::new() } else { format!(" {api} accepts {}.", expected.join(", ")) };
            (
                ProblemType::App2AudienceNotAllowed,
                format!("{api} rejected the token's audience {aud}: it is not {api}'s client id ({client_id}) and not in {api}'s allowedAudiences.{accepted}"),
                format!(
                    "Add {aud} to {api}'s allowedAudiences (authsettingsV2 fragment: {fragment}; e.g. az webapp auth microsoft update -g <rg> -n <{api}> --allowed-audiences {aud}), or set APP2_RESOURCE to a resource {api} already accepts, such as {client_id}."
                ),
            )
        }
        TokenRefusal::Issuer { found } => {
            let iss = found.unwrap_or(iss);
            (
                ProblemType::App2IssuerNotAccepted,
                format!("{api} does not trust the token's issuer {iss}."),
                format!("Make {api}'s openIdIssuer accept tokens of tenant {tid}: https://sts.windows.net/{tid}/ for v1 tokens (what managed identities get unless {api}'s registration sets requestedAccessTokenVersion 2), https://login.microsoftonline.com/{tid}/v2.0 for v2."),
            )
        }
        TokenRefusal::Missing => (
            ProblemType::App2TokenRejected,
            format!("{api} received no bearer token, though app1 sent one: something between app1 and {api} dropped the Authorization header. {api} said: {said}"),
            "Check any proxy or API gateway between app1 and APP2_BASE_URL: it must pass Authorization through (EasyAuth does).".into(),
        ),
        TokenRefusal::Unstated => {
            let client_id = app2_client_id(f, challenge, &[]).unwrap_or_else(|| APP2_CLIENT_ID_LOOKUP.into());
            (
                ProblemType::App2TokenRejected,
                format!("{api} refused the token without saying why (aud {aud}, iss {iss}, tenant {tid}). {api} said: {said}"),
                format!("{api}'s log line for this request (same trace id) names the reason. Compare the token with {api}'s settings: aud must be {client_id} or in allowedAudiences, iss must match openIdIssuer."),
            )
        }
    }
}

/// Explains a refusal, or `None` when there is nothing specific to say.
/// Returns the troubleshooting anchor with the diagnosis.
pub fn explain(f: &Facts) -> Option<(ProblemType, Diagnosis)> {
    let oid = claim(f, "oid").unwrap_or_else(|| "<principal object id>".into());
    let appid = claim(f, "appid")
        .or_else(|| claim(f, "azp"))
        .unwrap_or_else(|| "<client id>".into());
    let aud = claim(f, "aud").unwrap_or_default();
    let code = f.upstream.code.clone().unwrap_or_default();
    let message = f.upstream.message.as_str();
    let challenge = f
        .upstream
        .www_authenticate
        .as_deref()
        .map(challenge_params)
        .unwrap_or_default();

    let (anchor, cause, fix): (ProblemType, String, String) = match (f.upstream.stage, f.upstream.status) {
        (Stage::Keyvault, Some(403)) if code == "ForbiddenByRbac" => {
            let vault = vault_name(f);
            let action = message
                .split("Action: '")
                .nth(1)
                .and_then(|a| a.split('\'').next())
                .unwrap_or("Microsoft.KeyVault/vaults/secrets/getSecret/action");
            (
                ProblemType::KeyvaultForbiddenByRbac,
                format!("Key Vault {vault} uses Azure RBAC, and principal {oid} (appid {appid}) holds no role that allows {action}."),
                format!(
                    "Assign \"Key Vault Secrets User\" to principal {oid} on vault {vault}: az role assignment create --role \"Key Vault Secrets User\" --assignee-object-id {oid} --assignee-principal-type ServicePrincipal --scope $(az keyvault show --name {vault} --query id -o tsv). {PROPAGATION}"
                ),
            )
        }
        (Stage::Keyvault, Some(403)) if code == "AccessDenied" || message.contains("access polic") || message.contains("does not have secrets") => {
            let vault = vault_name(f);
            (
                ProblemType::KeyvaultAccessPolicy,
                format!("Key Vault {vault} uses access policies, and none grants principal {oid} (appid {appid}) permission to read secrets."),
                format!("Add an access policy for {oid}: az keyvault set-policy --name {vault} --object-id {oid} --secret-permissions get list. (Or switch the vault to Azure RBAC and assign \"Key Vault Secrets User\".)"),
            )
        }
        (Stage::Keyvault, Some(401)) => {
            let expected = challenge.get("resource").and_then(Value::as_str).unwrap_or("https://vault.azure.net").to_owned();
            let cause = if !aud.is_empty() && aud.trim_end_matches('/') != expected.trim_end_matches('/') {
                format!("The token's audience is {aud}; Key Vault accepts only {expected}.")
            } else {
                format!("Key Vault rejected the token ({message}). The vault's tenant is in its challenge: {}; the token's tenant is {}.",
                    challenge.get("authorization").and_then(Value::as_str).unwrap_or("-"), claim(f, "tid").unwrap_or_default())
            };
            (ProblemType::KeyvaultUnauthorized, cause, format!("Request tokens for the scope {expected}/.default (the SDK does this from the challenge), from an identity in the vault's tenant."))
        }
        (Stage::Storage, Some(403)) if code == "AuthorizationPermissionMismatch" || code == "AuthorizationFailure" => {
            let account = f.target.storage_account.clone().unwrap_or_else(|| "<account>".into());
            (
                ProblemType::StorageAuthorizationPermissionMismatch,
                format!("Storage account {account} refused the operation: principal {oid} (appid {appid}) holds no data-plane role for blobs. Owner or Contributor on the account is not enough: data access needs a \"Storage Blob Data\" role."),
                format!(
                    "Assign \"Storage Blob Data Contributor\" (or \"Storage Blob Data Reader\" to read only) to {oid} on the account or the container: az role assignment create --role \"Storage Blob Data Contributor\" --assignee-object-id {oid} --assignee-principal-type ServicePrincipal --scope $(az storage account show --name {account} --query id -o tsv)[/blobServices/default/containers/<container>]. {PROPAGATION}"
                ),
            )
        }
        (Stage::Storage, Some(401 | 403)) => (
            ProblemType::StorageAuthenticationFailed,
            format!("Storage did not accept the token ({code}: {message}). Its audience is {aud}; Blob Storage wants https://storage.azure.com or https://<account>.blob.core.windows.net, from a v1 issuer of the account's tenant."),
            "Request the scope https://storage.azure.com/.default (the SDK does), over HTTPS, from an identity of the account's tenant.".into(),
        ),
        (Stage::Api(_), Some(401)) => app2_unauthorized(f, &challenge),
        (Stage::Api(api), Some(403)) if f.upstream.required_role.is_some() && f.target.federation.is_some() => {
            partner_missing_role(f, api, &oid)
        }
        (Stage::Api(api), Some(403)) if f.upstream.required_role.is_some() => {
            let role = f.upstream.required_role.clone().unwrap_or_default();
            let app2_client = f
                .target
                .api_resource
                .as_deref()
                .map(|r| r.trim_start_matches("api://").trim_end_matches('/').to_owned())
                .filter(|r| is_guid(r))
                .or_else(|| Some(aud.trim_start_matches("api://").to_owned()).filter(|a| is_guid(a)))
                .unwrap_or_else(|| APP2_CLIENT_ID_LOOKUP.into());
            let roles = token(f).map(|t| t.roles).unwrap_or_default();
            let roles_now = if roles.is_empty() { "absent".to_owned() } else { format!("{roles:?}") };
            let placeholder_fix = format!(
                "Assign app role {role} of {api} to the managed identity {oid}: az rest --method POST --uri https://graph.microsoft.com/v1.0/servicePrincipals/{oid}/appRoleAssignments --body \"{{\\\"principalId\\\":\\\"{oid}\\\",\\\"resourceId\\\":\\\"$(az ad sp show --id {app2_client} --query id -o tsv)\\\",\\\"appRoleId\\\":\\\"$(az ad sp show --id {app2_client} --query \\\"appRoles[?value=='{role}'].id\\\" -o tsv)\\\"}}\" (PowerShell: $sp = Get-MgServicePrincipal -Filter \"appId eq '{app2_client}'\"; New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {oid} -PrincipalId {oid} -ResourceId $sp.Id -AppRoleId ($sp.AppRoles | Where-Object Value -eq '{role}').Id). {PROPAGATION}"
            );
            super::roles::missing_role(f, api, &role, &oid, &roles_now, placeholder_fix)
        }
        // EasyAuth's own 403 is text; an API's JSON 403 says something else.
        (Stage::Api(api), Some(403))
            if api == "app2" || !f.upstream.content_type.as_deref().unwrap_or_default().contains("json") =>
        {
            let fragment = json!({"identityProviders": {"azureActiveDirectory": {"validation": {"defaultAuthorizationPolicy": {
                "allowedApplications": [appid], "allowedPrincipals": {"identities": [oid]}}}}}});
            (
                ProblemType::App2NotAllowed,
                format!("{api}'s EasyAuth authorization policy refused the caller: appid {appid} is not in defaultAuthorizationPolicy.allowedApplications, or oid {oid} is not in allowedPrincipals.identities (when both lists are set, both must match)."),
                format!("Add the caller to {api}'s authsettingsV2: {fragment} (keep only the lists you use; edit with az webapp auth show / az webapp auth set --body @authsettings.json)."),
            )
        }
        (Stage::Identity, Some(_)) if message.contains("AADSTS500011") || code == "invalid_resource" => {
            let resource = message
                .split("resource principal named ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
                .or_else(|| f.target.api_resource.clone())
                .unwrap_or_else(|| "<resource>".into());
            let client = resource.trim_start_matches("api://").to_owned();
            (
                ProblemType::IdentityInvalidResource,
                format!("Entra ID has no application whose Application ID URI or client id is {resource}: the app registration has no Application ID URI, or the resource string is wrong."),
                format!("Give app2's registration that Application ID URI (az ad app update --id {client} --identifier-uris {resource}), or set APP2_RESOURCE to app2's existing Application ID URI or client id."),
            )
        }
        (Stage::Identity, Some(400)) if message.contains("Unable to load the proper Managed Identity") => {
            let (cause, fix) = match (&f.identity.id, &f.selector_setting) {
                (Some(id), Some(setting)) => (
                    format!("The user-assigned identity selected by {setting}={id} ({}) is not attached to this app.", f.identity.selector),
                    format!("Attach it (az functionapp identity assign -g <rg> -n <app> --identities <its resource id>) or correct {setting} to an identity listed by az functionapp identity show -g <rg> -n <app>."),
                ),
                _ => (
                    "No identity was selected and the endpoint could not choose one: the app has no system-assigned identity, or several user-assigned identities and none is named.".to_owned(),
                    "Enable the system-assigned identity (az functionapp identity assign -g <rg> -n <app>), or set exactly one of AZURE_CLIENT_ID, MANAGED_IDENTITY_OBJECT_ID or MANAGED_IDENTITY_RESOURCE_ID.".to_owned(),
                ),
            };
            (ProblemType::IdentityNotAttached, cause, fix)
        }
        (Stage::Identity, Some(408 | 429 | 500 | 502 | 503 | 504)) => (
            ProblemType::IdentityEndpointUnavailable,
            format!("The identity endpoint kept failing ({} {message}) through every retry.", f.upstream.status.unwrap_or_default()),
            "This is usually temporary: retry later. Tokens are cached and refreshed early, so a warm app rarely sees it; check the platform's health if it persists.".into(),
        ),
        _ => return None,
    };
    Some((
        anchor,
        Diagnosis {
            principal: principal(f),
            token: token(f),
            upstream: UpstreamView {
                status: f.upstream.status,
                code: f.upstream.code.clone(),
                www_authenticate: challenge,
                message: f.upstream.message.clone(),
            },
            cause,
            fix,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::{ClientError, UpstreamError};
    use crate::diagnosis::Target;
    use crate::identity::{CredentialSource, IdentityDescription, SelectorKind};
    use azure_core::http::headers::Headers;
    use azure_core::http::{RawResponse, StatusCode};
    use serde_json::Map;

    const OID: &str = "2f4a9c1e-0b7d-4e8a-9f3c-5d6e7f8a9b0c";
    const APPID: &str = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    const TID: &str = "0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a";
    const APP2: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
    const APP2_URI: &str = "api://9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";

    fn claims(aud: &str, roles: &[&str]) -> Map<String, Value> {
        let mut c = json!({"aud": aud, "iss": format!("https://sts.windows.net/{TID}/"), "appid": APPID, "oid": OID,
                           "tid": TID, "ver": "1.0", "exp": 1_900_000_000i64,
                           "xms_mirid": "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Web/sites/app1"});
        if !roles.is_empty() {
            c["roles"] = json!(roles);
        }
        c.as_object().unwrap().clone()
    }

    fn facts(
        stage: Stage,
        status: u16,
        code: Option<&str>,
        message: &str,
        claims: Option<Map<String, Value>>,
    ) -> Facts {
        Facts {
            upstream: UpstreamError {
                stage,
                status: Some(status),
                code: code.map(str::to_owned),
                message: message.into(),
                www_authenticate: None,
                content_type: None,
                required_role: None,
                claims,
            },
            identity: IdentityDescription {
                source: CredentialSource::AppService,
                selector: SelectorKind::SystemAssigned,
                id: None,
            },
            selector_setting: None,
            target: Target {
                vault: Some("from-url".into()),
                storage_account: Some("contosodata".into()),
                api_resource: Some(format!("api://{APP2}")),
                federation: None,
            },
            now: NOW,
            directory: None,
        }
    }

    /// A moment after the test tokens' `exp` (1_900_000_000).
    const NOW: i64 = 1_900_000_100;

    /// Facts as the handler derives them from a recorded app2 (or EasyAuth) answer.
    fn app2_recorded(
        status: u16,
        www_authenticate: Option<&str>,
        content_type: &str,
        body: &str,
    ) -> Facts {
        let answer = crate::azure::downstream::ApiResponse {
            stage: Stage::api("app2"),
            retry_after: None,
            status,
            content_type: Some(content_type.into()),
            www_authenticate: www_authenticate.map(str::to_owned),
            body: bytes::Bytes::from(body.to_owned()),
            claims: claims(APP2_URI, &["App2.Access"]),
        };
        let ClientError::Upstream(upstream) = answer.refusal() else {
            panic!("an upstream error");
        };
        Facts {
            upstream: *upstream,
            ..facts(Stage::Api("app2"), status, None, "", None)
        }
    }

    /// app2's own 401, exactly as it answers (problem+json plus its challenge).
    fn app2_said_401(detail: &str) -> Facts {
        let body = json!({"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": detail});
        let challenge = format!(
            r#"Bearer error="invalid_token", error_description="{}""#,
            app2::jwt::challenge_text(detail)
        );
        app2_recorded(
            401,
            Some(&challenge),
            "application/problem+json",
            &body.to_string(),
        )
    }

    /// The EasyAuth gate's 401: text body, the reason in error_description.
    fn gate_401(reason: &str) -> Facts {
        let challenge = format!(
            r#"Bearer realm="app2.azurewebsites.net" authorization_uri="https://login.microsoftonline.com/{TID}/oauth2/v2.0/authorize" resource_id="{APP2}" error="invalid_token" error_description="{}""#,
            app2::jwt::challenge_text(reason)
        );
        app2_recorded(
            401,
            Some(&challenge),
            "text/plain",
            "You do not have permission to view this directory or page.",
        )
    }

    /// Facts as the handler derives them from a recorded SDK error response.
    fn from_recorded(stage: Stage, status: StatusCode, sdk_code: &str, body: &str) -> Facts {
        let raw = RawResponse::from_bytes(status, Headers::new(), body.as_bytes().to_vec());
        let err = azure_core::Error::with_message(
            azure_core::error::ErrorKind::HttpResponse {
                status,
                error_code: Some(sdk_code.into()),
                raw_response: Some(Box::new(raw)),
            },
            "recorded",
        );
        let ClientError::Upstream(upstream) = UpstreamError::from_azure(stage, &err) else {
            panic!("an upstream error, not a credential one");
        };
        let aud = if stage == Stage::Keyvault {
            "https://vault.azure.net"
        } else {
            "https://storage.azure.com"
        };
        let mut f = facts(
            stage,
            upstream.status.unwrap(),
            upstream.code.as_deref(),
            &upstream.message,
            Some(claims(aud, &[])),
        );
        f.upstream.www_authenticate = upstream.www_authenticate;
        f
    }

    const KV_RBAC_403: &str = r#"{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid=7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f;oid=2f4a9c1e-0b7d-4e8a-9f3c-5d6e7f8a9b0c;iss=https://sts.windows.net/0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a/\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: '/subscriptions/s/resourcegroups/rg/providers/microsoft.keyvault/vaults/contoso-kv/secrets/db'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: contoso-kv;location=westeurope\r\n","innererror":{"code":"ForbiddenByRbac"}}}"#;
    const KV_POLICY_403: &str = r#"{"error":{"code":"Forbidden","message":"The user, group or application 'appid=7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f;oid=2f4a9c1e-0b7d-4e8a-9f3c-5d6e7f8a9b0c;iss=https://sts.windows.net/0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a/' does not have secrets get permission on key vault 'contoso-kv;location=westeurope'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287","innererror":{"code":"AccessDenied"}}}"#;
    const STORAGE_403: &str = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.\nRequestId:8f5d2c7a-001e-0055-3a1b-4f5c6d000000\nTime:2026-11-22T10:00:00.0000000Z</Message></Error>";

    struct Row {
        name: &'static str,
        facts: Facts,
        anchor: ProblemType,
        fix_has: &'static [&'static str],
        cause_has: &'static [&'static str],
    }

    fn rows() -> Vec<Row> {
        let mut app2_401 = facts(
            Stage::Api("app2"),
            401,
            None,
            "You do not have permission to view this directory or page.",
            Some(claims(&format!("api://{APP2}"), &["App2.Access"])),
        );
        app2_401.upstream.www_authenticate = Some(format!(
            r#"Bearer realm="app2.azurewebsites.net" authorization_uri="https://login.microsoftonline.com/{TID}/oauth2/v2.0/authorize" resource_id="{APP2}" error="invalid_token" error_description="audience api://{APP2} is not accepted (expected one of {APP2})""#
        ));
        let mut app2_401_tenant = app2_401.clone();
        app2_401_tenant.upstream.www_authenticate = Some(format!(
            r#"Bearer realm="app2" authorization_uri="https://login.microsoftonline.com/{APP2}/oauth2/v2.0/authorize" resource_id="{APP2}""#
        ));
        let mut app2_403_gate = facts(
            Stage::Api("app2"),
            403,
            None,
            "You do not have permission to view this directory or page.",
            Some(claims(&format!("api://{APP2}"), &["App2.Access"])),
        );
        app2_403_gate.upstream.content_type = Some("text/plain".into());
        let mut app2_403_role = facts(
            Stage::Api("app2"),
            403,
            Some("Forbidden"),
            "the caller's token carries no app role App2.Access",
            Some(claims(&format!("api://{APP2}"), &[])),
        );
        app2_403_role.upstream.required_role = Some("App2.Access".into());
        app2_403_role.upstream.content_type = Some("application/problem+json".into());
        let mut ua_missing = facts(
            Stage::Identity,
            400,
            None,
            "Unable to load the proper Managed Identity.",
            None,
        );
        ua_missing.identity = IdentityDescription {
            source: CredentialSource::AppService,
            selector: SelectorKind::ClientId,
            id: Some("11111111-2222-3333-4444-555555555555".into()),
        };
        ua_missing.selector_setting = Some("AZURE_CLIENT_ID".into());
        vec![
            Row {
                name: "Key Vault 403 ForbiddenByRbac",
                facts: from_recorded(
                    Stage::Keyvault,
                    StatusCode::Forbidden,
                    "Forbidden",
                    KV_RBAC_403,
                ),
                anchor: ProblemType::KeyvaultForbiddenByRbac,
                fix_has: &["\"Key Vault Secrets User\"", OID, "contoso-kv", "24 hours"],
                cause_has: &["getSecret/action", APPID],
            },
            Row {
                name: "Key Vault 403 access policy",
                facts: from_recorded(
                    Stage::Keyvault,
                    StatusCode::Forbidden,
                    "Forbidden",
                    KV_POLICY_403,
                ),
                anchor: ProblemType::KeyvaultAccessPolicy,
                fix_has: &["az keyvault set-policy --name contoso-kv", OID],
                cause_has: &["access policies"],
            },
            Row {
                name: "Storage 403 AuthorizationPermissionMismatch",
                facts: from_recorded(
                    Stage::Storage,
                    StatusCode::Forbidden,
                    "AuthorizationPermissionMismatch",
                    STORAGE_403,
                ),
                anchor: ProblemType::StorageAuthorizationPermissionMismatch,
                fix_has: &[
                    "\"Storage Blob Data Contributor\"",
                    "\"Storage Blob Data Reader\"",
                    OID,
                    "contosodata",
                ],
                cause_has: &["contosodata"],
            },
            Row {
                name: "app2 401 audience not allowed",
                facts: app2_401,
                anchor: ProblemType::App2AudienceNotAllowed,
                fix_has: &["allowedAudiences", APP2_URI, APP2],
                cause_has: &["allowedAudiences"],
            },
            Row {
                name: "gate 401: audience, with the client id from the challenge",
                facts: gate_401(
                    "audience https://graph.microsoft.com is not accepted (expected one of 9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d)",
                ),
                anchor: ProblemType::App2AudienceNotAllowed,
                fix_has: &["https://graph.microsoft.com", APP2, "allowedAudiences"],
                cause_has: &["https://graph.microsoft.com"],
            },
            Row {
                name: "app2 401: keys could not be fetched",
                facts: app2_said_401(
                    "the bearer token was rejected: could not fetch signing keys: error sending request for url (https://login.microsoftonline.com/t/.well-known/openid-configuration)",
                ),
                anchor: ProblemType::App2SigningKeysUnavailable,
                fix_has: &["outbound network", "Nothing is wrong with app1's token"],
                cause_has: &["could not fetch", "not judged"],
            },
            Row {
                name: "app2 401: unknown signing key (the cold-burst refusal)",
                facts: app2_said_401(
                    "the bearer token was rejected: signing key aAqVx is not in the issuer's JWKS",
                ),
                anchor: ProblemType::App2TokenSignature,
                fix_has: &["https://sts.windows.net/0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a/"],
                cause_has: &["aAqVx", TID],
            },
            Row {
                name: "gate 401: bad signature",
                facts: gate_401("the signature is invalid"),
                anchor: ProblemType::App2TokenSignature,
                fix_has: &["same tenant"],
                cause_has: &["signature is invalid"],
            },
            Row {
                name: "app2 401: expired",
                facts: app2_said_401("the bearer token was rejected: the token is expired"),
                anchor: ProblemType::App2TokenExpired,
                fix_has: &["clock"],
                cause_has: &["1900000000", "100 s ago"],
            },
            Row {
                name: "gate 401: not valid yet",
                facts: gate_401("the token is not valid yet"),
                anchor: ProblemType::App2TokenExpired,
                fix_has: &["NTP"],
                cause_has: &["not valid yet"],
            },
            Row {
                name: "app2 401: issuer",
                facts: app2_said_401(&format!(
                    "the bearer token was rejected: issuer https://login.microsoftonline.com/{TID}/v2.0 is not accepted"
                )),
                anchor: ProblemType::App2IssuerNotAccepted,
                fix_has: &["openIdIssuer", TID],
                cause_has: &["/v2.0"],
            },
            Row {
                name: "app2 401: no bearer token arrived",
                facts: app2_said_401(
                    "no bearer token: app2 validates the caller's access token itself, whatever headers come with the request",
                ),
                anchor: ProblemType::App2TokenRejected,
                fix_has: &["Authorization"],
                cause_has: &["dropped"],
            },
            Row {
                name: "app2 401 with no reason",
                facts: app2_recorded(401, None, "text/plain", "Unauthorized"),
                anchor: ProblemType::App2TokenRejected,
                fix_has: &[APP2, "openIdIssuer"],
                cause_has: &["without saying why", APP2_URI],
            },
            Row {
                name: "app2 401 tenant mismatch",
                facts: app2_401_tenant,
                anchor: ProblemType::App2TenantMismatch,
                fix_has: &["openIdIssuer"],
                cause_has: &[TID],
            },
            Row {
                name: "app2 403 from EasyAuth",
                facts: app2_403_gate,
                anchor: ProblemType::App2NotAllowed,
                fix_has: &["allowedApplications", APPID, OID],
                cause_has: &["allowedApplications"],
            },
            Row {
                name: "app2 403 from app2 itself",
                facts: app2_403_role,
                anchor: ProblemType::App2MissingAppRole,
                fix_has: &[
                    "appRoleAssignments",
                    OID,
                    APP2,
                    "App2.Access",
                    "New-MgServicePrincipalAppRoleAssignment",
                ],
                cause_has: &["App2.Access", "absent"],
            },
            Row {
                name: "identity 400 user-assigned not attached",
                facts: ua_missing,
                anchor: ProblemType::IdentityNotAttached,
                fix_has: &["az functionapp identity assign", "AZURE_CLIENT_ID"],
                cause_has: &["AZURE_CLIENT_ID=11111111-2222-3333-4444-555555555555"],
            },
            Row {
                name: "identity 400 with nothing selected",
                facts: facts(
                    Stage::Identity,
                    400,
                    None,
                    "Unable to load the proper Managed Identity.",
                    None,
                ),
                anchor: ProblemType::IdentityNotAttached,
                fix_has: &["AZURE_CLIENT_ID"],
                cause_has: &["No identity was selected"],
            },
            Row {
                name: "AADSTS500011 for a custom API",
                facts: facts(
                    Stage::Identity,
                    400,
                    Some("invalid_resource"),
                    &format!(
                        "AADSTS500011: The resource principal named api://{APP2} was not found in the tenant named {TID}."
                    ),
                    None,
                ),
                anchor: ProblemType::IdentityInvalidResource,
                fix_has: &["--identifier-uris", APP2],
                cause_has: &["Application ID URI"],
            },
            Row {
                name: "identity endpoint throttling",
                facts: facts(Stage::Identity, 429, None, "Too many requests", None),
                anchor: ProblemType::IdentityEndpointUnavailable,
                fix_has: &["retry"],
                cause_has: &["429"],
            },
        ]
    }

    #[test]
    fn every_classic_failure_is_explained() {
        for row in rows() {
            let (anchor, d) =
                explain(&row.facts).unwrap_or_else(|| panic!("{}: no diagnosis", row.name));
            assert_eq!(anchor, row.anchor, "{}", row.name);
            for s in row.fix_has {
                assert!(
                    d.fix.contains(s),
                    "{}: fix lacks {s:?}: {}",
                    row.name,
                    d.fix
                );
            }
            for s in row.cause_has {
                assert!(
                    d.cause.contains(s),
                    "{}: cause lacks {s:?}: {}",
                    row.name,
                    d.cause
                );
            }
            if row.facts.upstream.claims.is_some() {
                assert_eq!(d.principal.oid.as_deref(), Some(OID), "{}", row.name);
                assert_eq!(d.principal.appid.as_deref(), Some(APPID));
                assert!(
                    d.token
                        .as_ref()
                        .is_some_and(|t| t.aud.is_some() && t.exp.is_some())
                );
            }
            let text = serde_json::to_string(&d).unwrap();
            assert!(!text.contains("eyJ"), "{}: never a token", row.name);
        }
    }

    #[test]
    fn no_diagnosis_leaves_a_placeholder_for_what_the_handler_knows() {
        for row in rows() {
            let (_, d) = explain(&row.facts).unwrap();
            for text in [&d.cause, &d.fix] {
                for placeholder in [
                    "<app2 client id>",
                    "<client id>",
                    "<principal object id>",
                    "<tenant",
                    "<audience",
                    "<vault>",
                    "<account>",
                    "service principal id>",
                    "role id>",
                ] {
                    assert!(
                        !text.contains(placeholder),
                        "{}: {placeholder} in {text}",
                        row.name
                    );
                }
            }
        }
    }

    #[test]
    fn recorded_bodies_yield_the_inner_codes() {
        assert_eq!(
            from_recorded(
                Stage::Keyvault,
                StatusCode::Forbidden,
                "Forbidden",
                KV_RBAC_403
            )
            .upstream
            .code
            .as_deref(),
            Some("ForbiddenByRbac")
        );
        let storage = from_recorded(
            Stage::Storage,
            StatusCode::Forbidden,
            "AuthorizationPermissionMismatch",
            STORAGE_403,
        );
        assert_eq!(
            storage.upstream.code.as_deref(),
            Some("AuthorizationPermissionMismatch")
        );
        assert!(
            storage
                .upstream
                .message
                .starts_with("This request is not authorized")
        );
    }

    #[test]
    fn nothing_to_say_about_other_failures() {
        assert!(
            explain(&facts(
                Stage::Keyvault,
                404,
                Some("SecretNotFound"),
                "nope",
                None
            ))
            .is_none()
        );
        assert!(
            explain(&facts(
                Stage::Storage,
                409,
                Some("BlobAlreadyExists"),
                "exists",
                None
            ))
            .is_none()
        );
    }
}
