//! `GET /api/token`: get a token the way the app would, and show what is in it.
//!
//! The safe version of "paste the token into jwt.ms": the response has the
//! decoded claims but never the token or its signature.

use super::{Failure, Outcome};
use crate::azure::{ClientError, Stage};
use crate::identity::claims::{PRINCIPAL_CLAIMS, TOKEN_CLAIMS, pick};
use crate::identity::{UserAssignedId, scope_to_resource};
use crate::invocation::{Invocation, Reply};
use crate::names::Resource;
use crate::problem::{Problem, ProblemType};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web;
use futures::future::LocalBoxFuture;
use serde_json::json;

/// Parses the request here, so the future that waits for the token carries
/// only the resource and identity, not the whole invocation.
pub fn run(inv: Invocation, state: web::Data<AppState>) -> LocalBoxFuture<'static, Outcome> {
    let refused = |problem: Problem| -> LocalBoxFuture<'static, Outcome> {
        Box::pin(std::future::ready(Err(problem.into())))
    };
    let is_check = inv.query_one("check").map(|check| check.is_some());
    match is_check {
        Err(problem) => refused(problem),
        Ok(true) => Box::pin(async move {
            let target = inv.query_one("check")?.unwrap_or_default();
            check(&inv, target, &state).await
        }),
        Ok(false) => match (resource_of(&inv), identity_of(&inv)) {
            (Ok(resource), Ok(identity)) => Box::pin(mint(resource, identity, state)),
            (Err(problem), _) | (_, Err(problem)) => refused(problem),
        },
    }
}

async fn mint(
    resource: Resource,
    identity: Option<UserAssignedId>,
    state: web::Data<AppState>,
) -> Outcome {
    allowed(&state.settings.token_allowed_resources, &resource)?;
    let provided = state
        .identity
        .token(resource.as_str(), identity.as_ref())
        .await
        .map_err(|e| Failure::Client {
            error: ClientError::Identity(e),
            // Diagnose with the identity this request chose, not the default.
            identity: identity.clone(),
        })?;
    // The same token, resource and identity always make the same reply.
    let facts = &provided.facts;
    let body = facts.reply(provided.cached, || {
        Reply::ok_json(&TokenShown {
            resource: &resource,
            expires_on: &facts.expires_on,
            cached: provided.cached,
            identity: &provided.identity,
            claims: &facts.claims_json,
        })
        .body
    });
    Ok(Reply::bytes(StatusCode::OK, "application/json", body))
}

/// What `/api/token` answers: the token's claims (decoded once per token),
/// never the token.
#[derive(serde::Serialize)]
struct TokenShown<'a> {
    resource: &'a Resource,
    expires_on: &'a str,
    cached: bool,
    identity: &'a crate::identity::IdentityDescription,
    claims: &'a serde_json::value::RawValue,
}

fn resource_of(inv: &Invocation) -> Result<Resource, Problem> {
    let resource = match (inv.query_one("resource")?, inv.query_one("scope")?) {
        (Some(r), None) => r,
        (None, Some(s)) => {
            scope_to_resource(&[s.trim()]).map_err(|e| Problem::bad_request(e.to_string()))?
        }
        _ => {
            return Err(Problem::bad_request(
                "give exactly one of ?resource= (e.g. https://vault.azure.net) or ?scope= (e.g. https://vault.azure.net/.default)",
            ));
        }
    };
    // The scope character rule Azure.Identity applies, so nothing odd reaches the endpoint.
    Ok(Resource::parse(resource)?)
}

/// `TOKEN_ALLOWED_RESOURCES`: the function mints only for what the list names,
/// compared as Entra compares resources, before any identity call.
fn allowed(allow_list: &[Resource], wanted: &Resource) -> Result<(), Problem> {
    if allow_list.contains(wanted) {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        ProblemType::ResourceNotAllowed,
        format!("this function does not mint tokens for {wanted}: it is not in TOKEN_ALLOWED_RESOURCES"),
    )
    .stage(Stage::Request)
    .hint("Add the resource to the TOKEN_ALLOWED_RESOURCES app setting (comma-separated) if callers should see its tokens' claims. By default it lists only the resources the app itself uses."))
}

