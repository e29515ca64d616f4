//! The functions. Each has a folder with a `function.json` at the app root and
//! a module here. Both protocol adapters dispatch through [`ALL`], so each
//! function's code exists once.

mod app2;
mod blobs;
mod doctor;
mod downstream;
mod flow;
mod health;
mod secrets;
mod token;
mod whoami;

use crate::azure::ClientError;
use crate::identity::{TokenError, UserAssignedId};
use crate::invocation::{Invocation, Reply};
use crate::names::InvalidName;
use crate::problem::Problem;
use crate::state::AppState;
use actix_web::web;
use futures::future::LocalBoxFuture;
use tracing::Instrument;

/// Why a function failed: a problem it stated itself (bad input, a refusal by
/// an allow-list), or a client's typed error, which [`invoke`] diagnoses and
/// turns into a problem at the edge.
#[derive(Debug)]
pub enum Failure {
    Problem(Problem),
    Client {
        error: ClientError,
        /// The user-assigned identity the request chose, for the diagnosis.
        identity: Option<UserAssignedId>,
    },
}

/// What every function returns.
pub type Outcome = Result<Reply, Failure>;

impl From<Problem> for Failure {
    fn from(p: Problem) -> Self {
        Failure::Problem(p)
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure::Client {
            error,
            identity: None,
        }
    }
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        Failure::from(ClientError::Identity(e))
    }
}

impl From<InvalidName> for Failure {
    fn from(e: InvalidName) -> Self {
        Failure::Problem(e.into())
    }
}

impl Failure {
    /// The failure as a problem, with its diagnosis when a rule explains it.
    pub async fn into_problem(self, state: &AppState) -> Problem {
        match self {
            Failure::Problem(p) => p,
            Failure::Client { error, identity } => {
                crate::diagnosis::problem_for(&error, state, identity.as_ref()).await
            }
        }
    }
}

/// `extensions.http.routePrefix` in host.json.
pub const ROUTE_PREFIX: &str = "api";

type Run = fn(Invocation, web::Data<AppState>) -> LocalBoxFuture<'static, Outcome>;

/// A function: its folder name, the forward-mode routes that match its
/// function.json (prefix included), and its code.
pub struct FunctionSpec {
    pub name: &'static str,
    pub routes: &'static [(&'static str, &'static str)],
    /// Whether the function reads request headers (the adapters copy them only then).
    pub reads_headers: bool,
    /// Whether the function streams the request body itself (proxy and
    /// forward mode), within a limit of its own, instead of the adapter
    /// reading it whole within `MAX_BODY_BYTES`.
    pub streams_body: bool,
    run: Run,
}

pub static ALL: &[FunctionSpec] = &[
    FunctionSpec {
        name: "health",
        routes: &[("GET", "/api/health")],
        reads_headers: false,
        streams_body: false,
        run: |i, s| Box::pin(health::run(i, s)),
    },
    FunctionSpec {
        name: "token",
        routes: &[("GET", "/api/token")],
        reads_headers: false,
        streams_body: false,
        // Boxes its own future (see `token::run`).
        run: token::run,
    },
    FunctionSpec {
        name: "secrets",
        routes: &[
            ("GET", "/api/secrets/{name}"),
            ("GET", "/api/secrets/{name}/{version}"),
        ],
        reads_headers: false,
        streams_body: false,
        run: |i, s| Box::pin(secrets::run(i, s)),
    },
    FunctionSpec {
        name: "blobs",
        routes: &[
            ("GET", "/api/blobs/{container}"),
            ("GET", "/api/blobs/{container}/{name:.*}"),
            ("PUT", "/api/blobs/{container}/{name:.*}"),
            ("DELETE", "/api/blobs/{container}/{name:.*}"),
        ],
        reads_headers: true,
        streams_body: true,
        run: |i, s| Box::pin(blobs::run(i, s)),
    },
    FunctionSpec {
        name: "app2",
        routes: &[("GET", "/api/app2"), ("GET", "/api/app2/{path:.*}")],
        reads_headers: false,
        streams_body: false,
        run: |i, s| Box::pin(app2::run(i, s)),
    },
    FunctionSpec {
        name: "downstream",
        routes: &[
            ("GET", "/api/downstream/{api}"),
            ("GET", "/api/downstream/{api}/{path:.*}"),
            ("HEAD", "/api/downstream/{api}/{path:.*}"),
            ("POST", "/api/downstream/{api}/{path:.*}"),
            ("PUT", "/api/downstream/{api}/{path:.*}"),
            ("PATCH", "/api/downstream/{api}/{path:.*}"),
            ("DELETE", "/api/downstream/{api}/{path:.*}"),
        ],
        reads_headers: true,
        streams_body: false,
        run: |i, s| Box::pin(downstream::run(i, s)),
    },
    FunctionSpec {
        name: "doctor",
        routes: &[("GET", "/api/doctor")],
        reads_headers: false,
        streams_body: false,
        run: |i, s| Box::pin(doctor::run_function(i, s)),
    },
    FunctionSpec {
        name: "whoami",
        routes: &[("GET", "/api/whoami")],
        reads_headers: false,
        streams_body: false,
        run: |i, s| Box::pin(whoami::run(i, s)),
    },
    FunctionSpec {
        name: "flow",
        routes: &[("POST", "/api/flow")],
        reads_headers: false,
        streams_body: false,
        run: |i, s| Box::pin(flow::run(i, s)),
    },
];

