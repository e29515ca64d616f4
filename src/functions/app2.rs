//! `GET /api/app2/{*path}`: call app2 (the named API `app2`) on any path,
//! and return its answer. A refusal (401, 403) or failure (5xx) is a 502.

use super::Outcome;
use super::downstream::{forwarded_query, passthrough};
use crate::invocation::Invocation;
use crate::names::ApiPath;
use crate::state::AppState;
use actix_web::web;

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let path = ApiPath::parse(inv.param("path").unwrap_or_default())?;
    let client = state.azure.app2.as_ref().map_err(Clone::clone)?;
    let query = forwarded_query(&inv.query);
    passthrough(client.get(&path, &query).await?).await
}
