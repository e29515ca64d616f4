//! `handler doctor` and `GET /api/doctor`: every managed-identity check in
//! one run, what the seeds' Kudu scripts and MSI-Validator do, for any
//! resource, and never a token.
//!
//! 1. **environment**: the identity source and the settings that chose it (by
//!    name), the selector, whether the protocol can express it, the clock;
//! 2. **identity**: a token for each resource the app uses (and each
//!    `--resource`), shown as its deciding claims: the jwt.ms step, done safely;
//! 3. **target**: one harmless authenticated call to each upstream (Key Vault,
//!    Storage, every named API; Graph as `whoami`), each failure diagnosed as
//!    the functions diagnose it.
//!
//! Each check has a deadline. [`run`] builds the [`Report`]; `render` prints
//! it for a console, `cli` is the subcommand.

pub mod cli;
mod render;

pub use render::human;

use crate::azure::ClientError;
use crate::identity::claims::pick;
use crate::identity::{CredentialSource, IdentityDescription, UserAssignedId};
use crate::names::Resource;
use crate::problem::Problem;
use crate::state::AppState;
use serde::Serialize;
use serde_json::{Map, Value};
use std::future::Future;
use std::time::{Duration, Instant};

/// The claims a token check shows (what decides access, and when it ends).
const SHOWN_CLAIMS: &[&str] = &[
    "aud", "iss", "oid", "appid", "azp", "tid", "roles", "iat", "nbf", "exp",
];
/// A token issued further in the future than this means a skewed clock.
const CLOCK_SKEW: i64 = 60;

/// What to check beyond the app's own resources.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Extra resources to get a token for (`--resource`; the console only).
    pub resources: Vec<Resource>,
    /// A user-assigned identity for every check, as `?client_id=` does.
    pub identity: Option<UserAssignedId>,
    /// How long any one check may take.
    pub deadline: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            resources: vec![],
            identity: None,
            deadline: Duration::from_secs(20),
        }
    }
}

impl Options {
    pub fn new(
        resources: Vec<Resource>,
        identity: Option<UserAssignedId>,
        deadline: Duration,
    ) -> Self {
        Self {
            resources,
            identity,
            deadline,
        }
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// True when no check failed.
    pub ok: bool,
    pub version: &'static str,
    /// The source and selector the checks ran with.
    pub identity: IdentityDescription,
    pub checks: Vec<Check>,
}

impl Report {
    /// The report when the settings themselves cannot be used (the server
    /// would not start): that is its one check.
    pub fn unusable_settings(error: &str) -> Self {
        let problem = Problem::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            crate::problem::ProblemType::IdentityNotConfigured,
            error.to_owned(),
        )
        .hint("Correct the setting named above: the server refuses to start with it. A user-assigned identity is selected by at most one of AZURE_CLIENT_ID, MANAGED_IDENTITY_OBJECT_ID and MANAGED_IDENTITY_RESOURCE_ID.");
        Self {
            ok: false,
            version: env!("CARGO_PKG_VERSION"),
            identity: IdentityDescription::new(CredentialSource::Unconfigured, None),
            checks: vec![Check::failed_with(Group::Environment, "settings", problem)],
        }
    }

