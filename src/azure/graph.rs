//! Microsoft Graph: the directory, as the app's managed identity may read it.
//!
//! Read-only. Reading its own service principal needs no permission; listing
//! app role assignments and other service principals needs
//! `Application.Read.All`. Graph throttles identity paths, so answers are
//! cached briefly with single-flight, and a 429 is retried once after its
//! `Retry-After`, within a deadline.

use super::downstream::{ApiClient, ApiRequest};
use super::error::{ClientError, UpstreamError};
use crate::identity::UserAssignedId;
use crate::names::ApiPath;
use app_service_identity::single_flight::{Failed, Fresh, Miss, Served, SingleFlightCache};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

/// The permission that lets an app read service principals and assignments.
pub const APPLICATION_READ_ALL: &str = "Application.Read.All";
/// Microsoft Graph's own appId.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// The most a 429's `Retry-After` is waited for (once).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Pages followed at most (the stand-in and Graph page by 100 or fewer).
const MAX_PAGES: usize = 50;

/// A service principal (the fields the handler reads).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    pub id: String,
    #[serde(default)]
    pub app_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub service_principal_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternative_names: Vec<String>,
    #[serde(default, skip_serializing)]
    pub app_roles: Vec<AppRole>,
}

/// An app role an API defines.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppRole {
    pub id: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub allowed_member_types: Vec<String>,
    #[serde(default = "enabled")]
    pub is_enabled: bool,
}

fn enabled() -> bool {
    true
}

impl AppRole {
    pub fn for_applications(&self) -> bool {
        self.allowed_member_types.iter().any(|t| t == "Application")
    }
}

/// An app role granted to a principal.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleAssignment {
    pub id: String,
    pub app_role_id: String,
    #[serde(default)]
    pub principal_id: Option<String>,
    pub resource_id: String,
    #[serde(default)]
    pub resource_display_name: Option<String>,
    #[serde(default)]
    pub created_date_time: Option<String>,
}

impl AppRoleAssignment {
    /// `createdDateTime` as unix seconds.
    pub fn created_unix(&self) -> Option<i64> {
        let text = self.created_date_time.as_deref()?;
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp())
    }
}

/// One page of an OData collection.
#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

/// Which Azure resource owns a managed identity (from `alternativeNames`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Owner {
    /// `system_assigned` (`isExplicit=False`) or `user_assigned`.
    pub kind: &'static str,
    pub resource_id: String,
}

impl ServicePrincipal {
    pub fn owner(&self) -> Option<Owner> {
        let explicit = self
            .alternative_names
            .iter()
            .find_map(|n| n.strip_prefix("isExplicit="))?;
        let resource_id = self
            .alternative_names
            .iter()
            .find(|n| n.starts_with("/subscriptions/"))?;
        Some(Owner {
            kind: if explicit.eq_ignore_ascii_case("true") {
                "user_assigned"
            } else {
                "system_assigned"
            },
            resource_id: resource_id.clone(),
        })
    }
}

/// `GET /api/whoami`'s answer: the app's identity as the directory sees it.
#[derive(Debug, Clone, Serialize)]
pub struct WhoAmI {
    pub service_principal: ServicePrincipal,
    pub owner: Option<Owner>,
    /// Absent when the directory would not list them (see `missing_permission`).
    pub app_role_assignments: Option<Vec<AssignmentView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_permission: Option<MissingPermission>,
}

