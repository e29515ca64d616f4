// The reference deployment: app1 (a Flex Consumption Function App running the
// Rust custom handler) calling Key Vault, Blob Storage and app2, an App Service
// behind EasyAuth. Deploy twice: once to create everything, then again (from
// infra/graph.sh) with app1ClientId and app2ClientId to configure EasyAuth.

@description('Short prefix for resource names (lower case letters and digits).')
@minLength(3)
@maxLength(11)
param prefix string = 'mirefapp'

param location string = resourceGroup().location

@description('Also create a user-assigned identity for app1 and make it the default (AZURE_CLIENT_ID).')
param useUserAssignedIdentity bool = false

@description('app2\'s app registration client id (set by infra/graph.sh). Empty: EasyAuth is not configured yet.')
param app2ClientId string = ''

@description('The client id (appId) of app1\'s identity, allowed to call app2 (set by infra/graph.sh).')
param app1ClientId string = ''

@description('The seed secret app1 reads in the flow.')
@secure()
param seedSecretValue string = newGuid()

param auditContainer string = 'audit'
param flowSecretName string = 'app1-demo-secret'

var suffix = uniqueString(resourceGroup().id)
var storageName = take('${prefix}${suffix}', 24)
var vaultName = take('${prefix}-kv-${suffix}', 24)
var app1Name = '${prefix}-app1-${suffix}'
var app2Name = '${prefix}-app2-${suffix}'
var tenantId = subscription().tenantId

// Built-in role definition ids (the same in every tenant).
var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'deploymentpackage'
}

resource audit 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
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

resource userAssigned 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (useUserAssignedIdentity) {
  name: '${prefix}-app1-ua-${suffix}'
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

resource seedSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
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
      ]
    }
  }
}

// EasyAuth for app2, from the same document devstack's gate reads.
resource app2Auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(app2ClientId)) {
  parent: app2
  name: 'authsettingsV2'
  properties: json(replace(replace(replace(string(loadJsonContent('app2-authsettingsV2.json')), '__TENANT_ID__', tenantId), '__APP2_CLIENT_ID__', app2ClientId), '__APP1_CLIENT_ID__', app1ClientId)).properties
}

var app1Settings = concat([
  { name: 'AzureWebJobsStorage__accountName', value: storage.name }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
  { name: 'LOG_FORMAT', value: 'json' }
  { name: 'RUST_LOG', value: 'info' }
  { name: 'KEYVAULT_URL', value: vault.properties.vaultUri }
  { name: 'STORAGE_ACCOUNT_URL', value: 'https://${storage.name}.blob.${environment().suffixes.storage}' }
  { name: 'AUDIT_CONTAINER', value: auditContainer }
  { name: 'FLOW_SECRET_NAME', value: flowSecretName }
  { name: 'APP2_BASE_URL', value: 'https://${app2.properties.defaultHostName}' }
  { name: 'APP2_RESOURCE', value: empty(app2ClientId) ? '' : 'api://${app2ClientId}' }
], useUserAssignedIdentity ? [
  { name: 'AZURE_CLIENT_ID', value: userAssigned.properties.clientId }
] : [])

resource app1 'Microsoft.Web/sites@2024-04-01' = {
  name: app1Name
  location: location
  kind: 'functionapp,linux'
  identity: useUserAssignedIdentity ? {
    type: 'SystemAssigned, UserAssigned'
    userAssignedIdentities: { '${userAssigned.id}': {} }
  } : {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: app1Plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 40, instanceMemoryMB: 2048 }
      // Flex Consumption: the custom handler runtime (FUNCTIONS_WORKER_RUNTIME is not used here).
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

resource auditContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(audit.id, callerPrincipalId, roles.storageBlobDataContributor)
  scope: audit
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: callerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The Functions host's own storage (AzureWebJobsStorage, Flex deployment) uses the system identity.
resource hostStorageOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, app1.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: app1.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

output app1Name string = app1.name
output app1PrincipalId string = callerPrincipalId
output app2Name string = app2.name
output app2Url string = 'https://${app2.properties.defaultHostName}'
output keyVaultName string = vault.name
output storageAccountName string = storage.name
output userAssignedClientId string = useUserAssignedIdentity ? userAssigned.properties.clientId : ''