    /// 0 when every check passed (or was skipped), 1 when any failed.
    pub fn exit_code(&self) -> u8 {
        if self.ok { 0 } else { 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Environment,
    Identity,
    Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    /// Not run: nothing to check, or what it needs failed first.
    Skipped,
}

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct Check {
    pub group: Group,
    pub name: String,
    pub status: Status,
    /// What was found, in a line.
    pub found: String,
    pub duration_ms: f64,
    /// A token's deciding claims (never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Map<String, Value>>,
    /// The failure, with its diagnosis and fix, as the functions answer it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

impl Check {
    fn new(group: Group, name: impl Into<String>, status: Status, found: String) -> Self {
        Self {
            group,
            name: name.into(),
            status,
            found,
            duration_ms: 0.0,
            claims: None,
            problem: None,
        }
    }

    fn failed_with(group: Group, name: impl Into<String>, problem: Problem) -> Self {
        let mut check = Self::new(group, name, Status::Failed, problem.detail.clone());
        check.problem = Some(problem);
        check
    }
}

/// Runs every check, each within `options.deadline`.
pub async fn run(state: &AppState, options: &Options) -> Report {
    let identity = options.identity.clone();
    let mut checks = environment(state, identity.as_ref());

    let wanted = wanted(state, options);
    let tokens = futures::future::join_all(wanted.iter().map(|w| {
        let name = format!("token {}", w.name);
        timed(
            Group::Identity,
            name.clone(),
            options.deadline,
            async move {
                // An API in another tenant: its token is the exchange's.
                if let Some(client) = &w.api
                    && let Some(exchanged) = client.federated_claims().await
                {
                    return exchange_check(state, name, client, exchanged).await;
                }
                token_check(state, name, &w.resource, w.identity.clone()).await
            },
        )
    }))
    .await;
    checks.push(clock(&tokens));

    // A target is called only with a token; a `--resource` has no target.
    let targets = wanted
        .iter()
        .zip(&tokens)
        .filter(|(w, _)| w.target)
        .map(|(w, token)| {
            if token.status == Status::Passed {
                timed(
                    Group::Target,
                    w.name.clone(),
                    options.deadline,
                    target(state, &w.name, w.identity.clone()),
                )
            } else {
                skipped_target(&w.name)
            }
        });
    let targets = futures::future::join_all(targets).await;

    checks.extend(tokens);
    checks.extend(targets);
    let settings = &state.settings;
    if settings.storage_account_url.is_none() {
        checks.push(Check::new(
            Group::Target,
            "storage",
            Status::Skipped,
            "STORAGE_ACCOUNT_URL is not set".into(),
        ));
    }
    if settings.keyvault_url.is_none() {
        checks.push(Check::new(
            Group::Target,
            "keyvault",
            Status::Skipped,
            "KEYVAULT_URL is not set".into(),
        ));
    }
    Report {
        ok: checks.iter().all(|c| c.status != Status::Failed),
        version: env!("CARGO_PKG_VERSION"),
        identity: state.identity.describe(identity.as_ref()),
        checks,
    }
}

/// A resource to get a token for, as the identity its calls use.
struct Wanted {
    name: String,
    resource: Resource,
    identity: Option<UserAssignedId>,
    /// The named API the token is for, if it is one.
    api: Option<std::sync::Arc<crate::azure::downstream::ApiClient>>,
    /// Whether an upstream is called with it (not for a `--resource`).
    target: bool,
}

/// The resources the app uses (Key Vault, Storage, every named API), then the extras.
fn wanted(state: &AppState, options: &Options) -> Vec<Wanted> {
    let identity = &options.identity;
    let settings = &state.settings;
    let own = |name: &str, r: &str| Wanted {
        name: name.into(),
        resource: resource(r),
        identity: identity.clone(),
        api: None,
        target: true,
    };
    let mut wanted = vec![];
    if settings.keyvault_url.is_some() {
        wanted.push(own("keyvault", crate::names::KEY_VAULT_RESOURCE));
    }
    if settings.storage_account_url.is_some() {
        wanted.push(own("storage", crate::names::STORAGE_RESOURCE));
    }
    for (name, client) in &state.azure.apis {
        wanted.push(Wanted {
            name: name.clone(),
            resource: client.api().resource.clone(),
            identity: client.identity_for(identity.clone()),
            api: Some(client.clone()),
            target: true,
        });
    }
    for extra in &options.resources {
        if !wanted.iter().any(|w| w.resource == *extra) {
            wanted.push(Wanted {
                name: extra.to_string(),
                resource: extra.clone(),
                identity: identity.clone(),
                api: None,
                target: false,
            });
        }
    }
    wanted
}

fn resource(r: &str) -> Resource {
    Resource::parse(r).expect("a valid constant resource")
}

fn skipped_target<'a>(name: &str) -> std::pin::Pin<Box<dyn Future<Output = Check> + 'a>> {
    let check = Check::new(
        Group::Target,
        name,
        Status::Skipped,
        format!("no token for {name}: see its identity check"),
    );
    Box::pin(async move { check })
}

/// Runs `work` within `deadline`, and times it.
fn timed<'a>(
    group: Group,
    name: String,
    deadline: Duration,
    work: impl Future<Output = Check> + 'a,
) -> std::pin::Pin<Box<dyn Future<Output = Check> + 'a>> {
    Box::pin(async move {
        let started = Instant::now();
        let mut check = match tokio::time::timeout(deadline, work).await {
            Ok(check) => check,
            Err(_) => Check::new(
                group,
                name,
                Status::Failed,
                format!(
                    "no answer within {} s (the check's deadline)",
                    deadline.as_secs_f64()
                ),
            ),
        };
        check.duration_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
        check
    })
}

/// The environment: the source, the selector, and what the protocol can express.
fn environment(state: &AppState, identity: Option<&UserAssignedId>) -> Vec<Check> {
    let provider = &state.identity;
    let described = provider.describe(identity);
    let found = provider.settings_found();
    let names = if found.is_empty() {
        "no identity setting".to_owned()
    } else {
        found.join(", ")
    };
    let mut checks = vec![];
    let source = match (provider.source(), provider.unavailable()) {
        (CredentialSource::Unconfigured, Some(e)) => {
            let error = ClientError::Identity(e.clone());
            Check::failed_with(Group::Environment, "identity source", Problem::from(&error))
        }
        (source, _) => Check::new(
            Group::Environment,
            "identity source",
            Status::Passed,
            format!(
                "{} from {names}{}",
                source.as_str(),
                provider
                    .endpoint()
                    .map(|e| format!(" (endpoint {e})"))
                    .unwrap_or_default()
            ),
        ),
    };
    let source_ok = source.status == Status::Passed;
    checks.push(source);
    let selector = match (identity, provider.default_identity()) {
        (Some(id), _) => format!("{} {} (chosen for this run)", id.kind().as_str(), id),
        (None, Some(id)) => format!("{} {} (from the settings)", id.kind().as_str(), id),
        (None, None) => "none: the system-assigned identity".into(),
    };
    checks.push(Check::new(
        Group::Environment,
        "selector",
        Status::Passed,
        selector,
    ));
    checks.push(protocol(
        described.source,
        identity.or(provider.default_identity()),
        source_ok,
    ));
    checks
}

/// Whether the protocol in force can select `identity`.
fn protocol(source: CredentialSource, identity: Option<&UserAssignedId>, source_ok: bool) -> Check {
    let name = "protocol";
    if !source_ok {
        return Check::new(
            Group::Environment,
            name,
            Status::Skipped,
            "no usable identity source".into(),
        );
    }
    match (source, identity) {
        (
            CredentialSource::AppServiceLegacy,
            Some(id @ (UserAssignedId::ObjectId(_) | UserAssignedId::ResourceId(_))),
        ) => {
            let problem = Problem::new(
                actix_web::http::StatusCode::BAD_REQUEST,
                crate::problem::ProblemType::IdentityBadRequest,
                format!(
                    "the 2017-09-01 protocol (MSI_ENDPOINT) selects a user-assigned identity by client id only, not by {}",
                    id.kind().as_str()
                ),
            )
            .hint("Select the identity by its client id (AZURE_CLIENT_ID), or run where IDENTITY_ENDPOINT (2019-08-01) is set: it accepts client_id, object_id and mi_res_id.");
            Check::failed_with(Group::Environment, name, problem)
        }
        (CredentialSource::Developer, _) => Check::new(
            Group::Environment,
            name,
            Status::Passed,
            "developer sign-in (Azure CLI, then azd): no managed identity here".into(),
        ),
        (source, id) => Check::new(
            Group::Environment,
            name,
            Status::Passed,
            format!(
                "{} can select {}",
                source.as_str(),
                id.map_or("the system-assigned identity".to_owned(), |id| format!(
                    "by {}",
                    id.kind().as_str()
                ))
            ),
        ),
    }
}

async fn token_check(
    state: &AppState,
    name: String,
    resource: &Resource,
    identity: Option<UserAssignedId>,
) -> Check {
    match state
        .identity
        .token(resource.as_str(), identity.as_ref())
        .await
    {
        Ok(provided) => {
            let claims = provided.facts.claims.clone().unwrap_or_default();
            let shown = pick(&claims, SHOWN_CLAIMS);
            let mut check = Check::new(
                Group::Identity,
                name,
                Status::Passed,
                describe_claims(&shown),
            );
            check.claims = Some(shown);
            check
        }
        Err(e) => {
            let error = ClientError::Identity(e);
            let problem = crate::diagnosis::problem_for(&error, state, identity.as_ref()).await;
            Check::failed_with(Group::Identity, name, problem)
        }
    }
}

/// An API in another tenant: the exchanged token's deciding claims, and the
/// assertion's `iss`/`sub`/`aud` (what the FIC must match). Never either token.
async fn exchange_check(
    state: &AppState,
    name: String,
    client: &crate::azure::downstream::ApiClient,
    exchanged: Result<crate::azure::downstream::FederatedClaims, ClientError>,
) -> Check {
    match exchanged {
        Ok((claims, assertion)) => {
            let mut shown = pick(&claims, SHOWN_CLAIMS);
            let presented = pick(&assertion, &["iss", "sub", "aud"]);
            let said = |c: &str| presented.get(c).and_then(Value::as_str).unwrap_or("?");
            let found = format!(
                "{} · exchanged for the assertion iss {}, sub {}, aud {}",
                describe_claims(&shown),
                said("iss"),
                said("sub"),
                said("aud")
            );
            shown.insert("assertion".into(), Value::Object(presented));
            let mut check = Check::new(Group::Identity, name, Status::Passed, found);
            check.claims = Some(shown);
            check
        }
        Err(error) => {
            let identity = client.identity_for(None);
            let problem = crate::diagnosis::problem_for(&error, state, identity.as_ref()).await;
            Check::failed_with(Group::Identity, name, problem)
        }
    }
}

/// `aud … oid … roles […] exp …` in a line.
fn describe_claims(claims: &Map<String, Value>) -> String {
    let mut parts = vec![];
    for name in ["aud", "oid", "appid", "azp", "tid", "roles"] {
        if let Some(v) = claims.get(name) {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            parts.push(format!("{name} {v}"));
        }
    }
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
        let left = exp - time::OffsetDateTime::now_utc().unix_timestamp();
        parts.push(format!("exp in {} min", left / 60));
    }
    parts.join(" · ")
}

