// The reference deployment: app1 (a Flex Consumption Function App running the
// Rust custom handler) calling Key Vault, Blob Storage and app2, an App Service
// behind EasyAuth, and the directory objects they need (Microsoft Graph Bicep):
// app2's application with its App2.Access role and Application ID URI, its
// service principal, and the grant of App2.Access to app1's identity. One
// deployment does all of it (`az deployment group create -f infra/main.bicep`).
//
// Least privilege (the README's "what each identity can reach"):
// * the host's storage (AzureWebJobsStorage and the deployment package) is an
//   account of its own, reached only by a host identity of its own;
// * the handler's identity (system-assigned, or the optional user-assigned one)
//   reaches the app's data account only: Storage Blob Data Contributor on the
//   data container, and a custom read/create role (no delete) on the audit
//   container; plus Key Vault Secrets User on the vault.
//
// * in the directory, app1's identity holds app2's App2.Access, and (only with
//   grantGraphRead) Microsoft Graph's Application.Read.All, which lets it read
//   applications and service principals for /api/whoami and the verified 403
//   diagnosis; nothing is granted on Graph by default.
//
// * with enablePartner, a multitenant app registration trusts app1's
//   user-assigned identity as a federated credential, so app1 reaches an API
//   in another tenant with no secret; that tenant grants the app its role.
//
// Redeploys are idempotent: every name and role assignment id is derived from
// stable inputs, and the seed secret is written only when a value is passed.

extension microsoftGraphV1

@description('Short prefix for resource names (lower case letters and digits).')
@minLength(3)
@maxLength(11)
param prefix string = 'mirefapp'

param location string = resourceGroup().location

@description('Also create a user-assigned identity for app1 and make it the default (AZURE_CLIENT_ID).')
param useUserAssignedIdentity bool = false

@description('Grant app1\'s identity Microsoft Graph\'s Application.Read.All, for /api/whoami\'s assignments and the 403 diagnosis that asks the directory. Off by default: it lets app1 read every application and service principal in the tenant, and granting a Graph application permission needs a Privileged Role Administrator.')
param grantGraphRead bool = false

@description('The seed secret app1 reads in the flow. Pass it on the first deployment only: empty leaves the secret as it is, so a redeploy never adds a version.')
@secure()
param seedSecretValue string = ''

param auditContainer string = 'audit'
@description('The container callers may read and write through /api/blobs (BLOB_CONTAINERS).')
param dataContainer string = 'app1-data'
param flowSecretName string = 'app1-demo-secret'

@description('Call an API in another tenant with no secret (README "Calling another tenant"): a multitenant app registration whose federated identity credential trusts app1\'s user-assigned identity (created for this even without useUserAssignedIdentity). Off by default. The other tenant\'s admin then provisions the app and grants it the API\'s role.')
param enablePartner bool = false
@description('With enablePartner: the other tenant\'s id.')
param partnerTenantId string = ''
@description('With enablePartner: the partner API\'s base URL (https).')
param partnerBaseUrl string = ''
@description('With enablePartner: the partner API\'s one scope, <Application ID URI>/.default.')
param partnerScope string = ''
@description('With enablePartner: the paths callers may reach through /api/downstream/partner (comma-separated; none by default).')
param partnerAllowedPaths string = ''

var suffix = uniqueString(resourceGroup().id)
// The host's own account (AzureWebJobsStorage, deployment package) and the app's data account.
var hostStorageName = take('${prefix}h${suffix}', 24)
var dataStorageName = take('${prefix}d${suffix}', 24)
var vaultName = take('${prefix}-kv-${suffix}', 24)
var app1Name = '${prefix}-app1-${suffix}'
var app2Name = '${prefix}-app2-${suffix}'
var tenantId = subscription().tenantId
// A federated credential needs a user-assigned identity: Entra does not accept a system-assigned one.
var createUserAssigned = useUserAssignedIdentity || enablePartner
// Microsoft Graph's appId (the same in every tenant).
var graphAppId = '00000003-0000-0000-c000-000000000000'

// Built-in role definition ids (the same in every tenant).
var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
}

var storageProperties = {
  minimumTlsVersion: 'TLS1_2'
  allowBlobPublicAccess: false
  allowSharedKeyAccess: false
  supportsHttpsTrafficOnly: true
}

// The Functions host's account: its locks and keys (azure-webjobs-*) and the
// package the next cold start runs. Nothing of the handler's lives here.
resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: hostStorageName
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: storageProperties
}

resource hostBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostStorage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobService
  name: 'deploymentpackage'
}

// The app's data account: what callers reach through /api/blobs, and the audit trail.
resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: dataStorageName
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: storageProperties
}

resource dataBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: dataStorage
  name: 'default'
}

resource data 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobService
  name: dataContainer
}

