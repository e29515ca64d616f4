//! `/api/downstream/{api}/{*path}`, `/api/token?check=<api>` and
//! `/api/whoami` against stand-in APIs: a named API reached by
//! configuration alone, its allow-list, and Graph's paging, permissions and
//! throttling.

use crate::helpers::*;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const PARTNER: &str = "api://partner-api";

async fn partner_app(api: &MockServer, extra: &[(&str, &str)]) -> TestApp {
    let base = format!("{}/v1", api.uri());
    let mut env = vec![
        ("DOWNSTREAM_APIS__PARTNER__BASE_URL", base.as_str()),
        (
            "DOWNSTREAM_APIS__PARTNER__SCOPES",
            "api://partner-api/.default",
        ),
        (
            "DOWNSTREAM_APIS__PARTNER__ALLOWED_PATHS",
            "items/*,reports/**",
        ),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(&env).await;
    tokens_for_any_resource(&app.identity).await;
    app
}

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_named_api_is_reached_by_configuration_alone() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/items/42"))
        .and(query_param("expand", "all"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(r#"{"id":42}"#, "application/json"))
        .expect(1)
        .mount(&api)
        .await;
    let app = partner_app(&api, &[]).await;
    let response = app
        .client
        .get(format!(
            "{}/api/downstream/partner/items/42?expand=all&code=fn-key-1&CODE=fn-key-2",
            app.address
        ))
        .header("x-functions-key", "fn-key-3")
        .header("authorization", "Bearer caller-token-must-not-pass")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), r#"{"id":42}"#);

    let sent = &api.received_requests().await.unwrap()[0];
    let authorization = sent.headers["authorization"].to_str().unwrap();
    let token: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            authorization
                .strip_prefix("Bearer ")
                .unwrap()
                .split('.')
                .nth(1)
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(token["aud"], PARTNER, "a token for the API's scope");
    let everything = format!("{:?} {}", sent.headers, sent.url);
    for leaked in [
        "fn-key-1",
        "fn-key-2",
        "fn-key-3",
        "caller-token-must-not-pass",
    ] {
        assert!(!everything.contains(leaked), "{leaked} reached the API");
    }
    // `**` reaches deeper paths.
    Mock::given(method("GET"))
        .and(path("/v1/reports/2026/q4"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&api)
        .await;
    assert_eq!(
        app.get("/api/downstream/partner/reports/2026/q4")
            .await
            .status(),
        204
    );
}

#[tokio::test]
async fn paths_and_methods_outside_the_allow_list_are_refused_before_any_token() {
    let api = MockServer::start().await;
    let app = partner_app(&api, &[]).await;
    for refused in [
        "/api/downstream/partner/items",
        "/api/downstream/partner/items/1/secret",
        "/api/downstream/partner/admin",
        "/api/downstream/graph/servicePrincipals",
    ] {
        let (status, body) = problem(app.get(refused).await).await;
        assert_eq!(status, 403, "{refused}: {body}");
        assert_eq!(body["type"], "TROUBLESHOOTING.md#path-not-allowed");
        assert!(
            body["detail"].as_str().unwrap().contains("__ALLOWED_PATHS"),
            "{body}"
        );
    }
    let post = app
        .client
        .post(format!("{}/api/downstream/partner/items/1", app.address))
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, body) = problem(post).await;
    assert_eq!(status, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("DOWNSTREAM_APIS__PARTNER__METHODS"),
        "{body}"
    );
    let (status, body) = problem(app.get("/api/downstream/nope/x").await).await;
    assert_eq!(status, 404);
    assert_eq!(body["type"], "TROUBLESHOOTING.md#unknown-api");
    assert!(body["detail"].as_str().unwrap().contains("partner"));
    let (status, _) = problem(app.get("/api/downstream/partner/items/..%2F..%2Fx").await).await;
    assert_eq!(status, 400);
    assert!(api.received_requests().await.unwrap().is_empty());
    assert!(
        app.identity.received_requests().await.unwrap().is_empty(),
        "no token was requested"
    );
}

#[tokio::test]
async fn a_method_the_api_allows_sends_the_body() {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/items/7"))
        .and(header("content-type", "application/json"))
        .respond_with(|req: &Request| ResponseTemplate::new(201).set_body_bytes(req.body.clone()))
        .expect(1)
        .mount(&api)
        .await;
    let app = partner_app(&api, &[("DOWNSTREAM_APIS__PARTNER__METHODS", "get,post")]).await;
    let response = app
        .client
        .post(format!("{}/api/downstream/partner/items/7", app.address))
        .header("content-type", "application/json")
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().await.unwrap(), r#"{"n":1}"#);
}

#[tokio::test]
async fn the_apis_refusal_is_a_502_naming_it_and_check_works_by_name() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/items/1"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": {"code": "Forbidden", "message": "caller lacks Items.Read"}
        })))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&api)
        .await;
    let app = partner_app(&api, &[]).await;
    let (status, body) = problem(app.get("/api/downstream/partner/items/1").await).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["stage"], "partner");
    assert_eq!(body["upstream_status"], 403);
    assert_eq!(body["type"], "TROUBLESHOOTING.md#downstream-error");
    assert!(!body.to_string().contains("SIGNATURE-MUST-NOT-LEAK"));

    // A 404 from the API's root still proves the token was accepted.
    let check: Value = app
        .get("/api/token?check=partner")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["token"]["aud"], PARTNER);
    // Its resource joined TOKEN_ALLOWED_RESOURCES by itself.
    let shown = app.get("/api/token?resource=api://partner-api").await;
    assert_eq!(shown.status(), 200);
    let (status, body) = problem(app.get("/api/token?check=nope").await).await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("partner"));
}