/// A token's `iat`/`nbf` from the future means this machine's clock is behind.
fn clock(tokens: &[Check]) -> Check {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ahead = tokens
        .iter()
        .filter_map(|c| c.claims.as_ref())
        .flat_map(|claims| {
            ["iat", "nbf"]
                .into_iter()
                .filter_map(|n| claims.get(n)?.as_i64())
        })
        .map(|t| t - now)
        .max();
    match ahead {
        None => Check::new(Group::Environment, "clock", Status::Skipped, "no token to compare with".into()),
        Some(ahead) if ahead > CLOCK_SKEW => Check::failed_with(
            Group::Environment,
            "clock",
            Problem::new(
                actix_web::http::StatusCode::BAD_GATEWAY,
                crate::problem::ProblemType::IdentityEndpointError,
                format!("a token was issued {ahead} s in the future by this machine's clock: the clock is behind"),
            )
            .hint("Synchronise this machine's clock (NTP): upstreams refuse tokens whose nbf is in their future, and a skewed clock breaks token refresh."),
        ),
        Some(ahead) => Check::new(
            Group::Environment,
            "clock",
            Status::Passed,
            format!("tokens' iat and nbf within {CLOCK_SKEW} s of this clock ({} s)", ahead.max(0)),
        ),
    }
}

