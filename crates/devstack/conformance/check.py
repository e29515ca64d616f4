"""Real-client conformance: the official Azure SDK for Python against devstack.

Run by `cargo test -p devstack --test conformance` (which starts devstack and
passes its env file's values as environment variables). Every check prints one
line; the script exits non-zero on the first failure.
"""
import base64
import json
import os
import urllib.request
import uuid

import checks
import jwt
import requests

ENV = os.environ
CA = ENV["DEVSTACK_CA_CERT"]
TENANT = ENV["DEVSTACK_TENANT_ID"]
AUTHORITY = ENV["DEVSTACK_AUTHORITY"]
APP2_RESOURCE = ENV["APP2_RESOURCE"]


def use_protocol(protocol):
    """Set the variables azure-identity reads at construction time."""
    for v in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
              "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST"):
        os.environ.pop(v, None)
    if protocol == "2019":
        os.environ["IDENTITY_ENDPOINT"] = ENV["DS_IDENTITY_ENDPOINT"]
        os.environ["IDENTITY_HEADER"] = ENV["DS_IDENTITY_HEADER"]
    elif protocol == "2017":
        os.environ["MSI_ENDPOINT"] = ENV["DS_MSI_ENDPOINT"]
        os.environ["MSI_SECRET"] = ENV["DS_MSI_SECRET"]
    elif protocol == "imds":
        os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = AUTHORITY


def validate(token, audiences):
    """§5.6 of the spec: metadata by `ver`, key by `kid`, RS256 only."""
    ver = jwt.decode(token, options={"verify_signature": False})["ver"]
    path = f"{TENANT}/v2.0" if ver == "2.0" else TENANT
    meta = json.load(urllib.request.urlopen(f"{AUTHORITY}/{path}/.well-known/openid-configuration"))
    key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audiences, issuer=meta["issuer"],
                      leeway=300, options={"require": ["exp", "nbf", "iat", "iss", "aud"]})


from azure.identity import ManagedIdentityCredential  # noqa: E402
from azure.keyvault.secrets import SecretClient  # noqa: E402
from azure.core.exceptions import HttpResponseError  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402
import msal  # noqa: E402

# --- ManagedIdentityCredential through both App Service protocols (and IMDS) ---
tokens = {}
for protocol in ("2019", "2017", "imds"):
    use_protocol(protocol)
    cred = ManagedIdentityCredential()
    tok = cred.get_token("https://vault.azure.net/.default")
    claims = validate(tok.token, ["https://vault.azure.net"])
    checks.check(f"ManagedIdentityCredential {protocol}: token verifies via OIDC + JWKS",
          claims["oid"] == ENV["APP1_OBJECT_ID"] and claims["appid"] == ENV["APP1_CLIENT_ID"], claims)
    tokens[protocol] = tok

use_protocol("2019")
ua = ManagedIdentityCredential(client_id=ENV["DEVSTACK_UA_CLIENT_ID"])
ua_claims = validate(ua.get_token("https://storage.azure.com/.default").token, ["https://storage.azure.com"])
checks.check("user-assigned by client_id", ua_claims["oid"] == ENV["DEVSTACK_UA_OBJECT_ID"], ua_claims)
by_rid = ManagedIdentityCredential(identity_config={"resource_id": ENV["DEVSTACK_UA_RESOURCE_ID"]})
rid_claims = validate(by_rid.get_token("https://storage.azure.com").token, ["https://storage.azure.com"])
checks.check("user-assigned by mi_res_id", rid_claims["xms_mirid"] == ENV["DEVSTACK_UA_RESOURCE_ID"], rid_claims)
by_oid = ManagedIdentityCredential(identity_config={"object_id": ENV["DEVSTACK_UA_OBJECT_ID"]})
checks.check("user-assigned by object_id",
      validate(by_oid.get_token(APP2_RESOURCE + "/.default").token, [APP2_RESOURCE])["oid"] == ENV["DEVSTACK_UA_OBJECT_ID"])