/// A Graph stand-in: app1's own service principal, its assignments over two
/// pages, and app2's service principal with its roles.
async fn graph(assignments_status: u16) -> MockServer {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/servicePrincipals(appId='app1-client')"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity",
            "id": SYSTEM_OID, "appId": "app1-client", "displayName": "app1",
            "servicePrincipalType": "ManagedIdentity",
            "alternativeNames": ["isExplicit=False", "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Web/sites/app1"]
        })))
        .expect(1)
        .mount(&graph)
        .await;
    let list = format!("/v1.0/servicePrincipals/{SYSTEM_OID}/appRoleAssignments");
    if assignments_status != 200 {
        Mock::given(method("GET"))
            .and(path(list))
            .respond_with(ResponseTemplate::new(assignments_status).set_body_json(json!({
                "error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}
            })))
            .mount(&graph)
            .await;
        return graph;
    }
    let next = format!("{}{list}?$skiptoken=page2", graph.uri());
    Mock::given(method("GET"))
        .and(path(list.clone()))
        .and(query_param("$skiptoken", "page2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"id": "a2", "appRoleId": "r-read", "principalId": SYSTEM_OID, "resourceId": "sp-graph",
             "resourceDisplayName": "Microsoft Graph", "createdDateTime": "2026-11-02T10:00:00Z"}
        ]})))
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path(list))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [{"id": "a1", "appRoleId": "r-access", "principalId": SYSTEM_OID, "resourceId": "sp-app2",
                       "resourceDisplayName": "app2", "createdDateTime": "2026-11-01T10:00:00Z"}],
            "@odata.nextLink": next
        })))
        .mount(&graph)
        .await;
    for (id, name, role_id, value) in [
        ("sp-app2", "app2", "r-access", "App2.Access"),
        (
            "sp-graph",
            "Microsoft Graph",
            "r-read",
            "Application.Read.All",
        ),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/servicePrincipals/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": id, "appId": format!("{id}-app"), "displayName": name,
                "appRoles": [{"id": role_id, "value": value, "displayName": value,
                              "allowedMemberTypes": ["Application"], "isEnabled": true}]
            })))
            .mount(&graph)
            .await;
    }
    graph
}

