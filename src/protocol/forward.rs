//! Forward mode: actix routes (with the `/api` prefix the host keeps) that turn
//! the request into an [`Invocation`].

use crate::functions::{self, FunctionSpec};
use crate::invocation::{Invocation, InvocationId, Reply};
use crate::problem::Problem;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;

/// Registers every function's forward routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for spec in functions::ALL {
        for (method, path) in spec.routes {
            let method =
                actix_web::http::Method::from_bytes(method.as_bytes()).expect("valid method");
            cfg.route(
                path,
                web::method(method)
                    .to(move |req, payload, state| handle(spec, req, payload, state)),
            );
        }
    }
}

async fn handle(
    spec: &'static FunctionSpec,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let body = match read_body(payload, state.limits.max_body_bytes).await {
        Ok(body) => body,
        Err(problem) => return Reply::into_response(Reply::from_problem(&problem)),
    };
    let invocation = Invocation {
        function: spec.name,
        method: req.method().clone(),
        params: req
            .match_info()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        query: url::form_urlencoded::parse(req.query_string().as_bytes())
            .into_owned()
            .collect(),
        headers: req.headers().clone(),
        body,
        invocation_id: InvocationId::of(&req),
    };
    Reply::into_response(functions::invoke(spec, invocation, &state).await)
}

/// Reads the body up to `limit` bytes; more is a 413 problem (nothing is stored).
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<bytes::Bytes, Problem> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| Problem::bad_request(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(Problem::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