app2_token = ManagedIdentityCredential().get_token(APP2_RESOURCE + "/.default").token
app2_claims = validate(app2_token, [APP2_RESOURCE])
checks.check("app2 token: v1, aud = App ID URI, App2.Access role",
      app2_claims["ver"] == "1.0" and app2_claims["aud"] == APP2_RESOURCE and "App2.Access" in app2_claims.get("roles", []),
      app2_claims)
try:
    validate(app2_token, ["https://vault.azure.net"])
    checks.check("wrong audience is rejected", False)
except jwt.InvalidAudienceError:
    checks.check("wrong audience is rejected", True)
tampered = app2_token[:-4] + ("AAAA" if not app2_token.endswith("AAAA") else "BBBB")
try:
    validate(tampered, [APP2_RESOURCE])
    checks.check("tampered token is rejected", False)
except jwt.InvalidSignatureError:
    checks.check("tampered token is rejected", True)

# --- msal directly: cache behaviour against the stand-in ---
mi = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=requests.Session())
first = mi.acquire_token_for_client(resource=APP2_RESOURCE)
second = mi.acquire_token_for_client(resource=APP2_RESOURCE)
checks.check("msal ManagedIdentityClient gets a token and caches it",
      "access_token" in first and second.get("token_source") == "cache", {k: v for k, v in first.items() if k != "access_token"})

# --- Key Vault: SecretClient reads the seed secret; the UA identity is denied ---
secret_name = ENV["DEVSTACK_SEED_SECRET"]
sc = SecretClient(ENV["KEYVAULT_URL"], ManagedIdentityCredential(), verify_challenge_resource=False, connection_verify=CA)
secret = sc.get_secret(secret_name)
checks.check("SecretClient reads the seed secret", secret.name == secret_name and bool(secret.value) and len(secret.properties.version) == 32)
checks.check("SecretClient reads it by version", sc.get_secret(secret_name, secret.properties.version).value == secret.value)
names = [p.name for p in sc.list_properties_of_secrets()]
checks.check("SecretClient lists secrets", secret_name in names, names)
try:
    sc.get_secret("no-such-secret")
    checks.check("missing secret is 404 SecretNotFound", False)
except HttpResponseError as e:
    checks.check("missing secret is 404 SecretNotFound", e.status_code == 404 and e.error.code == "SecretNotFound", e)
ua_sc = SecretClient(ENV["KEYVAULT_URL"], ManagedIdentityCredential(client_id=ENV["DEVSTACK_UA_CLIENT_ID"]),
                     verify_challenge_resource=False, connection_verify=CA)
try:
    ua_sc.get_secret(secret_name)
    checks.check("user-assigned identity gets 403 ForbiddenByRbac", False)
except HttpResponseError as e:
    inner = (e.error.innererror or {}).get("code") if e.error else None
    checks.check("user-assigned identity gets 403 ForbiddenByRbac",
          e.status_code == 403 and e.error.code == "Forbidden" and inner == "ForbiddenByRbac"
          and ENV["DEVSTACK_UA_OBJECT_ID"] in e.error.message, (e.status_code, e.error.code, inner))

# --- Blob: BlobServiceClient round-trips a blob against Azurite ---
if "STORAGE_ACCOUNT_URL" in ENV:
    bsc = BlobServiceClient(ENV["STORAGE_ACCOUNT_URL"], credential=ManagedIdentityCredential(), connection_verify=CA)
    container = "conformance-" + uuid.uuid4().hex[:8]
    bsc.create_container(container)
    data = bytes(range(256)) * 64
    bsc.get_blob_client(container, "dir/round-trip.bin").upload_blob(data)
    back = bsc.get_blob_client(container, "dir/round-trip.bin").download_blob().readall()
    checks.check("BlobServiceClient round-trips a blob through Azurite (OAuth over HTTPS)", back == data)
    checks.check("BlobServiceClient lists it", [b.name for b in bsc.get_container_client(container).list_blobs()] == ["dir/round-trip.bin"])
    bsc.delete_container(container)

