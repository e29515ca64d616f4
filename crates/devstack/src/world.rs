//! The simulated tenant: who exists, what they may do. One place, so every
//! stand-in (issuer, vault, gate) and every scenario agrees.

use app2::jwt::v2_issuer;
use serde::Serialize;
use uuid::Uuid;

/// A managed identity as Entra sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ManagedIdentity {
    pub name: String,
    pub client_id: String,
    pub object_id: String,
    /// ARM id, emitted as `xms_mirid`.
    pub resource_id: String,
}

/// An application (app2, Microsoft Graph) and its service principal.
#[derive(Clone, Debug, Serialize)]
pub struct AppRegistration {
    pub display_name: String,
    /// The appId.
    pub client_id: String,
    pub app_id_uri: String,
    /// Its service principal's object id in this tenant.
    pub sp_object_id: String,
    /// `accessTokenAcceptedVersion`: 1 (default, `aud` = requested resource) or 2.
    pub token_version: u8,
    pub app_roles: Vec<AppRole>,
}

/// An app role an application defines.
#[derive(Clone, Debug, Serialize)]
pub struct AppRole {
    pub id: String,
    pub value: String,
    /// `["Application"]` for roles an app (a managed identity) can hold.
    pub allowed_member_types: Vec<String>,
    pub is_enabled: bool,
}

impl AppRole {
    pub fn for_applications(id: &str, value: &str) -> Self {
        Self {
            id: id.to_owned(),
            value: value.to_owned(),
            allowed_member_types: vec!["Application".into()],
            is_enabled: true,
        }
    }
}

/// An app role assignment (`appRoleAssignedTo`): one source of truth for the
/// issuer's `roles` and Graph's `appRoleAssignments`.
#[derive(Clone, Debug, Serialize)]
pub struct Grant {
    pub id: String,
    /// The principal's object id.
    pub principal: String,
    /// The appId of the application whose role it is.
    pub resource_app_id: String,
    pub role_id: String,
    /// `createdDateTime`, unix seconds.
    pub created: i64,
}

/// A federated identity credential (FIC) of an app registration: which
/// external token it accepts as the app's client assertion. Entra matches
/// `issuer` and `audiences` exactly and `subject` case-sensitively.
#[derive(Clone, Debug, Serialize)]
pub struct FederatedCredential {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

/// The multitenant app registration (in app1's tenant) that trusts app1's
/// user-assigned identity, and its service principal in the partner tenant.
#[derive(Clone, Debug, Serialize)]
pub struct FederatedApp {
    pub display_name: String,
    /// The appId (`DOWNSTREAM_APIS__PARTNER__FEDERATED_CLIENT_ID`).
    pub client_id: String,
    pub federated_credentials: Vec<FederatedCredential>,
    /// Its service principal's object id in the partner tenant; `None` when
    /// the partner's admin never provisioned (consented to) the app.
    pub partner_sp_object_id: Option<String>,
}

/// The other tenant: its id, the API it exposes, and what it granted.
#[derive(Clone, Debug, Serialize)]
pub struct PartnerTenant {
    pub tenant_id: String,
    /// The partner's API (app2's code, configured for this tenant).
    pub api: AppRegistration,
    /// App role assignments made in the partner tenant.
    pub grants: Vec<Grant>,
}

/// The audience of the token a managed identity presents as a client assertion.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The app role the partner API requires.
pub const PARTNER_ROLE: &str = "Partner.Access";

/// Key Vault data-plane roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VaultRole {
    /// "Key Vault Secrets User": read secrets and their metadata.
    SecretsUser,
    /// "Key Vault Secrets Officer": also write and delete.
    SecretsOfficer,
}

impl VaultRole {
    pub fn display_name(self) -> &'static str {
        match self {
            Self::SecretsUser => "Key Vault Secrets User",
            Self::SecretsOfficer => "Key Vault Secrets Officer",
        }
    }
}