/// The function whose folder is `name` (the host's payload path is case-preserving).
pub fn by_name(name: &str) -> Option<&'static FunctionSpec> {
    ALL.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// Runs a function inside its server span (continuing the caller's trace); a
/// problem becomes its problem+json reply, a log line and the span's error.
///
/// Not an `async fn`: the function's own future takes the invocation here,
/// so what waits for it holds only the ids it logs. (A future holding the
/// invocation beside the function's would be copied, at twice the size,
/// on every request.)
pub fn invoke<'a>(
    spec: &'static FunctionSpec,
    invocation: Invocation,
    state: &'a web::Data<AppState>,
) -> impl Future<Output = Reply> + 'a {
    use opentelemetry::context::FutureExt;
    let context = crate::telemetry::invocation_context(&invocation.trace);
    let span = crate::telemetry::InvocationSpan::start(
        spec.name,
        invocation.method.as_str(),
        spec.route_for(&invocation),
        invocation.invocation_id,
        invocation.protocol.as_str(),
        &invocation.trace,
    );
    let call = Call {
        function: spec.name,
        protocol: invocation.protocol.as_str(),
        // The host's id, on the lines too, so they meet the host's own logs.
        invocation_id: invocation.invocation_id,
    };
    // What the function does before its future (all of it, for a reply it
    // has at once) belongs to the invocation too: its span and context.
    let run = {
        let _context = context.clone().attach();
        let _entered = span.enter();
        (spec.run)(invocation, state.clone())
    };
    // And so does everything after: its future and the lines that follow it.
    answer(call, span, run, state).with_context(context)
}

/// What an invocation's log lines name.
struct Call {
    function: &'static str,
    protocol: &'static str,
    invocation_id: crate::invocation::InvocationId,
}

async fn answer(
    call: Call,
    span: tracing::Span,
    run: LocalBoxFuture<'static, Outcome>,
    state: &web::Data<AppState>,
) -> Reply {
    let Call {
        function,
        protocol,
        invocation_id,
    } = call;
    let started = std::time::Instant::now();
    let outcome = run.instrument(span.clone()).await;
    let _entered = span.enter();
    let reply = match outcome {
        Ok(reply) => reply,
        Err(failure) => {
            // Boxed: a diagnosis may ask the directory, a large future
            // that successful invocations should not carry (or copy).
            let problem = Box::pin(failure.into_problem(state)).await;
            problem.record_on(&span);
            tracing::warn!(
                function,
                %invocation_id,
                status = problem.status,
                stage = ?problem.stage,
                upstream_status = problem.upstream_status,
                r#type = %problem.kind,
                detail = %problem.detail,
                diagnosed = problem.extensions.contains_key("diagnosis"),
                "function failed"
            );
            Reply::from_problem(&problem)
        }
    };
    let status = reply.status.as_u16();
    crate::telemetry::InvocationSpan::finish(&span, status);
    // Only worked out for a line that will be written.
    if tracing::enabled!(tracing::Level::INFO) {
        // One decimal, as people read it (78.2, not 78.21000000000001).
        let elapsed_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
        tracing::info!(
            function,
            %invocation_id,
            protocol,
            status,
            elapsed_ms,
            "request completed"
        );
    }
    reply
}

impl FunctionSpec {
    /// The route template an invocation came in on (the span's `http.route`):
    /// the one with its method and as many parameters as it has values.
    fn route_for(&self, invocation: &Invocation) -> &'static str {
        self.routes
            .iter()
            .filter(|(method, _)| *method == invocation.method.as_str())
            .find(|(_, path)| {
                path.bytes().filter(|&b| b == b'{').count() == invocation.params.len()
            })
            .or_else(|| self.routes.first())
            .map_or(self.name, |(_, path)| path)
    }
}
