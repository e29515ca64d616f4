//! Gathering the facts of a refusal from a client's typed error: what the
//! upstream said, the claims of the token it was sent, the identity in force.
//! Only a named API's missing-role 403 makes a call: it asks the directory.

use super::{Diagnosis, Directory, Facts, Target, explain};
use crate::azure::{ClientError, Stage, UpstreamError};
use crate::identity::{TokenError, UserAssignedId};
use crate::problem::ProblemType;
use crate::state::AppState;

/// `myvault` from `https://myvault.vault.azure.net`; the host otherwise.
fn first_label(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(if host.parse::<std::net::IpAddr>().is_ok() {
        // Path-style (an emulator): the account is the first path segment.
        parsed
            .path_segments()?
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or(host)
            .to_owned()
    } else {
        host.split('.').next().unwrap_or(host).to_owned()
    })
}

/// The setting that chose `identity` (or the request parameter that overrode it).
fn selector_setting(identity: Option<&UserAssignedId>, per_request: bool) -> Option<String> {
    let id = identity?;
    Some(if per_request {
        format!(
            "the request's {} parameter",
            match id {
                UserAssignedId::ResourceId(_) => "mi_res_id",
                other => other.kind().as_str(),
            }
        )
    } else {
        match id {
            UserAssignedId::ObjectId(_) => "MANAGED_IDENTITY_OBJECT_ID",
            UserAssignedId::ResourceId(_) => "MANAGED_IDENTITY_RESOURCE_ID",
            _ => "AZURE_CLIENT_ID",
        }
        .to_owned()
    })
}

/// A client's failure as its problem, with its diagnosis when a rule explains it.
pub async fn problem_for(
    error: &ClientError,
    state: &AppState,
    identity: Option<&UserAssignedId>,
) -> crate::problem::Problem {
    let problem = crate::problem::Problem::from(error);
    match diagnose(error, state, identity).await {
        Some((kind, diagnosis)) => problem.diagnosed(kind, diagnosis.fix.clone(), &diagnosis),
        None => problem,
    }
}

/// How long the directory may take to answer before the diagnosis goes on without it.
const DIRECTORY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

/// For a named API's 403 that names the role it wanted: what the directory
/// says about that role and the principal the token was for.
async fn directory_facts(upstream: &UpstreamError, state: &AppState) -> Option<Directory> {
    let Stage::Api(name) = upstream.stage else {
        return None;
    };
    if upstream.status != Some(403) || upstream.required_role.is_none() {
        return None;
    }
    let client = state.azure.apis.get(name);
    // This tenant's directory cannot see another tenant's assignments.
    if client.is_some_and(|c| c.is_federated()) {
        return None;
    }
    let claims = upstream.claims.as_ref()?;
    let oid = claims.get("oid")?.as_str()?;
    let resource = client.map(|c| c.resource().to_owned());
    let app_id = super::rules::api_app_id(resource.as_deref(), claims)?;
    let lookup = state.azure.graph.role_directory(&app_id, oid);
    Some(
        match tokio::time::timeout(DIRECTORY_DEADLINE, lookup).await {
            Ok(Ok(directory)) => Directory::Read(directory),
            Ok(Err(e)) => Directory::Unreadable((&e).into()),
            Err(_) => Directory::Unreadable(crate::azure::graph::GraphUnreadable {
                status: None,
                code: None,
                message: format!("Graph did not answer within {DIRECTORY_DEADLINE:?}"),
            }),
        },
    )
}

/// The diagnosis of a client's failure, if one of the rules explains it, with
/// the TROUBLESHOOTING.md section it belongs to. `identity` is a per-request
/// selector, if the caller chose one.
pub async fn diagnose(
    err: &ClientError,
    state: &AppState,
    identity: Option<&UserAssignedId>,
) -> Option<(ProblemType, Diagnosis)> {
    let upstream = match err {
        ClientError::Exchange(e) => {
            return super::federation::explain(e, state.identity.describe(identity));
        }
        ClientError::Upstream(u) => u.as_ref().clone(),
        ClientError::Identity(TokenError::Managed(e)) => {
            let (status, code, message) = match e.endpoint_answer() {
                Some((s, c, m)) => (Some(s), c.map(str::to_owned), m.to_owned()),
                None => (None, None, e.to_string()),
            };
            UpstreamError {
                stage: Stage::Identity,
                status,
                code,
                message,
                www_authenticate: None,
                content_type: None,
                required_role: None,
                claims: None,
            }
        }
        _ => return None,
    };
    // Only refusals and failures are explained: not a 404, not a 503 for a setting.
    if upstream.status.is_none() && upstream.stage != Stage::Identity {
        return None;
    }
    let per_request = identity.is_some();
    let effective = identity.or(state.identity.default_identity());
    let api = match upstream.stage {
        Stage::Api(name) => state.azure.apis.get(name),
        _ => state.azure.apis.get("app2"),
    };
    let facts = Facts {
        identity: state.identity.describe(identity),
        selector_setting: selector_setting(effective, per_request),
        target: Target {
            vault: state.settings.keyvault_url.as_deref().and_then(first_label),
            storage_account: state
                .settings
                .storage_account_url
                .as_deref()
                .and_then(first_label),
            api_resource: api.map(|c| c.resource().to_owned()),
            federation: api.and_then(|c| c.api().federation.clone()),
        },
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
        directory: directory_facts(&upstream, state).await,
        upstream,
    };
    explain(&facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_targets() {
        assert_eq!(
            first_label("https://myvault.vault.azure.net/").as_deref(),
            Some("myvault")
        );
        assert_eq!(
            first_label("https://acct.blob.core.windows.net").as_deref(),
            Some("acct")
        );
        assert_eq!(
            first_label("https://127.0.0.1:10000/devstoreaccount1").as_deref(),
            Some("devstoreaccount1")
        );
    }

    #[test]
    fn selector_settings() {
        let id = UserAssignedId::ClientId("c".into());
        assert_eq!(
            selector_setting(Some(&id), false).as_deref(),
            Some("AZURE_CLIENT_ID")
        );
        assert_eq!(
            selector_setting(Some(&id), true).as_deref(),
            Some("the request's client_id parameter")
        );
        assert_eq!(selector_setting(None, false), None);
    }
}
