//! `GET /api/secrets/{name}[/{version}]`: a secret's metadata from Key Vault.
//! The value itself only with `EXPOSE_SECRET_VALUES=true` (demo only).

use crate::azure::keyvault::{validate_name, validate_version};
use crate::problem::Problem;
use crate::protocol::{Invocation, Outcome, Reply};
use crate::startup::AppState;
use actix_web::web;

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let name = inv
        .param("name")
        .ok_or_else(|| Problem::bad_request("a secret name is required"))?;
    // Bad input is a 400 before anything else, configured or not.
    validate_name(name)?;
    if let Some(version) = inv.param("version") {
        validate_version(version)?;
    }
    let secrets = state.azure.secrets.as_ref().map_err(Clone::clone)?;
    let (secret, cached) = secrets.get(name, inv.param("version")).await?;
    let mut body = secret.to_json(state.settings.expose_secret_values);
    body["cached"] = cached.into();
    Ok(Reply::ok_json(&body))
}
