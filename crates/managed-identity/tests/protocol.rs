//! The token provider against a mock endpoint over real HTTP: request shapes per
//! source and selector, response formats, and which statuses are retried.

mod common;

use app_service_identity::*;
use azure_core::credentials::TokenCredential;
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn fast_retry() -> RetryOptions {
    RetryOptions {
        max_retries: 3,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        attempt_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(10),
    }
}

/// A source for the tests: the protocol and the environment that selects it.
struct Source(ManagedIdentitySource, Environment);

fn provider(source: Source, default: Option<UserAssignedId>) -> Arc<ManagedIdentityCredential> {
    let mut options = ManagedIdentityCredentialOptions::default();
    options.source = source.0;
    options.environment = source.1;
    options.user_assigned_id = default;
    options.retry = Some(fast_retry());
    options.cache = CacheScope::Credential;
    options.failure_memory = Duration::ZERO;
    ManagedIdentityCredential::new(options).expect("a valid test source")
}

fn app_service_at(endpoint: String) -> Source {
    Source(
        ManagedIdentitySource::AppService,
        Environment::from_vars([
            ("IDENTITY_ENDPOINT", endpoint),
            ("IDENTITY_HEADER", IDENTITY_HEADER.to_string()),
        ]),
    )
}

fn app_service(server: &MockServer) -> Source {
    app_service_at(format!("{}/msi/token", server.uri()))
}

fn legacy(server: &MockServer) -> Source {
    Source(
        ManagedIdentitySource::AppServiceLegacy,
        Environment::from_vars([
            ("MSI_ENDPOINT", format!("{}/msi/token", server.uri())),
            ("MSI_SECRET", "legacy-secret".to_string()),
        ]),
    )
}

fn ok(resource: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(token_body(resource, 3600))
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

#[tokio::test]
async fn i1_i4_scope_becomes_resource_on_2019_protocol() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/msi/token"))
        .and(query_param("api-version", "2019-08-01"))
        .and(query_param("resource", "https://vault.azure.net"))
        .and(header("X-IDENTITY-HEADER", IDENTITY_HEADER))
        .and(query_param_is_missing("client_id"))
        .respond_with(ok("https://vault.azure.net"))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(app_service(&server), None);
    let token = p
        .get_token(&["https://vault.azure.net/.default"], None)
        .await
        .unwrap();
    assert!(token.token.secret().starts_with("ey"));
}

#[tokio::test]
async fn i2_resource_is_otherwise_unchanged() {
    let server = MockServer::start().await;
    Mock::given(query_param("resource", "https://management.azure.com/"))
        .respond_with(ok("https://management.azure.com/"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(query_param("resource", "api://X"))
        .respond_with(ok("api://X"))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(app_service(&server), None);
    p.get_token(&["https://management.azure.com/"], None)
        .await
        .unwrap();
    p.get_token(&["api://X/.default"], None).await.unwrap();
}

#[tokio::test]
async fn i3_zero_or_two_scopes_fail_without_a_request() {
    let server = MockServer::start().await;
    let p = provider(app_service(&server), None);
    assert!(p.get_token(&[], None).await.is_err());
    let err = p
        .get_token(&["a/.default", "b/.default"], None)
        .await
        .unwrap_err();
    assert!(matches!(
        err.kind(),
        azure_core::error::ErrorKind::Credential
    ));
    assert!(err.to_string().contains("exactly one scope"), "{err}");
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn i5_each_selector_sends_exactly_its_parameter() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ok("r"))
        .mount(&server)
        .await;
    let rid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ua";
    let cases = [
        (None, None),
        (
            Some(UserAssignedId::ClientId(UA_CLIENT_ID.into())),
            Some(("client_id", UA_CLIENT_ID)),
        ),
        (
            Some(UserAssignedId::ObjectId(SYSTEM_OID.into())),
            Some(("object_id", SYSTEM_OID)),
        ),
        (
            Some(UserAssignedId::ResourceId(rid.into())),
            Some(("mi_res_id", rid)),
        ),
    ];
    let p = provider(app_service(&server), None);
    for (i, (id, expected)) in cases.iter().enumerate() {
        p.token("r", id.as_ref()).await.unwrap();
        let req = &requests(&server).await[i];
        let selectors: Vec<(String, String)> = req
            .url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| k != "api-version" && k != "resource")
            .collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(selectors, expected);
        assert!(!req.url.as_str().contains("msi_res_id"));
    }
}

#[tokio::test]
async fn default_identity_applies_when_none_is_named() {
    let server = MockServer::start().await;
    Mock::given(query_param("client_id", UA_CLIENT_ID))
        .respond_with(ok("r"))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(
        app_service(&server),
        Some(UserAssignedId::ClientId(UA_CLIENT_ID.into())),
    );
    let t = p.token("r", None).await.unwrap();
    assert_eq!(t.identity.selector, SelectorKind::ClientId);
}

