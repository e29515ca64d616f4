//! `POST /api/flow`: the whole reference scenario, step by step.
//!
//! 1. `keyvault`: a Key Vault token, then the configured secret (metadata only);
//! 2. `app2`: app2's `/api/whoami` with a token whose audience is app2;
//!    then, when a named API `partner` is configured, `partner`: its
//!    `/api/whoami` with a token from its own tenant (the token exchange);
//! 3. `audit-write`: a JSON audit record (no secret value) to the audit container;
//! 4. `audit-read`: the record read back and compared.
//!
//! Each step reports what a learner needs: the identity and audience used, the
//! claims that mattered, and app2's view of the caller. A failed step stops the
//! flow; the reply is then a 502 problem carrying the same step report.

use super::{Failure, Outcome};
use crate::azure::Stage;
use crate::azure::blobs::Write;
use crate::azure::downstream::{ApiClient, app2_whoami as whoami};
use crate::identity::IdentityDescription;
use crate::identity::claims::{authorization_claims, decode_claims, pick};
use crate::invocation::{Invocation, Reply};
use crate::names::{BlobName, ContainerName, SecretName};
use crate::problem::{Problem, ProblemType};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::web;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Instant;
use time::format_description::well_known::Rfc3339;
use tracing::Instrument;

use crate::azure::keyvault::RESOURCE as KEYVAULT_RESOURCE;

/// One step of the report: its result, or the (diagnosed) problem it hit.
#[derive(Serialize)]
struct Step {
    name: &'static str,
    ok: bool,
    duration_ms: f64,
    detail: StepDetail,
}

#[derive(Serialize)]
#[serde(untagged)]
enum StepDetail {
    Keyvault(KeyvaultStep),
    App2(App2Step),
    Partner(PartnerStep),
    AuditWrite(AuditWrite),
    AuditRead(AuditRead),
    Failed(Problem),
}

#[derive(Clone, Serialize)]
struct KeyvaultStep {
    identity: IdentityDescription,
    audience: &'static str,
    token_claims: Map<String, Value>,
    secret: Value,
    secret_cached: bool,
    /// For the audit record: the value is identified by version and update time.
    #[serde(skip)]
    version: String,
    #[serde(skip)]
    updated: Option<String>,
}

#[derive(Clone, Serialize)]
struct App2Step {
    identity: IdentityDescription,
    audience: String,
    token_claims: Map<String, Value>,
    app2_status: u16,
    app2_view: Value,
}

/// The partner API in another tenant: both tokens' deciding claims.
#[derive(Clone, Serialize)]
struct PartnerStep {
    audience: String,
    /// The exchanged token's (`tid` is the partner tenant's).
    token_claims: Map<String, Value>,
    /// The managed identity's token presented as the client assertion.
    assertion_claims: Map<String, Value>,
    partner_status: u16,
    partner_view: Value,
}

#[derive(Clone, Serialize)]
struct AuditWrite {
    container: ContainerName,
    blob: BlobName,
    bytes: usize,
}

#[derive(Clone, Serialize)]
struct AuditRead {
    container: ContainerName,
    blob: BlobName,
    bytes: usize,
    content_type: Option<String>,
    matches: bool,
}

/// What `flow` writes to the audit container. It identifies the secret's value
/// by version and update time, never by the value or a hash of it, and holds
/// no caller-supplied text (the invocation id is the host's GUID).
#[derive(Serialize)]
struct AuditRecord<'a> {
    id: String,
    at: String,
    invocation_id: crate::invocation::InvocationId,
    identity: IdentityDescription,
    secret: AuditedSecret<'a>,
    app2: AuditedApp2<'a>,
}

#[derive(Serialize)]
struct AuditedSecret<'a> {
    name: &'a SecretName,
    version: &'a str,
    updated: Option<&'a str>,
}

#[derive(Serialize)]
struct AuditedApp2<'a> {
    status: u16,
    caller: &'a Value,
}

struct Report<'s> {
    state: &'s AppState,
    steps: Vec<Step>,
}

impl Report<'_> {
    /// Runs one step: times it, turns a failure into its diagnosed problem
    /// (outside the timing), and records it, so the report explains what went
    /// wrong.
    async fn step<T: Clone>(
        &mut self,
        name: &'static str,
        work: impl std::future::Future<Output = Result<T, Failure>>,
        detail: fn(T) -> StepDetail,
    ) -> Result<T, Problem> {
        let span = crate::telemetry::step_span(name);
        let started = Instant::now();
        let result = work.instrument(span.clone()).await;
        let duration_ms = (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
        let result = match result {
            Ok(v) => Ok(v),
            Err(f) => Err(f.into_problem(self.state).await),
        };
        if let Err(problem) = &result {
            problem.record_on(&span);
        }
        let shown = match &result {
            Ok(v) => detail(v.clone()),
            Err(p) => StepDetail::Failed(p.clone()),
        };
        self.steps.push(Step {
            name,
            ok: result.is_ok(),
            duration_ms,
            detail: shown,
        });
        result
    }
}

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let mut report = Report {
        state: &state,
        steps: vec![],
    };
    let outcome = steps(&inv, &mut report).await;
    let steps = report.steps;
    match outcome {
        Ok(()) => Ok(Reply::ok_json(&json!({ "ok": true, "steps": steps }))),
        Err(problem) => {
            // The flow failed upstream (502), or a dependency is unavailable (503).
            let problem = if problem.status == 503 {
                problem
            } else {
                problem.with_status(StatusCode::BAD_GATEWAY)
            };
            Err(problem
                .with_extension("ok", json!(false))
                .with_extension("steps", json!(steps))
                .into())
        }
    }
}