resource audit 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: dataBlobService
  name: auditContainer
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${prefix}-logs-${suffix}'
  location: location
  properties: { sku: { name: 'PerGB2018' }, retentionInDays: 30 }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${prefix}-ai-${suffix}'
  location: location
  kind: 'web'
  properties: { Application_Type: 'web', WorkspaceResourceId: logs.id }
}

resource userAssigned 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (createUserAssigned) {
  name: '${prefix}-app1-ua-${suffix}'
  location: location
}

// The host's identity: host storage and the deployment package, nothing else.
// Attached to app1, but the handler never selects it by default.
resource hostIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${prefix}-app1-host-${suffix}'
  location: location
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  properties: {
    tenantId: tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }
}

resource seedSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(seedSecretValue)) {
  parent: vault
  name: flowSecretName
  properties: { value: seedSecretValue, contentType: 'text/plain' }
}

resource app1Plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${prefix}-app1-plan-${suffix}'
  location: location
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  kind: 'functionapp'
  properties: { reserved: true }
}

resource app2Plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: '${prefix}-app2-plan-${suffix}'
  location: location
  sku: { name: 'B1' }
  kind: 'linux'
  properties: { reserved: true }
}

resource app2 'Microsoft.Web/sites@2024-04-01' = {
  name: app2Name
  location: location
  kind: 'app,linux'
  properties: {
    serverFarmId: app2Plan.id
    httpsOnly: true
    siteConfig: {
      // app2 is a self-contained Linux binary started by the command below.
      linuxFxVersion: 'NODE|20-lts'
      appCommandLine: './app2'
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [
        { name: 'REQUIRED_ROLE', value: 'App2.Access' }
        { name: 'WEBSITE_AUTH_AAD_ALLOWED_TENANTS', value: tenantId }
        // app2 validates every token itself (defence in depth behind EasyAuth).
        { name: 'APP2_TENANT_ID', value: tenantId }
        { name: 'APP2_CLIENT_ID', value: app2App.appId }
        // app2's spans join app1's in the same Application Insights (role "app2").
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
      ]
    }
  }
}

// app2 in the directory: its application, with the app role the handler's
// identity needs and an Application ID URI of api://<appId>.
var app2Role = {
  id: guid(resourceGroup().id, app2Name, 'App2.Access')
  value: 'App2.Access'
  displayName: 'App2.Access'
  description: 'Call app2\'s API as an application.'
  allowedMemberTypes: [ 'Application' ]
  isEnabled: true
}

resource app2App 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: app2Name
  displayName: app2Name
  signInAudience: 'AzureADMyOrg'
  appRoles: [ app2Role ]
}

// The same application again: its identifierUris can name its appId only once
// the application exists (the Graph Bicep samples' second-declaration pattern).
resource app2AppUri 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: app2Name
  displayName: app2Name
  signInAudience: 'AzureADMyOrg'
  appRoles: [ app2Role ]
  identifierUris: [ 'api://${app2App.appId}' ]
}

resource app2Sp 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app2App.appId
}

// App2.Access for the identity that calls app2.
resource app2Access 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: callerPrincipalId
  resourceId: app2Sp.id
  appRoleId: app2Role.id
}

// Application.Read.All on Microsoft Graph, only when asked for; its role id
// is read from Graph's own appRoles, not hard-coded.
resource graphSp 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

resource graphRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantGraphRead) {
  principalId: callerPrincipalId
  resourceId: graphSp.id
  appRoleId: filter(graphSp.appRoles, role => role.value == 'Application.Read.All')[0].id
}

// EasyAuth for app2, from the same document devstack's gate reads. Callers are
// allowed by object id: a managed identity's is known at deployment time.
resource app2Auth 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app2
  name: 'authsettingsV2'
  properties: json(replace(replace(replace(string(loadJsonContent('app2-authsettingsV2.json')), '__TENANT_ID__', tenantId), '__APP2_CLIENT_ID__', app2App.appId), '__APP1_OBJECT_ID__', callerPrincipalId)).properties
  dependsOn: [ app2AppUri ]
}

// The partner-facing app: multitenant, no secret and no certificate; its one
// credential is a FIC trusting app1's user-assigned identity (issuer: this
// tenant's v2 issuer; subject: the identity's principal id, case-sensitive).
resource partnerApp 'Microsoft.Graph/applications@v1.0' = if (enablePartner) {
  uniqueName: '${prefix}-partner-client-${suffix}'
  displayName: '${prefix}-partner-client'
  signInAudience: 'AzureADMultipleOrgs'

  resource trustsApp1 'federatedIdentityCredentials@v1.0' = {
    name: '${prefix}-partner-client-${suffix}/app1-user-assigned'
    issuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
    subject: userAssigned!.properties.principalId
    audiences: [ 'api://AzureADTokenExchange' ]
  }
}

