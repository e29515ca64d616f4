//! `/api/blobs/{container}[/{*name}]`: list (GET container), read (GET), store
//! (PUT, the raw body with its content type) and delete (DELETE) blobs.

use crate::azure::blobs::{validate_blob_name, validate_container};
use crate::problem::Problem;
use crate::protocol::{Invocation, Outcome, Reply};
use crate::startup::AppState;
use actix_web::http::{Method, StatusCode};
use actix_web::web;
use serde_json::json;

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let container = inv
        .param("container")
        .ok_or_else(|| Problem::bad_request("a container name is required"))?;
    // Bad input is a 400 before anything else, configured or not.
    validate_container(container)?;
    if let Some(name) = inv.param("name") {
        validate_blob_name(name)?;
    }
    let store = state.azure.blobs.as_ref().map_err(Clone::clone)?;
    match (&inv.method, inv.param("name")) {
        (&Method::GET, None) => {
            let blobs = store.list(container).await?;
            Ok(Reply::ok_json(
                &json!({ "container": container, "blobs": blobs }),
            ))
        }
        (&Method::GET, Some(name)) => {
            let (body, content_type) = store.get(container, name).await?;
            Ok(Reply::bytes(
                StatusCode::OK,
                content_type.unwrap_or_else(|| "application/octet-stream".into()),
                body,
            ))
        }
        (&Method::PUT, Some(name)) => {
            let content_type = inv
                .header("content-type")
                .unwrap_or("application/octet-stream")
                .to_owned();
            let size = inv.body.len();
            store
                .put(container, name, &content_type, inv.body.clone())
                .await?;
            Ok(Reply::json(
                StatusCode::CREATED,
                &json!({ "container": container, "name": name, "size": size, "content_type": content_type }),
            ))
        }
        (&Method::DELETE, Some(name)) => {
            store.delete(container, name).await?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        (method, None) => Err(Problem::bad_request(format!(
            "{method} needs a blob name: /api/blobs/{container}/<name>"
        ))),
        (method, Some(_)) => Err(Problem::bad_request(format!(
            "{method} is not supported on blobs"
        ))),
    }
}
