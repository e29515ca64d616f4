//! `GET /api/token`: get a token the way the app would, and show what is in it.
//!
//! The safe version of "paste the token into jwt.ms": the response has the
//! decoded claims but never the token or its signature.

use super::{Failure, Outcome};
use crate::azure::{ClientError, Stage};
use crate::identity::claims::{PRINCIPAL_CLAIMS, TOKEN_CLAIMS, pick};
use crate::identity::{ProvidedToken, UserAssignedId, scope_to_resource};
use crate::invocation::{Invocation, Reply, repeated_query_parameter};
use crate::names::Resource;
use crate::problem::{Problem, ProblemType};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web;
use futures::future::LocalBoxFuture;
use serde_json::json;

/// Parses the request here, so the future that waits for the token carries
/// only the resource and identity, not the whole invocation; a token the
/// cache holds is answered at once, with no such future.
pub fn run(inv: Invocation, state: web::Data<AppState>) -> LocalBoxFuture<'static, Outcome> {
    let refused = |problem: Problem| -> LocalBoxFuture<'static, Outcome> {
        Box::pin(std::future::ready(Err(problem.into())))
    };
    let query = match TokenQuery::of(&inv) {
        Ok(query) => query,
        Err(problem) => return refused(problem),
    };
    if query.check.is_some() {
        return Box::pin(async move {
            let query = TokenQuery::of(&inv)?;
            check(&query, &state).await
        });
    }
    let (resource, identity) = match (query.resource(), query.identity()) {
        (Ok(resource), Ok(identity)) => (resource, identity),
        (Err(problem), _) | (_, Err(problem)) => return refused(problem),
    };
    if let Err(problem) = allowed(&state.settings.token_allowed_resources, &resource) {
        return refused(problem);
    }
    // A token in the cache needs no future that waits for it.
    match state.identity.cached(resource.as_str(), identity.as_ref()) {
        Some(provided) => Box::pin(std::future::ready(Ok(shown(&resource, &provided)))),
        None => Box::pin(mint(resource, identity, state)),
    }
}

/// The query parameters `/api/token` reads, each given at most once (a
/// repeated one is a 400); others are ignored.
#[derive(Default)]
struct TokenQuery<'a> {
    check: Option<&'a str>,
    resource: Option<&'a str>,
    scope: Option<&'a str>,
    client_id: Option<&'a str>,
    object_id: Option<&'a str>,
    mi_res_id: Option<&'a str>,
}

impl<'a> TokenQuery<'a> {
    /// One pass over the query.
    fn of(inv: &'a Invocation) -> Result<Self, Problem> {
        let mut query = Self::default();
        for (name, value) in &inv.query {
            let slot = match name.as_str() {
                "check" => &mut query.check,
                "resource" => &mut query.resource,
                "scope" => &mut query.scope,
                "client_id" => &mut query.client_id,
                "object_id" => &mut query.object_id,
                "mi_res_id" => &mut query.mi_res_id,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(repeated_query_parameter(name));
            }
        }
        Ok(query)
    }

    fn resource(&self) -> Result<Resource, Problem> {
        let resource = match (self.resource, self.scope) {
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

    fn identity(&self) -> Result<Option<UserAssignedId>, Problem> {
        let given = [
            ("client_id", self.client_id),
            ("object_id", self.object_id),
            ("mi_res_id", self.mi_res_id),
        ];
        let mut given = given.iter().filter_map(|(kind, v)| Some((*kind, (*v)?)));
        match (given.next(), given.next()) {
            (None, _) => Ok(None),
            (Some((kind, value)), None) => UserAssignedId::parse(kind, value)
                .map(Some)
                .map_err(Problem::bad_request),
            (Some(_), Some(_)) => Err(Problem::bad_request(
                "give at most one of client_id, object_id and mi_res_id",
            )),
        }
    }
}

async fn mint(
    resource: Resource,
    identity: Option<UserAssignedId>,
    state: web::Data<AppState>,
) -> Outcome {
    let provided = state
        .identity
        .token(resource.as_str(), identity.as_ref())
        .await
        .map_err(|e| Failure::Client {
            error: ClientError::Identity(e),
            // Diagnose with the identity this request chose, not the default.
            identity: identity.clone(),
        })?;
    Ok(shown(&resource, &provided))
}

/// The reply: the same token, resource and identity always make the same one.
fn shown(resource: &Resource, provided: &ProvidedToken) -> Reply {
    let facts = &provided.facts;
    let body = facts.reply(provided.cached, || {
        Reply::ok_json(&TokenShown {
            resource,
            expires_on: &facts.expires_on,
            cached: provided.cached,
            identity: &provided.identity,
            claims: &facts.claims_json,
        })
        .body
    });
    Reply::bytes(StatusCode::OK, "application/json", body)
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

/// `?check=keyvault|storage|<api>`: a harmless authenticated call to the target,
/// as the default identity or the one named in the request. "ok" with the
/// principal used, or the diagnosed refusal.
async fn check(query: &TokenQuery<'_>, state: &AppState) -> Outcome {
    let target = query.check.unwrap_or_default();
    if query.resource.is_some() || query.scope.is_some() {
        return Err(Problem::bad_request(
            "check= names its own resource; do not add resource= or scope=",
        )
        .into());
    }
    let identity = query.identity()?;
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
