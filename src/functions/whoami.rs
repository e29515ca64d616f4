//! `GET /api/whoami`: the app's identity as the directory (Microsoft Graph)
//! sees it: its service principal, the Azure resource that owns it, and
//! every app role it holds, resolved to API names and role values.

use super::Outcome;
use crate::azure::graph::WhoAmI;
use crate::invocation::{Invocation, Reply};
use crate::state::AppState;
use actix_web::web;

#[derive(serde::Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    whoami: &'a WhoAmI,
    /// Whether Graph was asked for this answer or it came from the cache (GRAPH_CACHE_TTL_SECS).
    cached: bool,
}

pub async fn run(_inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let (whoami, cached) = state.azure.graph.whoami().await?;
    Ok(Reply::ok_json(&Shown {
        whoami: &whoami,
        cached,
    }))
}