async fn graph_app(graph: &MockServer) -> TestApp {
    let base = format!("{}/v1.0", graph.uri());
    let app = spawn_app_with(&[("DOWNSTREAM_APIS__GRAPH__BASE_URL", &base)]).await;
    tokens_for_any_resource(&app.identity).await;
    app
}

#[tokio::test]
async fn whoami_resolves_every_assignment_across_pages_once_for_a_burst() {
    let graph = graph(200).await;
    let app = graph_app(&graph).await;
    let calls = (0..8).map(|_| app.get("/api/whoami"));
    let answers = futures::future::join_all(calls).await;
    let mut bodies = vec![];
    for answer in answers {
        assert_eq!(answer.status(), 200);
        bodies.push(answer.json::<Value>().await.unwrap());
    }
    let body = &bodies[0];
    assert_eq!(body["service_principal"]["id"], SYSTEM_OID);
    assert_eq!(
        body["service_principal"]["servicePrincipalType"],
        "ManagedIdentity"
    );
    assert_eq!(body["owner"]["kind"], "system_assigned");
    let roles: Vec<(&str, &str)> = body["app_role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["resource"]["display_name"].as_str().unwrap(),
                a["app_role"]["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("app2", "App2.Access"),
            ("Microsoft Graph", "Application.Read.All")
        ]
    );
    assert_eq!(
        body["app_role_assignments"][0]["created_date_time"],
        "2026-11-01T10:00:00Z"
    );
    assert!(body.get("missing_permission").is_none());
    // One Graph call per question for the whole burst (`expect(1)` on the
    // service principal is verified when the mock server drops).
    let sp_reads = graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().contains("appId="))
        .count();
    assert_eq!(sp_reads, 1);
    let again: Value = app.get("/api/whoami").await.json().await.unwrap();
    assert_eq!(again["cached"], true, "within GRAPH_CACHE_TTL_SECS");
}

#[tokio::test]
async fn whoami_without_application_read_all_says_what_is_missing() {
    let graph = graph(403).await;
    let app = graph_app(&graph).await;
    let body: Value = app.get("/api/whoami").await.json().await.unwrap();
    assert_eq!(body["service_principal"]["displayName"], "app1");
    assert!(body["app_role_assignments"].is_null());
    assert_eq!(
        body["missing_permission"]["permission"],
        "Application.Read.All"
    );
    assert_eq!(
        body["missing_permission"]["graph_code"],
        "Authorization_RequestDenied"
    );
    let grant = body["missing_permission"]["grant"].as_str().unwrap();
    assert!(
        grant.contains(SYSTEM_OID) && grant.contains("appRoleAssignments"),
        "{grant}"
    );
}

#[tokio::test]
async fn a_throttled_graph_is_retried_once_after_retry_after() {
    let graph = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/servicePrincipals(appId='app1-client')"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "0.2")
                .set_body_json(json!({"error": {"code": "TooManyRequests", "message": "Please retry again later."}})),
        )
        .up_to_n_times(1)
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/servicePrincipals(appId='app1-client')"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": SYSTEM_OID, "appId": "app1-client"})),
        )
        .mount(&graph)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/v1.0/servicePrincipals/{SYSTEM_OID}/appRoleAssignments")))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "0")
                .set_body_json(json!({"error": {"code": "TooManyRequests", "message": "Please retry again later."}})),
        )
        .mount(&graph)
        .await;
    let app = graph_app(&graph).await;
    let (status, body) = problem(app.get("/api/whoami").await).await;
    // The first 429 was retried; the list stays throttled through its one retry.
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["stage"], "graph");
    assert_eq!(body["upstream_status"], 429);
    let lists = graph
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("appRoleAssignments"))
        .count();
    assert_eq!(lists, 2, "one retry, no more");
}