/// An assignment, resolved to its API's name and the role's value.
#[derive(Debug, Clone, Serialize)]
pub struct AssignmentView {
    pub id: String,
    pub resource: ResourceView,
    pub app_role: RoleView,
    pub created_date_time: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceView {
    pub id: String,
    pub display_name: Option<String>,
    pub app_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleView {
    pub id: String,
    /// The string in a token's `roles`; `None` for default access, or when
    /// the API's roles could not be read.
    pub value: Option<String>,
    pub display_name: Option<String>,
}

/// What the app could not read, and how to let it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MissingPermission {
    pub permission: &'static str,
    /// Graph's answer: status and code.
    pub graph_status: Option<u16>,
    pub graph_code: Option<String>,
    pub grant: String,
}

impl MissingPermission {
    /// The grant of `Application.Read.All` to principal `oid` (needs a
    /// Privileged Role Administrator, or the Bicep parameter).
    pub fn for_principal(oid: &str, status: Option<u16>, code: Option<String>) -> Self {
        Self {
            permission: APPLICATION_READ_ALL,
            graph_status: status,
            graph_code: code,
            grant: format!(
                "Grant Microsoft Graph's {APPLICATION_READ_ALL} application permission to principal {oid} (a Privileged Role Administrator must): graph=$(az ad sp show --id {GRAPH_APP_ID} --query id -o tsv); az rest --method POST --uri https://graph.microsoft.com/v1.0/servicePrincipals/{oid}/appRoleAssignments --body \"{{\\\"principalId\\\":\\\"{oid}\\\",\\\"resourceId\\\":\\\"$graph\\\",\\\"appRoleId\\\":\\\"$(az ad sp show --id {GRAPH_APP_ID} --query \\\"appRoles[?value=='{APPLICATION_READ_ALL}'].id\\\" -o tsv)\\\"}}\", or deploy infra/main.bicep with grantGraphRead=true. It lets the app read every application and service principal in the tenant, nothing more."
            ),
        }
    }
}

/// What the directory says about one API role and one principal: the
/// facts the verified 403 diagnosis reads.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleDirectory {
    /// The API's service principal, with its `appRoles`.
    pub api: ServicePrincipal,
    /// The principal's assignments to that API.
    pub assignments: Vec<AppRoleAssignment>,
}

/// Why the directory could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphUnreadable {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
}

impl From<&ClientError> for GraphUnreadable {
    fn from(e: &ClientError) -> Self {
        match e {
            ClientError::Upstream(u) => Self {
                status: u.status,
                code: u.code.clone(),
                message: u.message.clone(),
            },
            other => Self {
                status: None,
                code: None,
                message: other.to_string(),
            },
        }
    }
}

/// Graph's answers, cached per question.
pub struct Graph {
    client: Arc<ApiClient>,
    whoami: SingleFlightCache<(), Arc<WhoAmI>, ClientError>,
    roles: SingleFlightCache<(String, String), Arc<RoleDirectory>, ClientError>,
    ttl: Duration,
}

/// Keys kept at most: one per (API, principal) pair a 403 asked about.
const MAX_CACHED_LOOKUPS: NonZeroUsize = NonZeroUsize::new(64).unwrap();

impl Graph {
    pub fn new(client: Arc<ApiClient>, ttl: Duration) -> Self {
        Self {
            client,
            whoami: SingleFlightCache::new(NonZeroUsize::MIN),
            roles: SingleFlightCache::new(MAX_CACHED_LOOKUPS),
            ttl,
        }
    }

    pub fn client(&self) -> &Arc<ApiClient> {
        &self.client
    }

    /// The app's identity as the directory sees it; `true` when from the cache.
    pub async fn whoami(&self) -> Result<(Arc<WhoAmI>, bool), ClientError> {
        let (client, ttl) = (self.client.clone(), self.ttl);
        self.whoami
            .get(&(), move || async move {
                cached(whoami(&client, None).await.map(Arc::new), ttl)
            })
            .await
            .map(|(v, served)| (v, served == Served::Cached))
            .map_err(Miss::into_error)
    }

    /// As [`Graph::whoami`], as a particular identity, uncached (`handler doctor --client-id`).
    pub async fn whoami_as(&self, identity: Option<UserAssignedId>) -> Result<WhoAmI, ClientError> {
        whoami(&self.client, identity).await
    }

    /// The API whose appId is `api_app_id`, and `principal`'s assignments to it.
    pub async fn role_directory(
        &self,
        api_app_id: &str,
        principal: &str,
    ) -> Result<Arc<RoleDirectory>, ClientError> {
        let key = (api_app_id.to_owned(), principal.to_owned());
        let (client, ttl) = (self.client.clone(), self.ttl);
        let (api_app_id, principal) = key.clone();
        self.roles
            .get(&key, move || async move {
                cached(
                    role_directory(&client, &api_app_id, &principal)
                        .await
                        .map(Arc::new),
                    ttl,
                )
            })
            .await
            .map(|(v, _)| v)
            .map_err(Miss::into_error)
    }
}

