//! The deployment files, checked as far as a machine without Azure can:
//! names cross-checked against the handler and devstack's EasyAuth gate.

use devstack::easyauth::GateConfig;
use std::path::PathBuf;

fn infra_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../infra")
        .join(file)
}

fn infra(file: &str) -> String {
    let path = infra_path(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn bicep_sets_every_app_setting_the_handler_reads() {
    let bicep = infra("main.bicep");
    for setting in handler::configuration::AZURE_APP_SETTINGS {
        assert!(
            bicep.contains(&format!("name: '{setting}'")),
            "main.bicep does not set {setting}"
        );
    }
    // Identity-based host storage, Application Insights, and the optional user-assigned default.
    for setting in [
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "AZURE_CLIENT_ID",
    ] {
        assert!(
            bicep.contains(&format!("name: '{setting}'")),
            "main.bicep does not set {setting}"
        );
    }
    // Flex Consumption runs custom handlers via functionAppConfig.runtime, not FUNCTIONS_WORKER_RUNTIME.
    assert!(bicep.contains("runtime: { name: 'custom', version: '1.0' }"));
    assert!(
        !bicep.contains("name: 'FUNCTIONS_WORKER_RUNTIME'"),
        "not an app setting on Flex"
    );
    assert!(
        bicep.contains("enableRbacAuthorization: true"),
        "Key Vault in RBAC mode"
    );
    assert!(bicep.contains("'SystemAssigned, UserAssigned'"));
}

#[tokio::test]
async fn devstack_gives_the_handler_the_same_settings() {
    let mut options = devstack::stack::StackOptions::new(
        std::env::temp_dir().join(format!("infra-{}", std::process::id())),
    );
    options.azurite = false;
    let stack = devstack::stack::Stack::start(options).await.unwrap();
    let env = stack.handler_env();
    for setting in handler::configuration::AZURE_APP_SETTINGS {
        if *setting != "STORAGE_ACCOUNT_URL" {
            assert!(
                env.iter().any(|(k, _)| k == setting),
                "devstack does not set {setting}"
            );
        }
    }
    stack.stop().await;
}

#[test]
fn role_definition_ids_are_the_built_in_guids() {
    let bicep = infra("main.bicep");
    // Azure built-in roles (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
    for (name, guid) in [
        (
            "keyVaultSecretsUser",
            "4633458b-17de-408a-b874-0445c86b69e6",
        ),
        (
            "storageBlobDataContributor",
            "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        ),
        (
            "storageBlobDataOwner",
            "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        ),
    ] {
        assert!(
            bicep.contains(&format!("{name}: '{guid}'")),
            "{name} should be {guid}"
        );
        assert!(
            bicep.contains(&format!("roles.{name})")),
            "{name} is assigned"
        );
    }
    assert_eq!(
        bicep
            .matches("Microsoft.Authorization/roleAssignments@")
            .count(),
        4
    );
}

/// The body of the Bicep resource declared as `resource {name} '…'`.
fn resource<'a>(bicep: &'a str, name: &str) -> &'a str {
    let start = bicep
        .find(&format!("resource {name} '"))
        .unwrap_or_else(|| panic!("no resource {name}"));
    let rest = &bicep[start..];
    // A top-level declaration ends with a `}` at the start of a line.
    let end = rest.find("\n}").map_or(rest.len(), |e| e + 2);
    &rest[..end]
}

#[test]
fn each_identity_gets_the_narrowest_role_on_the_narrowest_scope() {
    let bicep = infra("main.bicep");
    // The handler's identity: Secrets User on the vault, Contributor on the
    // data container, a no-delete custom role on the audit container.
    let kv = resource(&bicep, "kvSecretsUser");
    assert!(kv.contains("scope: vault") && kv.contains("principalId: callerPrincipalId"));
    let data = resource(&bicep, "dataContributor");
    assert!(data.contains("scope: data\n") && data.contains("roles.storageBlobDataContributor"));
    assert!(data.contains("principalId: callerPrincipalId"));
    let audit = resource(&bicep, "auditWriter");
    assert!(audit.contains("scope: audit\n") && audit.contains("auditAppender.id"));
    let role = resource(&bicep, "auditAppender");
    assert!(role.contains("blobs/read") && role.contains("blobs/write"));
    assert!(
        !role.contains("blobs/delete"),
        "the audit role cannot delete"
    );
    // The host's identity alone owns the host account; the handler's has nothing there.
    let host = resource(&bicep, "hostStorageOwner");
    assert!(host.contains("scope: hostStorage\n") && host.contains("roles.storageBlobDataOwner"));
    assert!(host.contains("principalId: hostIdentity.properties.principalId"));
    assert!(!host.contains("callerPrincipalId"));
    assert_eq!(
        bicep.matches("roles.storageBlobDataOwner").count(),
        host.matches("roles.storageBlobDataOwner").count(),
        "Owner is granted nowhere else"
    );
    // Host storage and deployment use the host identity; data lives in another account.
    assert!(bicep.contains("userAssignedIdentityResourceId: hostIdentity.id"));
    assert!(bicep.contains("value: hostIdentity.properties.clientId"));
    assert!(bicep.contains("'https://${dataStorage.name}.blob."));
    assert!(bicep.contains("{ name: 'BLOB_CONTAINERS', value: dataContainer }"));
    assert!(resource(&bicep, "deploymentContainer").contains("parent: hostBlobService"));
    for container in ["data", "audit"] {
        assert!(resource(&bicep, container).contains("parent: dataBlobService"));
    }
}

#[test]
fn redeploys_are_idempotent() {
    let bicep = infra("main.bicep");
    // A new secret version on every deployment is not idempotent.
    assert!(
        !bicep.contains("newGuid()"),
        "no fresh values per deployment"
    );
    assert!(bicep.contains("if (!empty(seedSecretValue))"));
    // Every role assignment and role definition name is derived from stable ids.
    for decl in bicep.split("\nresource ").skip(1) {
        if decl.contains("Microsoft.Authorization/role") {
            assert!(decl.contains("name: guid("), "{decl}");
        }
    }
}

#[test]
fn easyauth_settings_are_what_the_gate_reads() {
    let bicep = infra("main.bicep");
    assert!(
        bicep.contains("loadJsonContent('app2-authsettingsV2.json')"),
        "main.bicep deploys the template"
    );
    for placeholder in ["__TENANT_ID__", "__APP2_CLIENT_ID__", "__APP1_OBJECT_ID__"] {
        assert!(
            bicep.contains(placeholder) && infra("app2-authsettingsV2.json").contains(placeholder)
        );
    }
    let (tenant, app2, app1) = (
        "0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a",
        "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
        "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
    );
    let doc = devstack::world::app2_auth_settings_template(tenant, app2, app1);
    let gate = GateConfig::from_auth_settings(&doc).unwrap();
    assert!(gate.enabled && gate.require_authentication);
    assert_eq!(gate.unauthenticated_action, "Return401");
    assert_eq!(gate.excluded_paths, ["/api/health"]);
    assert_eq!(gate.client_id, app2);
    assert_eq!(gate.allowed_audiences, [format!("api://{app2}")]);
    assert!(gate.allowed_applications.is_empty());
    assert_eq!(gate.allowed_identities, [app1]);
    assert_eq!(gate.tenant(), Some(tenant));
    // devstack's default world serves exactly this document.
    let world = devstack::world::World::new();
    assert_eq!(
        world.app2_auth_settings(),
        devstack::world::app2_auth_settings_template(
            &world.tenant_id,
            &world.app2.client_id,
            &world.app1.object_id
        )
    );
}

#[test]
fn the_directory_objects_are_declared_in_bicep() {
    let bicep = infra("main.bicep");
    // Microsoft Graph Bicep v1.0 (GA), through bicepconfig.json.
    assert!(bicep.contains("\nextension microsoftGraphV1\n"));
    let config: serde_json::Value = serde_json::from_str(&infra("bicepconfig.json")).unwrap();
    assert_eq!(
        config["extensions"]["microsoftGraphV1"],
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"
    );
    // app2's application: App2.Access for applications, then the second
    // declaration (same uniqueName) that adds api://<appId>.
    let app = resource(&bicep, "app2App");
    assert!(
        app.contains("'Microsoft.Graph/applications@v1.0'") && app.contains("uniqueName: app2Name")
    );
    assert!(app.contains("appRoles: [ app2Role ]"));
    let uri = resource(&bicep, "app2AppUri");
    assert!(uri.contains("uniqueName: app2Name") && uri.contains("appRoles: [ app2Role ]"));
    assert!(uri.contains("identifierUris: [ 'api://${app2App.appId}' ]"));
    let role = &bicep[bicep.find("var app2Role = {").unwrap()..];
    let role = &role[..role.find("\n}").unwrap()];
    for needle in [
        "value: 'App2.Access'",
        "allowedMemberTypes: [ 'Application' ]",
        "isEnabled: true",
        "id: guid(",
    ] {
        assert!(role.contains(needle), "app2Role lacks {needle}");
    }
    assert!(resource(&bicep, "app2Sp").contains("appId: app2App.appId"));
    // The one grant app1 always gets: App2.Access, to the identity that calls.
    let access = resource(&bicep, "app2Access");
    assert!(access.contains("'Microsoft.Graph/appRoleAssignedTo@v1.0'"));
    for needle in [
        "principalId: callerPrincipalId",
        "resourceId: app2Sp.id",
        "appRoleId: app2Role.id",
    ] {
        assert!(access.contains(needle), "app2Access lacks {needle}");
    }
    // Graph's Application.Read.All only behind a parameter that is off by default,
    // its role id read from Graph by value.
    assert!(bicep.contains("param grantGraphRead bool = false"));
    let read = resource(&bicep, "graphRead");
    assert!(read.contains("= if (grantGraphRead) {") && read.contains("resourceId: graphSp.id"));
    assert!(read.contains("role.value == 'Application.Read.All'"));
    assert!(
        resource(&bicep, "graphSp").contains("existing")
            && bicep.contains("'00000003-0000-0000-c000-000000000000'")
    );
    assert_eq!(
        bicep
            .matches("'Microsoft.Graph/appRoleAssignedTo@v1.0'")
            .count(),
        2,
        "no other grant"
    );
    // app2's EasyAuth and app1's settings come from the same deployment.
    let auth = resource(&bicep, "app2Auth");
    assert!(
        !auth.contains("if ("),
        "EasyAuth is configured on the first deployment"
    );
    assert!(
        auth.contains("app2App.appId") && auth.contains("'__APP1_OBJECT_ID__', callerPrincipalId")
    );
    assert!(bicep.contains("{ name: 'APP2_RESOURCE', value: 'api://${app2App.appId}' }"));
    assert!(bicep.contains("{ name: 'APP2_CLIENT_ID', value: app2App.appId }"));
    assert!(
        !infra_path("graph.sh").exists(),
        "Bicep replaces the script"
    );
}

/// The partner-facing app registration and its FIC exist only behind
/// `enablePartner` (off), trust the user-assigned identity (never the
/// system-assigned one) with the FIC fields devstack's login stand-in checks,
/// and give app1 the settings of the named API `partner`.
#[test]
fn the_partner_app_trusts_the_user_assigned_identity_only_when_enabled() {
    let bicep = infra("main.bicep");
    assert!(bicep.contains("param enablePartner bool = false"));
    let app = resource(&bicep, "partnerApp");
    assert!(app.contains("if (enablePartner)"), "{app}");
    assert!(
        app.contains("signInAudience: 'AzureADMultipleOrgs'"),
        "{app}"
    );
    assert!(app.contains("federatedIdentityCredentials@v1.0"), "{app}");
    assert!(
        app.contains("name: '${prefix}-partner-client-${suffix}/app1-user-assigned'"),
        "the child's name is <parent uniqueName>/<name>"
    );
    assert!(
        app.contains("issuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'"),
        "{app}"
    );
    assert!(
        app.contains("subject: userAssigned!.properties.principalId"),
        "{app}"
    );
    assert!(app.contains(&format!(
        "audiences: [ '{}' ]",
        devstack::world::TOKEN_EXCHANGE_AUDIENCE
    )));
    assert!(
        !app.contains("passwordCredentials") && !app.contains("keyCredentials"),
        "no secret"
    );
    assert!(bicep.contains("var createUserAssigned = useUserAssignedIdentity || enablePartner"));
    for setting in [
        "BASE_URL",
        "SCOPES",
        "ALLOWED_PATHS",
        "CLIENT_ID",
        "TENANT_ID",
        "FEDERATED_CLIENT_ID",
    ] {
        assert!(
            bicep.contains(&format!("name: 'DOWNSTREAM_APIS__PARTNER__{setting}'")),
            "app1 gets DOWNSTREAM_APIS__PARTNER__{setting}"
        );
    }
}