/// Everything the stand-ins know.
#[derive(Clone, Debug, Serialize)]
pub struct World {
    pub tenant_id: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub vault_name: String,
    pub storage_account: String,
    /// app1's system-assigned identity.
    pub app1: ManagedIdentity,
    /// A user-assigned identity attached to app1 that holds no role anywhere.
    pub user_assigned: ManagedIdentity,
    pub app2: AppRegistration,
    /// Microsoft Graph's service principal, with the permissions it defines.
    pub graph: AppRegistration,
    /// Every app role assignment, on app2 and on Graph.
    pub grants: Vec<Grant>,
    /// When set, the identity endpoint hands out tokens minted at this time
    /// (unix seconds), as the platform's token cache does for up to 24 h:
    /// their roles are the grants that existed then.
    pub tokens_minted_at: Option<i64>,
    /// (principal object id, role) pairs on the vault.
    pub vault_role_assignments: Vec<(String, VaultRole)>,
    /// app2's EasyAuth `allowedAudiences`.
    pub app2_allowed_audiences: Vec<String>,
    /// app2's EasyAuth `defaultAuthorizationPolicy.allowedPrincipals.identities`
    /// (object ids: a managed identity's is known at deployment time).
    pub app2_allowed_identities: Vec<String>,
    /// The client id of a user-assigned identity that exists in the tenant but is
    /// not attached to app1 (the `user-assigned-missing` scenario selects it).
    pub unattached_client_id: String,
    /// Token lifetime in seconds (Entra uses 60–90 minutes).
    pub token_lifetime_secs: i64,
    /// The app registration whose FIC trusts `user_assigned`.
    pub federated_app: FederatedApp,
    pub partner: PartnerTenant,
}

/// The app role app2 requires.
pub const APP2_ROLE: &str = "App2.Access";
/// The Graph permission that lets app1 read the directory.
pub const GRAPH_READ: &str = "Application.Read.All";
/// Graph's appId, and its `Application.Read.All` app role id.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
pub const GRAPH_READ_ROLE_ID: &str = "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30";

impl World {
    /// The default world: app1's system identity may read the vault, holds
    /// `App2.Access` and Graph's `Application.Read.All` (granted a month
    /// and a day ago), and is an allowed principal of app2.
    pub fn new() -> Self {
        let id = || Uuid::new_v4().to_string();
        let subscription_id = id();
        let resource_group = "devstack".to_owned();
        let app1_client = id();
        let app1_object = id();
        let ua_client = id();
        let ua_object = id();
        let app2_client = id();
        let app2_role_id = id();
        let tenant_id = id();
        let federated_client = id();
        let partner_sp = id();
        let partner_client = id();
        let partner_role_id = id();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let arm = |provider: &str, name: &str| {
            format!(
                "/subscriptions/{subscription_id}/resourcegroups/{resource_group}/providers/{provider}/{name}"
            )
        };
        Self {
            federated_app: FederatedApp {
                display_name: "app1-partner-client".into(),
                client_id: federated_client.clone(),
                federated_credentials: vec![FederatedCredential {
                    name: "app1-ua".into(),
                    issuer: v2_issuer(&tenant_id),
                    subject: ua_object.clone(),
                    audiences: vec![TOKEN_EXCHANGE_AUDIENCE.into()],
                }],
                partner_sp_object_id: Some(partner_sp.clone()),
            },
            partner: PartnerTenant {
                tenant_id: id(),
                api: AppRegistration {
                    display_name: "partner-api".into(),
                    client_id: partner_client.clone(),
                    app_id_uri: format!("api://{partner_client}"),
                    sp_object_id: id(),
                    token_version: 1,
                    app_roles: vec![AppRole::for_applications(&partner_role_id, PARTNER_ROLE)],
                },
                grants: vec![Grant {
                    id: id(),
                    principal: partner_sp,
                    resource_app_id: partner_client,
                    role_id: partner_role_id,
                    created: now - 7 * 86_400,
                }],
            },
            tenant_id,
            app1: ManagedIdentity {
                name: "app1".into(),
                client_id: app1_client.clone(),
                object_id: app1_object.clone(),
                resource_id: arm("Microsoft.Web/sites", "app1"),
            },
            user_assigned: ManagedIdentity {
                name: "app1-ua".into(),
                client_id: ua_client,
                object_id: ua_object.clone(),
                resource_id: arm(
                    "Microsoft.ManagedIdentity/userAssignedIdentities",
                    "app1-ua",
                ),
            },
            app2: AppRegistration {
                display_name: "app2".into(),
                client_id: app2_client.clone(),
                app_id_uri: format!("api://{app2_client}"),
                sp_object_id: id(),
                token_version: 1,
                app_roles: vec![AppRole::for_applications(&app2_role_id, APP2_ROLE)],
            },
            graph: AppRegistration {
                display_name: "Microsoft Graph".into(),
                client_id: GRAPH_APP_ID.into(),
                app_id_uri: "https://graph.microsoft.com".into(),
                sp_object_id: id(),
                token_version: 1,
                app_roles: vec![
                    AppRole::for_applications(GRAPH_READ_ROLE_ID, GRAPH_READ),
                    AppRole::for_applications(
                        "df021288-bdef-4463-88db-98f22de89214",
                        "User.Read.All",
                    ),
                ],
            },
            grants: vec![
                Grant {
                    id: id(),
                    principal: app1_object.clone(),
                    resource_app_id: app2_client.clone(),
                    role_id: app2_role_id,
                    created: now - 31 * 86_400,
                },
                Grant {
                    id: id(),
                    principal: app1_object.clone(),
                    resource_app_id: GRAPH_APP_ID.into(),
                    role_id: GRAPH_READ_ROLE_ID.into(),
                    created: now - 30 * 86_400,
                },
            ],
            tokens_minted_at: None,
            vault_role_assignments: vec![(app1_object.clone(), VaultRole::SecretsUser)],
            app2_allowed_audiences: vec![format!("api://{app2_client}")],
            app2_allowed_identities: vec![app1_object],
            unattached_client_id: id(),
            token_lifetime_secs: 3600,
            subscription_id,
            resource_group,
            vault_name: "devstack-kv".into(),
            storage_account: "devstoreaccount1".into(),
        }
    }