/// Successes kept for `ttl`; failures not remembered (the next call asks again).
fn cached<V>(
    result: Result<V, ClientError>,
    ttl: Duration,
) -> Result<Fresh<V>, Failed<ClientError>> {
    result
        .map(|value| Fresh {
            value,
            refresh_in: ttl,
            usable_for: ttl,
        })
        .map_err(|error| Failed {
            error,
            remember_for: Duration::ZERO,
        })
}

/// One GET, retried once after a 429's `Retry-After`; any other refusal is
/// an error naming stage `graph`.
async fn get<T: DeserializeOwned>(
    client: &ApiClient,
    target: Target<'_>,
    identity: Option<UserAssignedId>,
) -> Result<T, ClientError> {
    let mut retried = false;
    loop {
        let response = match &target {
            Target::Path(path, query) => {
                let path = ApiPath::parse(path).map_err(|e| bad_path(client, e.0))?;
                client
                    .send(ApiRequest {
                        identity: identity.clone(),
                        ..ApiRequest::get(&path, query)
                    })
                    .await?
            }
            Target::Url(url) => client.get_url(url, identity.clone()).await?,
        };
        if response.status == 429 && !retried {
            let wait = response
                .retry_after
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, 3600.0)))
                .unwrap_or(Duration::from_secs(1));
            if wait <= MAX_RETRY_AFTER {
                retried = true;
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        if !(200..300).contains(&response.status) {
            return Err(response.refusal());
        }
        return serde_json::from_slice(&response.body).map_err(|e| {
            ClientError::from(UpstreamError {
                stage: response.stage,
                status: Some(response.status),
                code: None,
                message: format!("Graph's answer was not the expected JSON: {e}"),
                www_authenticate: None,
                content_type: response.content_type.clone(),
                required_role: None,
                claims: None,
            })
        });
    }
}

enum Target<'a> {
    Path(&'a str, &'a str),
    Url(&'a str),
}

fn bad_path(client: &ApiClient, reason: &str) -> ClientError {
    ClientError::NotConfigured {
        stage: super::Stage::api(client.api().name.as_str()),
        setting: "DOWNSTREAM_APIS__GRAPH__BASE_URL",
        reason: reason.to_owned(),
    }
}

/// Every item of a collection, following `@odata.nextLink` (opaque) to the end.
async fn get_all<T: DeserializeOwned>(
    client: &ApiClient,
    path: &str,
    query: &str,
    identity: Option<UserAssignedId>,
) -> Result<Vec<T>, ClientError> {
    let mut page: Page<T> = get(client, Target::Path(path, query), identity.clone()).await?;
    let mut items = std::mem::take(&mut page.value);
    for _ in 1..MAX_PAGES {
        let Some(next) = page.next_link.take() else {
            return Ok(items);
        };
        page = get(client, Target::Url(&next), identity.clone()).await?;
        items.append(&mut page.value);
    }
    Ok(items)
}