# --- The EasyAuth gate: 401, 403, 200 ---
whoami = ENV["APP2_BASE_URL"] + "/api/whoami"
r = requests.get(whoami, verify=CA)
checks.check("gate: no token is 401", r.status_code == 401 and "WWW-Authenticate" in r.headers, r.status_code)
r = requests.get(whoami, headers={"Authorization": f"Bearer {app2_token}"}, verify=CA)
checks.check("gate: app1's token passes and app2 sees app1", r.status_code == 200 and r.json()["object_id"] == ENV["APP1_OBJECT_ID"], r.text)
ua_token = ManagedIdentityCredential(client_id=ENV["DEVSTACK_UA_CLIENT_ID"]).get_token(APP2_RESOURCE + "/.default").token
r = requests.get(whoami, headers={"Authorization": f"Bearer {ua_token}"}, verify=CA)
checks.check("gate: an app outside allowedApplications is 403", r.status_code == 403, r.status_code)
vault_token = tokens["2019"].token
r = requests.get(whoami, headers={"Authorization": f"Bearer {vault_token}"}, verify=CA)
checks.check("gate: a token for another audience is 401", r.status_code == 401, r.status_code)
forged = base64.b64encode(json.dumps({"claims": [{"typ": "roles", "val": "App2.Access"}]}).encode()).decode()
r = requests.get(ENV["APP2_BASE_URL"] + "/api/health", headers={"X-MS-CLIENT-PRINCIPAL": forged}, verify=CA)
checks.check("gate: excluded /api/health passes without a token", r.status_code == 200, r.status_code)

# --- The trace viewer: OpenTelemetry's own OTLP/HTTP exporter, configured only
# by the standard OTEL_EXPORTER_OTLP_ENDPOINT from devstack's env ---
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind


def traced(trace_id, want):
    """The viewer's spans for trace_id, once `want` of them have arrived."""
    url = f"{ENV['DEVSTACK_TRACES_URL']}/api/traces/{trace_id}"
    for _ in range(100):
        r = requests.get(url)
        if r.status_code == 200 and len(r.json()["spans"]) >= want:
            return r.json()["spans"]
        time.sleep(0.1)
    return []


provider = TracerProvider(resource=Resource.create({"service.name": "python-conformance"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
tracer = provider.get_tracer("conformance")
with tracer.start_as_current_span("outer", kind=SpanKind.SERVER) as outer:
    with tracer.start_as_current_span("inner", kind=SpanKind.CLIENT, attributes={"http.response.status_code": 403}):
        pass
provider.force_flush()
ctx = outer.get_span_context()
trace_id = format(ctx.trace_id, "032x")
spans = {s["name"]: s for s in traced(trace_id, 2)}
checks.check("OTLPSpanExporter (protobuf) delivers to the viewer", set(spans) == {"outer", "inner"}, spans)
checks.check("the viewer keeps service, kind, parent and attributes",
      spans["inner"]["service"] == "python-conformance" and spans["inner"]["kind"] == "client"
      and spans["inner"]["parent_span_id"] == format(ctx.span_id, "016x")
      and spans["inner"]["attributes"]["http.response.status_code"] == 403, spans)

# The gate passes traceparent through, as EasyAuth does: app2's server span
# continues the caller's span.
caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
r = requests.get(whoami, verify=CA, headers={
    "Authorization": f"Bearer {app2_token}",
    "traceparent": f"00-{caller_trace}-{caller_span}-01",
})
checks.check("gate: a traced request passes", r.status_code == 200, r.status_code)
app2_spans = traced(caller_trace, 1)
checks.check("gate: app2 continues the caller's traceparent",
      any(s["service"] == "app2" and s["kind"] == "server" and s["parent_span_id"] == caller_span for s in app2_spans),
      app2_spans)

print(f"{checks.passed} passed, 0 failed")
