//! Protocol adapters: how a request from the Functions host becomes an
//! [`Invocation`] of one function, and how its [`Reply`] goes back.
//!
//! * [`forward`]: `enableForwardingHttpRequest` — the host passes the client's
//!   request through unchanged (`GET /api/secrets/x`).
//! * [`payload`]: invocation payloads — the host `POST`s `/<FunctionName>` with a
//!   `{Data, Metadata}` envelope and expects `{Outputs, Logs}` back. A function
//!   falls into this mode as soon as it gains a binding besides HTTP in/out.
//!
//! The function code sees neither: it gets an `Invocation` and returns a `Reply`.

pub mod forward;
pub mod payload;

use crate::problem::Problem;
use actix_web::http::{Method, StatusCode, header::HeaderMap};
use bytes::Bytes;
use std::collections::HashMap;

/// One function call, independent of how the host delivered it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: &'static str,
    pub method: Method,
    /// Route values (`{name}`, `{*path}`); an absent optional value is missing.
    pub params: HashMap<String, String>,
    /// Query pairs in order; a key may repeat (forward mode comma-joins them).
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `X-Azure-Functions-InvocationId`, for correlation.
    pub invocation_id: Option<String>,
}

impl Invocation {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A query parameter given at most once; a repeated one is a 400.
    pub fn query_one(&self, name: &str) -> Result<Option<&str>, Problem> {
        let mut values = self.query.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(Problem::bad_request(format!(
                "query parameter {name} is given more than once"
            )));
        }
        Ok(first)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A function's answer, independent of how it goes back to the host.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Self {
        Self {
            status,
            content_type: "application/json".into(),
            headers: vec![],
            body: Bytes::from(serde_json::to_vec(value).expect("serializable reply")),
        }
    }

    pub fn ok_json(value: &impl serde::Serialize) -> Self {
        Self::json(StatusCode::OK, value)
    }

    pub fn bytes(status: StatusCode, content_type: impl Into<String>, body: Bytes) -> Self {
        Self {
            status,
            content_type: content_type.into(),
            headers: vec![],
            body,
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            content_type: String::new(),
            headers: vec![],
            body: Bytes::new(),
        }
    }

    pub fn from_problem(problem: &Problem) -> Self {
        Self {
            status: StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_GATEWAY),
            content_type: "application/problem+json".into(),
            headers: vec![],
            body: Bytes::from(serde_json::to_vec(problem).expect("serializable problem")),
        }
    }
}

/// What every function returns.
pub type Outcome = Result<Reply, Problem>;