var app1Settings = concat([
  // Identity-based host storage with the host's own identity (Flex Consumption).
  { name: 'AzureWebJobsStorage__accountName', value: hostStorage.name }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: hostIdentity.properties.clientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
  { name: 'LOG_FORMAT', value: 'json' }
  { name: 'RUST_LOG', value: 'info' }
  { name: 'KEYVAULT_URL', value: vault.properties.vaultUri }
  { name: 'STORAGE_ACCOUNT_URL', value: 'https://${dataStorage.name}.blob.${environment().suffixes.storage}' }
  { name: 'BLOB_CONTAINERS', value: dataContainer }
  { name: 'AUDIT_CONTAINER', value: auditContainer }
  { name: 'FLOW_SECRET_NAME', value: flowSecretName }
  { name: 'APP2_BASE_URL', value: 'https://${app2.properties.defaultHostName}' }
  { name: 'APP2_RESOURCE', value: 'api://${app2App.appId}' }
], useUserAssignedIdentity ? [
  { name: 'AZURE_CLIENT_ID', value: userAssigned.properties.clientId }
] : [], enablePartner ? [
  { name: 'DOWNSTREAM_APIS__PARTNER__BASE_URL', value: partnerBaseUrl }
  { name: 'DOWNSTREAM_APIS__PARTNER__SCOPES', value: partnerScope }
  { name: 'DOWNSTREAM_APIS__PARTNER__ALLOWED_PATHS', value: partnerAllowedPaths }
  { name: 'DOWNSTREAM_APIS__PARTNER__CLIENT_ID', value: userAssigned!.properties.clientId }
  { name: 'DOWNSTREAM_APIS__PARTNER__TENANT_ID', value: partnerTenantId }
  { name: 'DOWNSTREAM_APIS__PARTNER__FEDERATED_CLIENT_ID', value: partnerApp!.appId }
] : [])

resource app1 'Microsoft.Web/sites@2024-04-01' = {
  name: app1Name
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned, UserAssigned'
    userAssignedIdentities: createUserAssigned ? {
      '${hostIdentity.id}': {}
      '${userAssigned.id}': {}
    } : {
      '${hostIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: app1Plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: hostIdentity.id
          }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 40, instanceMemoryMB: 2048 }
      // Flex Consumption: the custom handler runtime, as Core Tools' stacks.json and
      // Az.Functions' FunctionsStackFlexData/*/custom.json give it (FC1). On Flex,
      // FUNCTIONS_WORKER_RUNTIME and WEBSITE_RUN_FROM_PACKAGE must not be set: a
      // stale FUNCTIONS_WORKER_RUNTIME is behind "WorkerConfig for runtime: custom
      // not found" after redeploys (azure-functions-core-tools#3461), so the app
      // settings below are always the complete list.
      runtime: { name: 'custom', version: '1.0' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: app1Settings
    }
  }
}

// The identity that calls Azure: the user-assigned one when selected, else the system one.
var callerPrincipalId = useUserAssignedIdentity ? userAssigned.properties.principalId : app1.identity.principalId

resource kvSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, callerPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: callerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Read, create and overwrite-by-the-API blobs, but never delete: the audit
// trail's role. (The handler also writes with If-None-Match: *.)
resource auditAppender 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'app1-audit-appender')
  properties: {
    roleName: 'App1 Audit Appender (${resourceGroup().name})'
    description: 'Read and create blobs in app1\'s audit container; no delete.'
    type: 'CustomRole'
    assignableScopes: [ resourceGroup().id ]
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action'
        ]
        notDataActions: []
      }
    ]
  }
}

// The handler's identity: the data container only.
resource dataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(data.id, callerPrincipalId, roles.storageBlobDataContributor)
  scope: data
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: callerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ... and the audit container, read and create only.
resource auditWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(audit.id, callerPrincipalId, auditAppender.id)
  scope: audit
  properties: {
    roleDefinitionId: auditAppender.id
    principalId: callerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The host's identity: Storage Blob Data Owner on the host account, as the
// Functions docs require for AzureWebJobsStorage; it also covers the
// deployment container. The handler's identity has no role here.
resource hostStorageOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, hostIdentity.id, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: hostIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

output app1Name string = app1.name
output app1PrincipalId string = callerPrincipalId
output app2Name string = app2.name
output app2Url string = 'https://${app2.properties.defaultHostName}'
output app2ClientId string = app2App.appId
output app2Resource string = 'api://${app2App.appId}'
output keyVaultName string = vault.name
output hostStorageAccountName string = hostStorage.name
output dataStorageAccountName string = dataStorage.name
output userAssignedClientId string = useUserAssignedIdentity ? userAssigned.properties.clientId : ''
// For the other tenant's admin (README "Calling another tenant").
output partnerAppId string = enablePartner ? partnerApp!.appId : ''
