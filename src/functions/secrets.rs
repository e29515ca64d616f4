//! `GET /api/secrets/{name}[/{version}]`: a secret's metadata from Key Vault.
//! The value itself only with `EXPOSE_SECRET_VALUES=true` (demo only).

use super::Outcome;
use crate::invocation::{Invocation, Reply};
use crate::names::{SecretName, SecretVersion};
use crate::problem::Problem;
use crate::state::AppState;
use actix_web::web;

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let name = inv
        .param("name")
        .ok_or_else(|| Problem::bad_request("a secret name is required"))?;
    // Bad input is a 400 before anything else, configured or not.
    let name = SecretName::parse(name)?;
    let version = inv.param("version").map(SecretVersion::parse).transpose()?;
    let secrets = state.azure.secrets.as_ref().map_err(Clone::clone)?;
    let (secret, cached) = secrets.get(&name, version.as_ref()).await?;
    let mut body = secret.to_json(state.settings.expose_secret_values);
    body["cached"] = cached.into();
    Ok(Reply::ok_json(&body))
}
