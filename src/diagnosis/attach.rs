//! Gathering the facts of a refusal and attaching the diagnosis to its problem.

use super::{Facts, Target, explain};
use crate::identity::{UserAssignedId, claims::decode_claims};
use crate::problem::{Problem, Stage, TROUBLESHOOTING_BASE};
use crate::startup::AppState;
use serde_json::Value;

/// The resource whose token a stage's upstream received.
fn resource_of(stage: Stage, state: &AppState) -> Option<String> {
    match stage {
        Stage::Keyvault => Some(crate::azure::keyvault::RESOURCE.into()),
        Stage::Storage => Some(crate::azure::blobs::RESOURCE.into()),
        Stage::App2 => state.settings.app2_resource.clone(),
        Stage::Identity | Stage::Request => None,
    }
}

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
                other => other.kind(),
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

/// Adds `diagnosis` (and a specific `type` and `hint`) to an upstream refusal.
/// `identity` is a per-request selector, if the caller chose one.
pub async fn attach(problem: &mut Problem, state: &AppState, identity: Option<&UserAssignedId>) {
    let Some(stage) = problem.stage else { return };
    if stage == Stage::Request
        || problem.extensions.contains_key("diagnosis")
        || problem.status < 500
    {
        return;
    }
    let upstream = problem
        .extensions
        .get("upstream")
        .cloned()
        .unwrap_or(Value::Null);
    let text = |k: &str| upstream.get(k).and_then(Value::as_str).map(str::to_owned);
    let per_request = identity.is_some();
    let effective = identity.or(state.identity.default_identity());
    // The token the upstream received: the provider's cached one for that resource.
    let claims = match resource_of(stage, state) {
        Some(resource) => match state.identity.token(&resource, identity).await {
            Ok(t) => decode_claims(t.token.token.secret()),
            Err(_) => None,
        },
        None => None,
    };
    let facts = Facts {
        stage,
        status: problem.upstream_status,
        code: text("code"),
        message: text("message").unwrap_or_else(|| problem.detail.clone()),
        www_authenticate: text("www_authenticate"),
        content_type: text("content_type"),
        required_role: text("required_role"),
        claims,
        identity: state.identity.describe(identity),
        selector_setting: selector_setting(effective, per_request),
        target: Target {
            vault: state.settings.keyvault_url.as_deref().and_then(first_label),
            storage_account: state
                .settings
                .storage_account_url
                .as_deref()
                .and_then(first_label),
            app2_resource: state.settings.app2_resource.clone(),
        },
    };
    if let Some((anchor, diagnosis)) = explain(&facts) {
        debug_assert!(
            crate::problem::ANCHORS.contains(&anchor),
            "{anchor} is not in ANCHORS"
        );
        problem.kind = format!("{TROUBLESHOOTING_BASE}#{anchor}");
        problem.hint = Some(diagnosis.fix.clone());
        problem.extensions.insert(
            "diagnosis".into(),
            serde_json::to_value(diagnosis).unwrap_or_default(),
        );
    }
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