    /// Identities attached to app1, i.e. those the identity endpoint will serve.
    pub fn attached_identities(&self) -> [&ManagedIdentity; 2] {
        [&self.app1, &self.user_assigned]
    }

    pub fn vault_role(&self, object_id: &str) -> Option<VaultRole> {
        self.vault_role_assignments
            .iter()
            .filter(|(oid, _)| oid == object_id)
            .map(|(_, role)| *role)
            .max_by_key(|r| *r == VaultRole::SecretsOfficer)
    }

    /// The application with this appId (app2 or Graph).
    pub fn application(&self, app_id: &str) -> Option<&AppRegistration> {
        [&self.app2, &self.graph]
            .into_iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(app_id))
    }

    /// The roles of `app` that Entra puts in `object_id`'s token minted at
    /// `at`: granted by then, enabled, and for applications.
    pub fn roles_of(&self, app: &AppRegistration, object_id: &str, at: i64) -> Vec<String> {
        roles_granted(&self.grants, app, object_id, at)
    }

    /// The partner API's roles in a token for the partner tenant's principal `object_id`.
    pub fn partner_roles_of(&self, object_id: &str, at: i64) -> Vec<String> {
        roles_granted(&self.partner.grants, &self.partner.api, object_id, at)
    }

    /// Removes `object_id`'s grants of the role `value` of `app_id`.
    pub fn revoke(&mut self, object_id: &str, app_id: &str, value: &str) {
        let role_ids: Vec<String> = self
            .application(app_id)
            .map(|a| {
                a.app_roles
                    .iter()
                    .filter(|r| r.value == value)
                    .map(|r| r.id.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.grants
            .retain(|g| !(g.principal == object_id && role_ids.contains(&g.role_id)));
    }

    /// app2's authsettingsV2 document: the deployment's own template
    /// (`infra/app2-authsettingsV2.json`, loaded by main.bicep too) with this
    /// world's ids, and its allow-lists as this world has them (scenarios edit them).
    pub fn app2_auth_settings(&self) -> serde_json::Value {
        let mut doc = app2_auth_settings_template(
            &self.tenant_id,
            &self.app2.client_id,
            &self.app1.object_id,
        );
        let validation =
            &mut doc["properties"]["identityProviders"]["azureActiveDirectory"]["validation"];
        validation["allowedAudiences"] = serde_json::json!(self.app2_allowed_audiences);
        validation["defaultAuthorizationPolicy"]["allowedPrincipals"]["identities"] =
            serde_json::json!(self.app2_allowed_identities);
        doc
    }
}

/// The roles of `app` in `grants` held by `object_id` at `at`: granted by
/// then, enabled, and for applications (what Entra puts in `roles`).
fn roles_granted(grants: &[Grant], app: &AppRegistration, object_id: &str, at: i64) -> Vec<String> {
    grants
        .iter()
        .filter(|g| {
            g.principal == object_id && g.resource_app_id == app.client_id && g.created <= at
        })
        .filter_map(|g| app.app_roles.iter().find(|r| r.id == g.role_id))
        .filter(|r| r.is_enabled && r.allowed_member_types.iter().any(|t| t == "Application"))
        .map(|r| r.value.clone())
        .collect()
}

/// The deployment's authsettingsV2 template with its placeholders filled in.
pub fn app2_auth_settings_template(
    tenant: &str,
    app2_client_id: &str,
    app1_object_id: &str,
) -> serde_json::Value {
    const TEMPLATE: &str = include_str!("../../../infra/app2-authsettingsV2.json");
    let text = TEMPLATE
        .replace("__TENANT_ID__", tenant)
        .replace("__APP2_CLIENT_ID__", app2_client_id)
        .replace("__APP1_OBJECT_ID__", app1_object_id);
    serde_json::from_str(&text).expect("infra/app2-authsettingsV2.json is valid JSON")
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}
