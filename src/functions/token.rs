//! `GET /api/token`: get a token the way the app would, and show what is in it.
//!
//! The safe version of "paste the token into jwt.ms": the response has the
//! decoded claims but never the token or its signature.

use crate::identity::{UserAssignedId, claims::decode_claims, scope_to_resource};
use crate::problem::Problem;
use crate::protocol::{Invocation, Outcome, Reply};
use crate::startup::AppState;
use actix_web::web;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

/// Longest resource accepted: generous for an App ID URI, short enough for a URL.
const MAX_RESOURCE_LEN: usize = 512;

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let resource = resource_of(&inv)?;
    let identity = identity_of(&inv)?;
    let provided = state.identity.token(&resource, identity.as_ref()).await?;
    let claims = decode_claims(provided.token.token.secret());
    Ok(Reply::ok_json(&json!({
        "resource": resource,
        "expires_on": provided.token.expires_on.format(&Rfc3339).unwrap_or_default(),
        "cached": provided.cached,
        "identity": provided.identity,
        "claims": claims,
    })))
}

fn resource_of(inv: &Invocation) -> Result<String, Problem> {
    let resource = match (inv.query_one("resource")?, inv.query_one("scope")?) {
        (Some(r), None) => r.trim().to_owned(),
        (None, Some(s)) => scope_to_resource(&[s.trim()])
            .map_err(|e| Problem::bad_request(e.to_string()))?
            .to_owned(),
        _ => {
            return Err(Problem::bad_request(
                "give exactly one of ?resource= (e.g. https://vault.azure.net) or ?scope= (e.g. https://vault.azure.net/.default)",
            ));
        }
    };
    // The scope character rule Azure.Identity applies, so nothing odd reaches the endpoint.
    let valid = !resource.is_empty()
        && resource.len() <= MAX_RESOURCE_LEN
        && resource
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c));
    if !valid {
        return Err(Problem::bad_request(format!(
            "resource must be 1-{MAX_RESOURCE_LEN} characters of letters, digits and - _ . : /"
        )));
    }
    Ok(resource)
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