async fn steps(inv: &Invocation, report: &mut Report<'_>) -> Result<(), Problem> {
    let state = report.state;
    let secret = report
        .step("keyvault", keyvault_step(state), StepDetail::Keyvault)
        .await?;
    let app2 = report
        .step("app2", app2_step(state), StepDetail::App2)
        .await?;
    if let Some(partner) = state.azure.apis.get("partner") {
        report
            .step("partner", partner_step(partner), StepDetail::Partner)
            .await?;
    }

    let record = AuditRecord {
        id: uuid_like(),
        at: time::OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        invocation_id: inv.invocation_id,
        identity: state.identity.describe(None),
        secret: AuditedSecret {
            name: &state.settings.flow_secret_name,
            version: &secret.version,
            updated: secret.updated.as_deref(),
        },
        app2: AuditedApp2 {
            status: app2.app2_status,
            caller: &app2.app2_view,
        },
    };
    let bytes = bytes::Bytes::from(serde_json::to_vec_pretty(&record).expect("serializable"));
    let container = &state.settings.audit_container;
    let blob = BlobName::parse(&format!("flow/{}.json", record.id))
        .expect("a timestamp and hex digits make a valid blob name");

    let write = async {
        let store = state.azure.blobs.as_ref().map_err(Clone::clone)?;
        store
            .put(
                container,
                &blob,
                "application/json",
                bytes.clone(),
                // The audit trail is append-only: a record is never replaced.
                Write::CreateOnly,
            )
            .await?;
        Ok(AuditWrite {
            container: container.clone(),
            blob: blob.clone(),
            bytes: bytes.len(),
        })
    };
    report
        .step("audit-write", write, StepDetail::AuditWrite)
        .await?;

    let read = async {
        let store = state.azure.blobs.as_ref().map_err(Clone::clone)?;
        let (back, content_type) = store
            .get(container, &blob, state.limits.max_body_bytes)
            .await?;
        if back != bytes {
            return Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                ProblemType::StorageError,
                format!("the audit record read back from {container}/{blob} differs from what was written"),
            )
            .stage(Stage::Storage)
            .into());
        }
        Ok(AuditRead {
            container: container.clone(),
            blob: blob.clone(),
            bytes: back.len(),
            content_type,
            matches: true,
        })
    };
    report
        .step("audit-read", read, StepDetail::AuditRead)
        .await
        .map(|_| ())
}

async fn keyvault_step(state: &AppState) -> Result<KeyvaultStep, Failure> {
    let secrets = state.azure.secrets.as_ref().map_err(Clone::clone)?;
    // The same (cached) token the SDK client will use, fetched here to show its claims.
    let token = state.identity.token(KEYVAULT_RESOURCE, None).await?;
    let claims = decode_claims(token.token.token.secret()).unwrap_or_default();
    let (secret, cached) = secrets.get(&state.settings.flow_secret_name, None).await?;
    Ok(KeyvaultStep {
        identity: token.identity,
        audience: KEYVAULT_RESOURCE,
        token_claims: authorization_claims(&claims),
        secret: secret.to_json(false),
        secret_cached: cached,
        version: secret.version.clone(),
        updated: secret.updated.clone(),
    })
}

async fn app2_step(state: &AppState) -> Result<App2Step, Failure> {
    let client = state.azure.app2.as_ref().map_err(Clone::clone)?;
    let response = client.get(&whoami(), "").await?;
    if response.status != 200 {
        return Err(response.refusal().into());
    }
    let view: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok(App2Step {
        identity: state.identity.describe(None),
        audience: client.resource().to_owned(),
        token_claims: authorization_claims(&response.claims),
        app2_status: response.status,
        app2_view: view,
    })
}

async fn partner_step(client: &ApiClient) -> Result<PartnerStep, Failure> {
    let response = client.get(&whoami(), "").await?;
    if response.status != 200 {
        return Err(response.refusal().into());
    }
    let assertion = match client.federated_claims().await {
        Some(Ok((_, assertion))) => pick(&assertion, &["iss", "sub", "aud", "oid", "tid"]),
        _ => Map::new(),
    };
    Ok(PartnerStep {
        audience: client.resource().to_owned(),
        token_claims: authorization_claims(&response.claims),
        assertion_claims: assertion,
        partner_status: response.status,
        partner_view: serde_json::from_slice(&response.body).unwrap_or(Value::Null),
    })
}

/// A sortable unique id: UTC timestamp plus random suffix.
fn uuid_like() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{:08x}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        fastrand::u32(..)
    )
}