fn identity_of(inv: &Invocation) -> Result<Option<UserAssignedId>, Problem> {
    let mut given = vec![];
    for kind in ["client_id", "object_id", "mi_res_id"] {
        if let Some(v) = inv.query_one(kind)? {
            given.push((kind, v));
        }
    }
    match given.as_slice() {
        [] => Ok(None),
        [(kind, value)] => UserAssignedId::parse(kind, value)
            .map(Some)
            .map_err(Problem::bad_request),
        _ => Err(Problem::bad_request(
            "give at most one of client_id, object_id and mi_res_id",
        )),
    }
}

/// `?check=keyvault|storage|<api>`: a harmless authenticated call to the target,
/// as the default identity or the one named in the request. "ok" with the
/// principal used, or the diagnosed refusal.
async fn check(inv: &Invocation, target: &str, state: &AppState) -> Outcome {
    if inv.query_one("resource")?.is_some() || inv.query_one("scope")?.is_some() {
        return Err(Problem::bad_request(
            "check= names its own resource; do not add resource= or scope=",
        )
        .into());
    }
    let identity = identity_of(inv)?;
    let settings = &state.settings;
    let (resource, target_url, result) = match target {
        "keyvault" => {
            let client = state.azure.secrets_as(identity.clone())?;
            (
                crate::azure::keyvault::RESOURCE.to_owned(),
                settings.keyvault_url.clone(),
                client.probe(&settings.flow_secret_name).await,
            )
        }
        "storage" => {
            let store = state.azure.blobs_as(identity.clone())?;
            (
                crate::azure::blobs::RESOURCE.to_owned(),
                settings.storage_account_url.clone(),
                store.probe(&settings.audit_container).await,
            )
        }
        name => {
            let client = match state.azure.apis.get(name) {
                Some(client) => client,
                // app2's settings may be missing: say which one.
                None if name == "app2" => state.azure.app2.as_ref().map_err(Clone::clone)?,
                None => {
                    return Err(Problem::bad_request(format!(
                        "check must be keyvault, storage or a named API ({}), not {name:?}",
                        state.settings.downstream.names().join(", ")
                    ))
                    .into());
                }
            };
            let result = crate::azure::downstream::probe(client, identity.clone()).await;
            (
                client.resource().to_owned(),
                Some(client.api().base_url.clone()),
                result,
            )
        }
    };
    if let Err(error) = result {
        return Err(Failure::Client {
            error,
            identity: identity.clone(),
        });
    }
    let client = state.azure.apis.get(target);
    if let Some(exchanged) = match client {
        Some(client) => client.federated_claims().await,
        None => None,
    } {
        // Both tokens' deciding claims: the assertion must match the FIC,
        // the exchanged token is what the other tenant granted.
        let (claims, assertion) = exchanged?;
        return Ok(Reply::ok_json(&json!({
            "check": target,
            "ok": true,
            "target": target_url,
            "assertion": pick(&assertion, &["iss", "sub", "aud", "oid", "xms_mirid"]),
            "principal": pick(&claims, PRINCIPAL_CLAIMS),
            "token": pick(&claims, TOKEN_CLAIMS),
        })));
    }
    let identity = match client {
        Some(client) => client.identity_for(identity),
        None => identity,
    };
    let provided = state.identity.token(&resource, identity.as_ref()).await?;
    let claims = provided.facts.claims.clone().unwrap_or_default();
    Ok(Reply::ok_json(&json!({
        "check": target,
        "ok": true,
        "target": target_url,
        "identity": provided.identity,
        "principal": pick(&claims, PRINCIPAL_CLAIMS),
        "token": pick(&claims, TOKEN_CLAIMS),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_neither_pass_the_list_nor_escape_it() {
        let r = |s: &str| Resource::parse(s).unwrap();
        let list = vec![r("https://vault.azure.net")];
        for ok in [
            "https://vault.azure.net",
            "HTTPS://VAULT.AZURE.NET/",
            "https://Vault.Azure.Net//",
        ] {
            assert!(allowed(&list, &r(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "https://storage.azure.com",
            "https://vault.azure.net.evil.example",
            "https://vault.azure.net/extra",
            "https://management.azure.com",
        ] {
            let p = allowed(&list, &r(bad)).unwrap_err();
            assert_eq!(p.status, 403, "{bad}");
            assert!(p.kind.ends_with("#resource-not-allowed"));
            assert!(p.detail.contains("TOKEN_ALLOWED_RESOURCES"));
        }
    }
}
