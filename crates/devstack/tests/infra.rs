//! The deployment files, checked as far as a machine without Azure can:
//! names cross-checked against the handler and devstack's EasyAuth gate.

use devstack::easyauth::GateConfig;
use std::path::PathBuf;

fn infra(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../infra")
        .join(file);
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
    for placeholder in ["__TENANT_ID__", "__APP2_CLIENT_ID__", "__APP1_CLIENT_ID__"] {
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
    assert_eq!(gate.allowed_applications, [app1]);
    assert_eq!(gate.tenant(), Some(tenant));
    // devstack's default world serves exactly this document.
    let world = devstack::world::World::new();
    assert_eq!(
        world.app2_auth_settings(),
        devstack::world::app2_auth_settings_template(
            &world.tenant_id,
            &world.app2.client_id,
            &world.app1.client_id
        )
    );
}

#[test]
fn graph_script_creates_the_registration_role_and_assignment() {
    let script = infra("graph.sh");
    for needle in [
        "az ad app create",
        "--identifier-uris \"api://$app2_id\"",
        "\"value\\\":\\\"App2.Access\\\"",
        "\"allowedMemberTypes\\\":[\\\"Application\\\"]",
        "servicePrincipals/$app2_sp/appRoleAssignedTo",
        "app2ClientId=\"$app2_id\" app1ClientId=\"$app1_client\"",
    ] {
        assert!(script.contains(needle), "graph.sh lacks {needle}");
    }
    let ok = std::process::Command::new("bash")
        .args(["-n"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/graph.sh"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "graph.sh has a syntax error");
}
