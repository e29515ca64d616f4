//! Proxy and forward mode: actix routes (with the `/api` prefix the host
//! keeps) that turn the request into an [`Invocation`]. Both modes deliver the
//! request itself; [`Protocol::of_request`] tells them apart.

use crate::functions::{self, FunctionSpec};
use crate::invocation::{
    BodyError, BodyStream, Invocation, Reply, host_invocation, query_pairs, read_body, trace_of,
};
use crate::problem::Problem;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};

/// Registers every function's forward routes, each holding the app state
/// (looked up in the request's extensions, it would cost a hash lookup per
/// request).
pub fn configure(state: web::Data<AppState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        for spec in functions::ALL {
            for (method, path) in spec.routes {
                let method =
                    actix_web::http::Method::from_bytes(method.as_bytes()).expect("valid method");
                let state = state.clone();
                cfg.route(
                    path,
                    web::method(method)
                        .to(move |req, payload| handle(spec, state.clone(), req, payload)),
                );
            }
        }
    }
}

async fn handle(
    spec: &'static FunctionSpec,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let limit = state.limits.max_body_bytes;
    let (body, body_stream) = if spec.streams_body {
        let chunks = futures::StreamExt::map(payload, |chunk| chunk.map_err(|e| e.to_string()));
        (Default::default(), Some(BodyStream::new(chunks)))
    } else {
        match read_body(payload, limit).await {
            Ok(body) => (body, None),
            Err(e) => {
                let problem = match e {
                    BodyError::TooLarge => Problem::payload_too_large(limit),
                    BodyError::Broken(e) => {
                        Problem::bad_request(format!("could not read the request body: {e}"))
                    }
                };
                return Reply::into_response(Reply::from_problem(&problem));
            }
        }
    };
    let (invocation_id, protocol) = host_invocation(req.headers());
    let invocation = Invocation {
        function: spec.name,
        method: req.method().clone(),
        params: req
            .match_info()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        query: query_pairs(req.query_string()),
        // Only the functions that read headers get a copy of them.
        headers: if spec.reads_headers {
            req.headers().clone()
        } else {
            Default::default()
        },
        body,
        body_stream,
        invocation_id,
        trace: trace_of(req.headers()),
        protocol,
    };
    Reply::into_response(functions::invoke(spec, invocation, &state).await)
}
