"""Real-client conformance for devstack's Microsoft Graph: the official
`msgraph-sdk` (kiota) through azure-identity's ManagedIdentityCredential on
devstack's identity endpoint, unchanged apart from its base URL and the local
CA (spec §1). Run by `cargo test -p devstack --test stack conformance`, with devstack's env.
"""
import asyncio
import json
import os
import urllib.request
import ssl

import checks
import httpx
from azure.identity import ManagedIdentityCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.service_principals.service_principals_request_builder import ServicePrincipalsRequestBuilder
from msgraph_core import GraphClientFactory
from msgraph_core.tasks.page_iterator import PageIterator

ENV = os.environ
CA = ENV["DEVSTACK_CA_CERT"]
BASE = ENV["DOWNSTREAM_APIS__GRAPH__BASE_URL"]
SCOPES = ["https://graph.microsoft.com/.default"]


def graph_client(credential):
    auth = AzureIdentityAuthenticationProvider(credential, scopes=SCOPES)
    http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(verify=CA))
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = BASE
    return GraphServiceClient(request_adapter=adapter), adapter


def throttle(times=None):
    """Ask the stand-in to answer the next `times` requests with 429; without
    `times`, how many 429s it has answered."""
    root = BASE.rsplit("/v1.0", 1)[0]
    data = None if times is None else json.dumps({"times": times}).encode()
    req = urllib.request.Request(f"{root}/_devstack/throttle", data=data,
                                 headers={"content-type": "application/json"}, method="GET" if data is None else "POST")
    body = urllib.request.urlopen(req, context=ssl.create_default_context(cafile=CA)).read()
    return json.loads(body)["throttled"] if times is None else None


async def main():
    client, adapter = graph_client(ManagedIdentityCredential())
    me = await client.service_principals_with_app_id(ENV["APP1_CLIENT_ID"]).get()
    checks.check("service principal by appId", me.id == ENV["APP1_OBJECT_ID"] and me.service_principal_type == "ManagedIdentity",
          (me.id, me.service_principal_type))
    checks.check("alternativeNames name the owning resource",
          "isExplicit=False" in me.alternative_names and any(n.endswith("/Microsoft.Web/sites/app1") for n in me.alternative_names),
          me.alternative_names)

    query = ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
        filter=f"appId eq '{ENV['APP2_CLIENT_ID']}'", select=["id", "appId", "displayName", "appRoles"])
    found = await client.service_principals.get(request_configuration=RequestConfiguration(query_parameters=query))
    checks.check("$filter=appId eq '…' returns app2's service principal with its roles",
          len(found.value) == 1 and [r.value for r in found.value[0].app_roles] == ["App2.Access"]
          and found.value[0].app_roles[0].allowed_member_types == ["Application"],
          found.value)
    app2_sp = found.value[0].id

    first = await client.service_principals.by_service_principal_id(me.id).app_role_assignments.get()
    checks.check("assignments come in pages", first.odata_next_link is not None and len(first.value) == 1, first.odata_next_link)
    seen = []
    iterator = PageIterator(first, adapter)
    await iterator.iterate(lambda a: seen.append(a) or True)
    checks.check("PageIterator follows @odata.nextLink to the end",
          sorted(a.resource_display_name for a in seen) == ["Microsoft Graph", "app2"]
          and any(str(a.resource_id) == app2_sp and a.created_date_time is not None for a in seen),
          [(a.resource_display_name, a.created_date_time) for a in seen])

    # The user-assigned identity holds no Application.Read.All: its own
    # service principal is readable, anything else is 403.
    ua, _ = graph_client(ManagedIdentityCredential(client_id=ENV["DEVSTACK_UA_CLIENT_ID"]))
    own = await ua.service_principals_with_app_id(ENV["DEVSTACK_UA_CLIENT_ID"]).get()
    checks.check("a principal reads its own service principal without permission", own.id == ENV["DEVSTACK_UA_OBJECT_ID"], own.id)
    try:
        await ua.service_principals.by_service_principal_id(app2_sp).get()
        checks.check("403 is an ODataError", False)
    except ODataError as e:
        checks.check("403 is an ODataError Authorization_RequestDenied with request ids",
              e.response_status_code == 403 and e.error.code == "Authorization_RequestDenied"
              and e.error.inner_error is not None and e.error.inner_error.request_id,
              (e.response_status_code, e.error.code))

    # A token for another audience is refused as Graph refuses it.
    vault = ManagedIdentityCredential().get_token("https://vault.azure.net/.default").token
    r = httpx.get(f"{BASE}/servicePrincipals(appId='{ENV['APP1_CLIENT_ID']}')",
                  headers={"Authorization": f"Bearer {vault}"}, verify=CA)
    checks.check("a token for another audience is 401 InvalidAuthenticationToken",
          r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
          and "Invalid audience" in r.json()["error"]["message"] and r.headers.get("request-id"), r.text)

    before = throttle()
    throttle(1)
    again = await client.service_principals_with_app_id(ENV["APP1_CLIENT_ID"]).get()
    checks.check("a 429 with Retry-After is retried by the SDK",
          again.id == ENV["APP1_OBJECT_ID"] and throttle() == before + 1, throttle())
    print(f"{checks.passed} Graph checks passed")


asyncio.run(main())
