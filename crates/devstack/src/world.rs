//! The simulated tenant: who exists, what they may do. One place, so every
//! stand-in (issuer, vault, gate) and every scenario agrees.

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

/// app2's app registration.
#[derive(Clone, Debug, Serialize)]
pub struct AppRegistration {
    pub client_id: String,
    pub app_id_uri: String,
    /// `accessTokenAcceptedVersion`: 1 (default, `aud` = requested resource) or 2.
    pub token_version: u8,
    pub app_roles: Vec<String>,
}

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
    /// (principal object id, app role) pairs on app2.
    pub app2_role_assignments: Vec<(String, String)>,
    /// (principal object id, role) pairs on the vault.
    pub vault_role_assignments: Vec<(String, VaultRole)>,
    /// app2's EasyAuth `allowedAudiences`.
    pub app2_allowed_audiences: Vec<String>,
    /// app2's EasyAuth `defaultAuthorizationPolicy.allowedApplications`.
    pub app2_allowed_applications: Vec<String>,
    /// The client id of a user-assigned identity that exists in the tenant but is
    /// not attached to app1 (the `user-assigned-missing` scenario selects it).
    pub unattached_client_id: String,
    /// Token lifetime in seconds (Entra uses 60–90 minutes).
    pub token_lifetime_secs: i64,
}

/// The app role app2 requires.
pub const APP2_ROLE: &str = "App2.Access";

impl World {
    /// The default world: app1's system identity may read the vault, holds
    /// `App2.Access` and is an allowed application of app2.
    pub fn new() -> Self {
        let id = || Uuid::new_v4().to_string();
        let subscription_id = id();
        let resource_group = "devstack".to_owned();
        let app1_client = id();
        let app1_object = id();
        let ua_client = id();
        let ua_object = id();
        let app2_client = id();
        let arm = |provider: &str, name: &str| {
            format!(
                "/subscriptions/{subscription_id}/resourcegroups/{resource_group}/providers/{provider}/{name}"
            )
        };
        Self {
            tenant_id: id(),
            app1: ManagedIdentity {
                name: "app1".into(),
                client_id: app1_client.clone(),
                object_id: app1_object.clone(),
                resource_id: arm("Microsoft.Web/sites", "app1"),
            },
            user_assigned: ManagedIdentity {
                name: "app1-ua".into(),
                client_id: ua_client,
                object_id: ua_object,
                resource_id: arm(
                    "Microsoft.ManagedIdentity/userAssignedIdentities",
                    "app1-ua",
                ),
            },
            app2: AppRegistration {
                client_id: app2_client.clone(),
                app_id_uri: format!("api://{app2_client}"),
                token_version: 1,
                app_roles: vec![APP2_ROLE.into()],
            },
            app2_role_assignments: vec![(app1_object.clone(), APP2_ROLE.into())],
            vault_role_assignments: vec![(app1_object, VaultRole::SecretsUser)],
            app2_allowed_audiences: vec![format!("api://{app2_client}")],
            app2_allowed_applications: vec![app1_client],
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

    pub fn app2_roles_of(&self, object_id: &str) -> Vec<String> {
        self.app2_role_assignments
            .iter()
            .filter(|(oid, _)| oid == object_id)
            .map(|(_, role)| role.clone())
            .collect()
    }

    /// app2's authsettingsV2 document: the deployment's own template
    /// (`infra/app2-authsettingsV2.json`, loaded by main.bicep too) with this
    /// world's ids, and its allow-lists as this world has them (scenarios edit them).
    pub fn app2_auth_settings(&self) -> serde_json::Value {
        let mut doc = app2_auth_settings_template(
            &self.tenant_id,
            &self.app2.client_id,
            &self.app1.client_id,
        );
        let validation =
            &mut doc["properties"]["identityProviders"]["azureActiveDirectory"]["validation"];
        validation["allowedAudiences"] = serde_json::json!(self.app2_allowed_audiences);
        validation["defaultAuthorizationPolicy"]["allowedApplications"] =
            serde_json::json!(self.app2_allowed_applications);
        doc
    }
}

/// The deployment's authsettingsV2 template with its placeholders filled in.
pub fn app2_auth_settings_template(
    tenant: &str,
    app2_client_id: &str,
    app1_client_id: &str,
) -> serde_json::Value {
    const TEMPLATE: &str = include_str!("../../../infra/app2-authsettingsV2.json");
    let text = TEMPLATE
        .replace("__TENANT_ID__", tenant)
        .replace("__APP2_CLIENT_ID__", app2_client_id)
        .replace("__APP1_CLIENT_ID__", app1_client_id);
    serde_json::from_str(&text).expect("infra/app2-authsettingsV2.json is valid JSON")
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}
