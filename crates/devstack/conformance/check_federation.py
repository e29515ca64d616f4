"""Real-client conformance for devstack's partner tenant (spec §3): the
managed identity's token for api://AzureADTokenExchange, presented as a
client assertion by the official azure-identity ClientAssertionCredential
and by msal's ConfidentialClientApplication, unchanged apart from the
authority and the local CA. Run by `cargo test -p devstack --test stack
conformance`, with devstack's env; FIC_BROKEN=1 when the world's FIC is wrong.
"""
import os

import checks
import jwt
import msal
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential, ManagedIdentityCredential

ENV = os.environ
CA = ENV["DEVSTACK_CA_CERT"]
LOGIN = ENV["DEVSTACK_LOGIN_AUTHORITY"]
TENANT_B = ENV["DEVSTACK_PARTNER_TENANT_ID"]
APP = ENV["DOWNSTREAM_APIS__PARTNER__FEDERATED_CLIENT_ID"]
SCOPE = ENV["DOWNSTREAM_APIS__PARTNER__SCOPES"]
EXCHANGE = "api://AzureADTokenExchange/.default"

mi = ManagedIdentityCredential(client_id=ENV["DOWNSTREAM_APIS__PARTNER__CLIENT_ID"])


def assertion():
    return mi.get_token(EXCHANGE).token


claims = jwt.decode(assertion(), options={"verify_signature": False})
checks.check("the assertion is the user-assigned identity's v2 token for the exchange audience",
             claims["aud"] == "api://AzureADTokenExchange" and claims["sub"] == ENV["DEVSTACK_UA_OBJECT_ID"]
             and claims["iss"] == f"https://login.microsoftonline.com/{ENV['DEVSTACK_TENANT_ID']}/v2.0", claims)

credential = ClientAssertionCredential(TENANT_B, APP, assertion, authority=LOGIN, connection_verify=CA)
app = msal.ConfidentialClientApplication(APP, client_credential={"client_assertion": assertion},
                                         authority=f"{LOGIN}/{TENANT_B}", verify=CA, instance_discovery=False)

if ENV.get("FIC_BROKEN"):
    try:
        credential.get_token(SCOPE)
        checks.check("azure-identity is refused", False, "a token came back")
    except ClientAuthenticationError as e:
        checks.check("azure-identity raises ClientAuthenticationError with the AADSTS text",
                     "AADSTS700213" in str(e) and "No matching federated identity record" in str(e), str(e)[:300])
    result = app.acquire_token_for_client(scopes=[SCOPE])
    checks.check("msal answers Entra's error with its codes and correlation id",
                 result.get("error") == "invalid_client" and 700213 in result.get("error_codes", [])
                 and result.get("correlation_id") and "AADSTS700213" in result.get("error_description", ""), result)
else:
    token = credential.get_token(SCOPE).token
    exchanged = jwt.decode(token, options={"verify_signature": False})
    checks.check("azure-identity's ClientAssertionCredential gets a tenant-B token",
                 exchanged["tid"] == TENANT_B and exchanged["appid"] == APP and exchanged.get("roles") == ["Partner.Access"],
                 exchanged)
    result = app.acquire_token_for_client(scopes=[SCOPE])
    checks.check("msal's ConfidentialClientApplication with a client assertion gets one too",
                 "access_token" in result and jwt.decode(result["access_token"], options={"verify_signature": False})["tid"] == TENANT_B,
                 {k: v for k, v in result.items() if k != "access_token"})
    # The partner API (app2's code) validates the exchanged token itself.
    import requests
    r = requests.get(ENV["DOWNSTREAM_APIS__PARTNER__BASE_URL"] + "/api/whoami", headers={"Authorization": f"Bearer {token}"})
    checks.check("the partner API accepts it", r.status_code == 200 and r.json()["tenant_id"] == TENANT_B, r.text[:300])

print(f"{checks.passed} federation checks passed")