/// An OData string literal: `'` doubled, then percent-encoded for the query.
fn literal(value: &str) -> String {
    let quoted = format!("'{}'", value.replace('\'', "''"));
    url::form_urlencoded::byte_serialize(quoted.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

const SP_FIELDS: &str = "id,appId,displayName,servicePrincipalType,alternativeNames";

/// The service principal of the identity the Graph API's calls use, by the
/// appId in its token: readable without any permission.
pub async fn own_service_principal(
    client: &ApiClient,
    identity: Option<UserAssignedId>,
) -> Result<ServicePrincipal, ClientError> {
    let claims = client.token_claims(identity.clone()).await?;
    let app_id = ["appid", "azp"]
        .iter()
        .find_map(|c| claims.get(*c).and_then(|v| v.as_str()))
        .unwrap_or_default()
        .to_owned();
    // A key segment, as the SDKs write it: the quotes stay literal in the path.
    let path = format!("servicePrincipals(appId='{}')", app_id.replace('\'', "''"));
    get(
        client,
        Target::Path(&path, &format!("$select={SP_FIELDS}")),
        identity,
    )
    .await
}

async fn whoami(
    client: &ApiClient,
    identity: Option<UserAssignedId>,
) -> Result<WhoAmI, ClientError> {
    let me = own_service_principal(client, identity.clone()).await?;
    let owner = me.owner();
    let path = format!("servicePrincipals/{}/appRoleAssignments", me.id);
    let listed: Result<Vec<AppRoleAssignment>, ClientError> =
        get_all(client, &path, "", identity.clone()).await;
    let (assignments, missing) = match listed {
        Ok(list) => (Some(resolve(client, list, identity).await), None),
        Err(ClientError::Upstream(u)) if u.status == Some(403) => (
            None,
            Some(MissingPermission::for_principal(
                &me.id,
                u.status,
                u.code.clone(),
            )),
        ),
        Err(other) => return Err(other),
    };
    Ok(WhoAmI {
        service_principal: me,
        owner,
        app_role_assignments: assignments,
        missing_permission: missing,
    })
}

/// Each assignment with its API's display name and role value, reading each
/// API's service principal once.
async fn resolve(
    client: &ApiClient,
    list: Vec<AppRoleAssignment>,
    identity: Option<UserAssignedId>,
) -> Vec<AssignmentView> {
    let mut apis: Vec<(String, Option<ServicePrincipal>)> = vec![];
    for a in &list {
        if !apis.iter().any(|(id, _)| *id == a.resource_id) {
            let path = format!("servicePrincipals/{}", a.resource_id);
            let sp = get(
                client,
                Target::Path(&path, "$select=id,appId,displayName,appRoles"),
                identity.clone(),
            )
            .await
            .ok();
            apis.push((a.resource_id.clone(), sp));
        }
    }
    list.into_iter()
        .map(|a| {
            let sp = apis
                .iter()
                .find(|(id, _)| *id == a.resource_id)
                .and_then(|(_, sp)| sp.as_ref());
            let role = sp.and_then(|sp| sp.app_roles.iter().find(|r| r.id == a.app_role_id));
            AssignmentView {
                resource: ResourceView {
                    display_name: sp
                        .and_then(|s| s.display_name.clone())
                        .or(a.resource_display_name.clone()),
                    app_id: sp.and_then(|s| s.app_id.clone()),
                    id: a.resource_id.clone(),
                },
                app_role: RoleView {
                    id: a.app_role_id.clone(),
                    value: role.and_then(|r| r.value.clone()),
                    display_name: role.and_then(|r| r.display_name.clone()),
                },
                created_date_time: a.created_date_time,
                id: a.id,
            }
        })
        .collect()
}

async fn role_directory(
    client: &ApiClient,
    api_app_id: &str,
    principal: &str,
) -> Result<RoleDirectory, ClientError> {
    let query = format!(
        "$filter=appId%20eq%20{}&$select=id,appId,displayName,appRoles",
        literal(api_app_id)
    );
    let found: Page<ServicePrincipal> =
        get(client, Target::Path("servicePrincipals", &query), None).await?;
    let api = found.value.into_iter().next().ok_or_else(|| {
        ClientError::from(UpstreamError {
            stage: super::Stage::api(client.api().name.as_str()),
            status: Some(404),
            code: Some("Request_ResourceNotFound".into()),
            message: format!("the directory has no service principal with appId {api_app_id}"),
            www_authenticate: None,
            content_type: None,
            required_role: None,
            claims: None,
        })
    })?;
    let path = format!("servicePrincipals/{principal}/appRoleAssignments");
    let assignments: Vec<AppRoleAssignment> = get_all(client, &path, "", None).await?;
    Ok(RoleDirectory {
        assignments: assignments
            .into_iter()
            .filter(|a| a.resource_id == api.id)
            .collect(),
        api,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_alternative_names() {
        let sp = |names: &[&str]| ServicePrincipal {
            id: "i".into(),
            app_id: None,
            display_name: None,
            service_principal_type: Some("ManagedIdentity".into()),
            alternative_names: names.iter().map(|s| s.to_string()).collect(),
            app_roles: vec![],
        };
        let system = sp(&[
            "isExplicit=False",
            "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Web/sites/app1",
        ]);
        assert_eq!(system.owner().unwrap().kind, "system_assigned");
        let user = sp(&[
            "isExplicit=True",
            "/subscriptions/s/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ua",
        ]);
        assert_eq!(user.owner().unwrap().kind, "user_assigned");
        assert_eq!(sp(&[]).owner(), None);
    }

    #[test]
    fn odata_literals_are_quoted_and_encoded() {
        assert_eq!(literal("abc"), "%27abc%27");
        assert_eq!(literal("o'k"), "%27o%27%27k%27");
        assert_eq!(literal("a b"), "%27a%20b%27");
    }
}
