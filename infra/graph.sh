#!/usr/bin/env bash
# The Microsoft Graph half of the deployment, which Bicep cannot do:
#   1. app2's app registration, with its Application ID URI (api://<client id>)
#      and the app role App2.Access (for applications);
#   2. the app-role assignment of App2.Access to app1's managed identity;
#   3. a second `az deployment group create` with both client ids, which turns
#      on app2's EasyAuth (authsettingsV2) and sets APP2_RESOURCE on app1.
# Usage: infra/graph.sh <resource-group> [deployment-name]   (after the first deployment)
# Needs: az login with rights to create app registrations and grant app roles.
set -euo pipefail
rg=${1:?usage: infra/graph.sh <resource-group> [deployment-name]}
deployment=${2:-main}
here=$(cd "$(dirname "$0")" && pwd)

output() { az deployment group show -g "$rg" -n "$deployment" --query "properties.outputs.$1.value" -o tsv; }
app2_name=$(output app2Name)
app1_oid=$(output app1PrincipalId)
use_ua=$(az deployment group show -g "$rg" -n "$deployment" --query "properties.parameters.useUserAssignedIdentity.value" -o tsv)

echo "1/3 app2's registration ($app2_name)"
app2_id=$(az ad app list --display-name "$app2_name" --query "[0].appId" -o tsv)
if [ -z "$app2_id" ]; then
  app2_id=$(az ad app create --display-name "$app2_name" --sign-in-audience AzureADMyOrg --query appId -o tsv)
fi
az ad app update --id "$app2_id" --identifier-uris "api://$app2_id"
role_id=$(az ad app show --id "$app2_id" --query "appRoles[?value=='App2.Access'].id | [0]" -o tsv)
if [ -z "$role_id" ]; then
  role_id=$(cat /proc/sys/kernel/random/uuid 2>/dev/null || uuidgen)
  az ad app update --id "$app2_id" --app-roles "[{\"allowedMemberTypes\":[\"Application\"],\"description\":\"Call app2's API\",\"displayName\":\"App2.Access\",\"id\":\"$role_id\",\"isEnabled\":true,\"value\":\"App2.Access\"}]"
fi
app2_sp=$(az ad sp show --id "$app2_id" --query id -o tsv 2>/dev/null || az ad sp create --id "$app2_id" --query id -o tsv)

echo "2/3 App2.Access for app1's identity ($app1_oid)"
assigned=$(az rest --method GET --uri "https://graph.microsoft.com/v1.0/servicePrincipals/$app2_sp/appRoleAssignedTo" \
  --query "value[?principalId=='$app1_oid' && appRoleId=='$role_id'] | length(@)" -o tsv)
if [ "$assigned" = "0" ]; then
  az rest --method POST --uri "https://graph.microsoft.com/v1.0/servicePrincipals/$app2_sp/appRoleAssignedTo" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\":\"$app1_oid\",\"resourceId\":\"$app2_sp\",\"appRoleId\":\"$role_id\"}" > /dev/null
fi
app1_client=$(az ad sp show --id "$app1_oid" --query appId -o tsv)

echo "3/3 EasyAuth on app2 (allowedAudiences api://$app2_id, allowedApplications $app1_client)"
az deployment group create -g "$rg" -n "$deployment" -f "$here/main.bicep" \
  -p useUserAssignedIdentity="${use_ua:-false}" app2ClientId="$app2_id" app1ClientId="$app1_client" > /dev/null

cat <<DONE
done.
  APP2_RESOURCE = api://$app2_id
  app1 client id = $app1_client   (object id $app1_oid)
Managed-identity tokens are cached by the platform for up to 24 h: restart app1
(az functionapp restart -g $rg -n $(output app1Name)) so its next app2 token carries App2.Access.
DONE