/// One harmless authenticated call to `name`.
async fn target(state: &AppState, name: &str, identity: Option<UserAssignedId>) -> Check {
    let settings = &state.settings;
    let result: Result<String, ClientError> = match name {
        "keyvault" => match state.azure.secrets_as(identity.clone()) {
            Ok(client) => client.probe(&settings.flow_secret_name).await.map(|()| {
                format!(
                    "read access to {} (secret {})",
                    settings.keyvault_url.as_deref().unwrap_or_default(),
                    settings.flow_secret_name
                )
            }),
            Err(e) => Err(e),
        },
        "storage" => match state.azure.blobs_as(identity.clone()) {
            Ok(store) => store
                .probe(&settings.audit_container)
                .await
                .map(|()| format!("container {} reachable", settings.audit_container)),
            Err(e) => Err(e),
        },
        "graph" => whoami(state, identity.clone()).await,
        api => match state.azure.apis.get(api) {
            Some(client) => crate::azure::downstream::probe(client, identity.clone())
                .await
                .map(|()| format!("{} accepted the token", client.api().base_url)),
            None => Ok("not configured".into()),
        },
    };
    match result {
        Ok(found) => Check::new(Group::Target, name, Status::Passed, found),
        Err(error) => {
            let problem = crate::diagnosis::problem_for(&error, state, identity.as_ref()).await;
            Check::failed_with(Group::Target, name, problem)
        }
    }
}

/// Graph's check is `whoami`: the identity as the directory sees it.
async fn whoami(state: &AppState, identity: Option<UserAssignedId>) -> Result<String, ClientError> {
    let who = match identity {
        Some(_) => std::sync::Arc::new(state.azure.graph.whoami_as(identity).await?),
        None => state.azure.graph.whoami().await?.0,
    };
    let sp = &who.service_principal;
    let owner = who
        .owner
        .as_ref()
        .map(|o| format!(", {} of {}", o.kind, o.resource_id))
        .unwrap_or_default();
    let roles = match (&who.app_role_assignments, &who.missing_permission) {
        (Some(list), _) => {
            let held: Vec<String> = list
                .iter()
                .map(|a| {
                    format!(
                        "{}/{}",
                        a.resource.display_name.as_deref().unwrap_or(&a.resource.id),
                        a.app_role.value.as_deref().unwrap_or(&a.app_role.id)
                    )
                })
                .collect();
            format!("holds {held:?}")
        }
        (None, Some(missing)) => format!(
            "its assignments are unreadable without {}",
            missing.permission
        ),
        (None, None) => String::new(),
    };
    Ok(format!(
        "service principal {} ({}{owner}); {roles}",
        sp.id,
        sp.display_name.as_deref().unwrap_or_default()
    ))
}