#[tokio::test]
async fn i7_i9_legacy_protocol_and_date_expiry() {
    let server = MockServer::start().await;
    Mock::given(query_param("api-version", "2017-09-01"))
        .and(header("secret", "legacy-secret"))
        .and(query_param("clientid", UA_CLIENT_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": jwt(json!({"aud": "r"})),
            "expires_on": "1/16/2099 5:24:12 AM +00:00",
            "resource": "r", "token_type": "Bearer"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(legacy(&server), None);
    let t = p
        .token("r", Some(&UserAssignedId::ClientId(UA_CLIENT_ID.into())))
        .await
        .unwrap();
    assert_eq!(t.token.expires_on.year(), 2099);
    assert_eq!(t.identity.source, SourceKind::AppServiceLegacy);
    // The 2017 protocol cannot name an object id: refused before sending.
    let err = p
        .token("r", Some(&UserAssignedId::ObjectId(SYSTEM_OID.into())))
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::UnsupportedSelector { .. }));
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn i8_numeric_expires_on_is_accepted() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "A", "expires_on": 4102444800i64, "resource": "r", "token_type": "Bearer"
        })))
        .mount(&server)
        .await;
    let t = provider(app_service(&server), None)
        .token("r", None)
        .await
        .unwrap();
    assert_eq!(t.token.expires_on.unix_timestamp(), 4102444800);
}

#[tokio::test]
async fn i11_unusable_bodies_are_errors_and_nothing_is_cached() {
    for body in [
        json!({"expires_on": "4102444800"}).to_string(),
        json!({"access_token": "A"}).to_string(),
        "<html>gateway</html>".to_string(),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string(body.clone()))
            .expect(2)
            .mount(&server)
            .await;
        let p = provider(app_service(&server), None);
        for _ in 0..2 {
            let err = p.token("r", None).await.unwrap_err();
            assert!(
                matches!(err, IdentityError::InvalidResponse { .. }),
                "{body}: {err}"
            );
        }
    }
}

#[tokio::test]
async fn i12_one_500_then_success_takes_two_requests() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "statusCode": "500",
            "message": "An unexpected error occured while fetching the AAD Token.",
            "correlationId": "c"
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ok("r"))
        .mount(&server)
        .await;
    provider(app_service(&server), None)
        .token("r", None)
        .await
        .unwrap();
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn i14_400_is_final_and_keeps_the_platform_message() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "statusCode": 400, "message": "Unable to load the proper Managed Identity.", "correlationId": "c-9"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(app_service(&server), None);
    let err = p.get_token(&["r/.default"], None).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Unable to load the proper Managed Identity."),
        "{text}"
    );
    // The crate knows no app's docs: it classifies, and the app maps the kind.
    let kind = err.downcast_ref::<IdentityError>().map(IdentityError::kind);
    assert_eq!(kind, Some(ErrorKind::IdentityNotFound), "{text}");
    // The structured error survives the trip through azure_core::Error.
    let inner = err
        .downcast_ref::<IdentityError>()
        .expect("IdentityError inside");
    assert_eq!(inner.upstream_status(), Some(400));
}

#[tokio::test]
async fn i16_404_is_final_for_app_service_but_retried_for_imds() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let p = provider(app_service(&server), None);
    assert!(p.token("r", None).await.is_err());
    assert_eq!(requests(&server).await.len(), 1);

    let imds = MockServer::start().await;
    Mock::given(path("/metadata/identity/oauth2/token"))
        .and(header("Metadata", "true"))
        .and(query_param("api-version", "2018-02-01"))
        .respond_with(ResponseTemplate::new(404))
        .up_to_n_times(1)
        .mount(&imds)
        .await;
    Mock::given(path("/metadata/identity/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "A", "expires_in": "3599", "resource": "r", "token_type": "Bearer"
        })))
        .mount(&imds)
        .await;
    let p = provider(
        Source(
            ManagedIdentitySource::Imds,
            Environment::from_vars([("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds.uri())]),
        ),
        None,
    );
    p.token("r", None).await.unwrap();
    assert_eq!(requests(&imds).await.len(), 2);
}

#[tokio::test]
async fn other_4xx_are_never_retried() {
    for status in [401, 403, 409, 410] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(status))
            .expect(1)
            .mount(&server)
            .await;
        let err = provider(app_service(&server), None)
            .token("r", None)
            .await
            .unwrap_err();
        assert_eq!(err.upstream_status(), Some(status));
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_a_transport_error_after_retries() {
    // A port nothing listens on (wiremock pools and reuses dropped servers).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let source = app_service_at(format!("http://127.0.0.1:{port}/msi/token"));
    let err = provider(source, None).token("r", None).await.unwrap_err();
    assert!(err.is_temporary());
    assert!(
        matches!(err, IdentityError::Transport { attempts: 4, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn debug_output_hides_the_identity_header() {
    let server = MockServer::start().await;
    let text = format!("{:?}", provider(app_service(&server), None));
    assert!(!text.contains(IDENTITY_HEADER), "{text}");
}
