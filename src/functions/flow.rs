//! `POST /api/flow`: the whole reference scenario, step by step.
//!
//! 1. `keyvault`: a Key Vault token, then the configured secret (metadata only);
//! 2. `app2`: app2's `/api/whoami` with a token whose audience is app2;
//! 3. `audit-write`: a JSON audit record (no secret value) to the audit container;
//! 4. `audit-read`: the record read back and compared.
//!
//! Each step reports what a learner needs: the identity and audience used, the
//! claims that mattered, and app2's view of the caller. A failed step stops the
//! flow; the reply is then a 502 problem carrying the same step report.

use crate::azure::blobs::Write;
use crate::identity::claims::{decode_claims, pick};
use crate::problem::{Problem, Stage};
use crate::protocol::{Invocation, Outcome, Reply};
use crate::startup::AppState;
use actix_web::web;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Instant;
use time::format_description::well_known::Rfc3339;

use crate::azure::keyvault::RESOURCE as KEYVAULT_RESOURCE;

/// The claims worth showing for authorization questions.
fn key_claims(claims: &Map<String, Value>) -> Map<String, Value> {
    pick(
        claims,
        &[
            "aud",
            "iss",
            "appid",
            "azp",
            "oid",
            "tid",
            "roles",
            "xms_mirid",
            "ver",
            "exp",
        ],
    )
}

struct Report {
    steps: Vec<Value>,
}

impl Report {
    /// Runs one step: times it, diagnoses a failure (outside the timing), and
    /// records it, so the report explains what went wrong.
    async fn step(
        &mut self,
        state: &AppState,
        name: &str,
        work: impl std::future::Future<Output = Result<Value, Problem>>,
    ) -> Result<Value, Problem> {
        let started = Instant::now();
        let mut result = work.await;
        let duration_ms = (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
        if let Err(problem) = &mut result {
            crate::diagnosis::attach(problem, state, None).await;
        }
        let (ok, detail) = match &result {
            Ok(detail) => (true, detail.clone()),
            Err(p) => (false, serde_json::to_value(p).unwrap_or_default()),
        };
        self.steps
            .push(json!({ "name": name, "ok": ok, "duration_ms": duration_ms, "detail": detail }));
        result
    }
}

pub async fn run(inv: Invocation, state: web::Data<AppState>) -> Outcome {
    let mut report = Report { steps: vec![] };
    let outcome = steps(&inv, &state, &mut report).await;
    match outcome {
        Ok(()) => Ok(Reply::ok_json(
            &json!({ "ok": true, "steps": report.steps }),
        )),
        Err(mut problem) => {
            // The flow failed upstream (502), or a dependency is unavailable (503).
            if problem.status != 503 {
                problem.status = 502;
                problem.title = "Bad Gateway".into();
            }
            problem.extensions.insert("ok".into(), json!(false));
            problem
                .extensions
                .insert("steps".into(), json!(report.steps));
            Err(problem)
        }
    }
}

async fn steps(inv: &Invocation, state: &AppState, report: &mut Report) -> Result<(), Problem> {
    let secret_detail = report.step(state, "keyvault", keyvault_step(state)).await?;
    let app2_detail = report.step(state, "app2", app2_step(state)).await?;

    let record = AuditRecord {
        id: uuid_like(),
        at: time::OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        invocation_id: &inv.invocation_id,
        identity: state.identity.describe(None),
        secret: AuditedSecret {
            name: &secret_detail["secret"]["name"],
            version: &secret_detail["secret"]["version"],
            updated: &secret_detail["secret"]["updated"],
        },
        app2: AuditedApp2 {
            status: &app2_detail["app2_status"],
            caller: &app2_detail["app2_view"],
        },
    };
    let bytes = bytes::Bytes::from(serde_json::to_vec_pretty(&record).expect("serializable"));
    let container = state.settings.audit_container.as_str();
    let blob = format!("flow/{}.json", record.id);

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
        Ok(json!({ "container": container, "blob": blob, "bytes": bytes.len() }))
    };
    report.step(state, "audit-write", write).await?;

    let read = async {
        let store = state.azure.blobs.as_ref().map_err(Clone::clone)?;
        let (back, content_type) = store
            .get(container, &blob, state.limits.max_body_bytes)
            .await?;
        if back != bytes {
            return Err(Problem::new(
                actix_web::http::StatusCode::BAD_GATEWAY,
                "storage-error",
                format!("the audit record read back from {container}/{blob} differs from what was written"),
            )
            .stage(Stage::Storage));
        }
        Ok(
            json!({ "container": container, "blob": blob, "bytes": back.len(), "content_type": content_type, "matches": true }),
        )
    };
    report.step(state, "audit-read", read).await.map(|_| ())
}

async fn keyvault_step(state: &AppState) -> Result<Value, Problem> {
    let secrets = state.azure.secrets.as_ref().map_err(Clone::clone)?;
    // The same (cached) token the SDK client will use, fetched here to show its claims.
    let token = state.identity.token(KEYVAULT_RESOURCE, None).await?;
    let claims = decode_claims(token.token.token.secret()).unwrap_or_default();
    let (secret, cached) = secrets.get(&state.settings.flow_secret_name, None).await?;
    Ok(json!({
        "identity": token.identity,
        "audience": KEYVAULT_RESOURCE,
        "token_claims": key_claims(&claims),
        "secret": secret.to_json(false),
        "secret_cached": cached,
    }))
}

async fn app2_step(state: &AppState) -> Result<Value, Problem> {
    let client = state.azure.app2.as_ref().map_err(Clone::clone)?;
    let response = client.get("api/whoami", "").await?;
    if response.status != 200 {
        return Err(super::app2::refusal(&response));
    }
    let view: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok(json!({
        "identity": state.identity.describe(None),
        "audience": client.resource(),
        "token_claims": key_claims(&response.claims),
        "app2_status": response.status,
        "app2_view": view,
    }))
}

/// What `flow` writes to the audit container. It identifies the secret's value
/// by version and update time, never by the value or a hash of it, and holds
/// no caller-supplied text (the invocation id is the host's GUID).
#[derive(Serialize)]
struct AuditRecord<'a> {
    id: String,
    at: String,
    invocation_id: &'a str,
    identity: crate::identity::IdentityDescription,
    secret: AuditedSecret<'a>,
    app2: AuditedApp2<'a>,
}

#[derive(Serialize)]
struct AuditedSecret<'a> {
    name: &'a Value,
    version: &'a Value,
    updated: &'a Value,
}

#[derive(Serialize)]
struct AuditedApp2<'a> {
    status: &'a Value,
    caller: &'a Value,
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
