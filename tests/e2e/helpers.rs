//! One devstack (with Azurite) and two host stand-ins, shared by every test in
//! this binary. They live on a runtime of their own, so each `#[tokio::test]`
//! runtime can come and go.

use devstack::host::{FunctionsHost, HostMode, HostOptions, HostShared};
use devstack::stack::{Stack, StackOptions};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub struct World {
    pub env: HashMap<String, String>,
    /// A Storage token for app1, for tests that write to Azurite directly.
    storage_token: String,
    /// app2's own port, behind the gate (for tests that bypass it).
    pub app2_direct: String,
    /// Every function and master key of both hosts: none may ever leak.
    pub keys: Vec<String>,
    pub forward: String,
    pub payload: String,
    /// host.json's own choice: proxy mode (the default teams run).
    pub proxy: String,
    pub hosts: Vec<actix_web::web::Data<HostShared>>,
}

impl World {
    pub fn get(&self, key: &str) -> &str {
        &self.env[key]
    }

    pub fn storage_token(&self) -> &str {
        &self.storage_token
    }

    /// Every line both handlers have written so far.
    pub fn console(&self) -> String {
        self.hosts
            .iter()
            .flat_map(|h| h.worker.console())
            .map(|l| l.text)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The containers these tests' handlers may reach (`BLOB_CONTAINERS`): devstack's
/// `app1-data` plus one per test, so tests never share blobs. `never-created`
/// is allowed but absent, for the 404 path.
pub const E2E_CONTAINERS: &[&str] = &[
    "app1-data",
    "e2e-forward",
    "e2e-payload",
    "e2e-proxy",
    "okay",
    "binary",
    "binary-payload",
    "interop",
    "never-created",
    "hostile",
];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let state = std::env::temp_dir().join(format!(
                    "e2e-{}-{}",
                    std::process::id(),
                    fastrand::u64(..)
                ));
                let mut options = StackOptions::new(&state);
                options.cache_dir = Some(root().join(".devstack/cache"));
                let stack = Stack::start(options).await.expect("devstack starts");
                let mut hosts = vec![];
                for mode in [HostMode::Forward, HostMode::Payload, HostMode::FromHostJson] {
                    let mut env = stack.handler_env();
                    env.push(("LOG_FORMAT".into(), "json".into()));
                    env.push(("RUST_LOG".into(), "trace".into()));
                    env.push(("MAX_BODY_BYTES".into(), (1024 * 1024).to_string()));
                    env.push(("MAX_UPLOAD_BYTES".into(), (2 * 1024 * 1024).to_string()));
                    env.retain(|(k, _)| k != "BLOB_CONTAINERS");
                    env.push(("BLOB_CONTAINERS".into(), E2E_CONTAINERS.join(",")));
                    // A second named API, by configuration alone: app2's
                    // gate again, under another name, with one allowed path.
                    let app2_scope = stack
                        .env()
                        .into_iter()
                        .find(|(k, _)| k == "APP2_RESOURCE")
                        .map(|(_, v)| format!("{v}/.default"))
                        .unwrap();
                    env.extend([
                        (
                            "DOWNSTREAM_APIS__MIRROR__BASE_URL".into(),
                            stack.gate_url.clone(),
                        ),
                        ("DOWNSTREAM_APIS__MIRROR__SCOPES".into(), app2_scope),
                        (
                            "DOWNSTREAM_APIS__MIRROR__ALLOWED_PATHS".into(),
                            "api/*".into(),
                        ),
                    ]);
                    let host = FunctionsHost::start(HostOptions {
                        app_root: root(),
                        port: 0,
                        mode,
                        enforce_keys: false,
                        executable: Some(PathBuf::from(env!("CARGO_BIN_EXE_handler"))),
                        platform_env: env,
                    })
                    .await
                    .expect("host starts");
                    assert!(host.ready(Duration::from_secs(30)).await, "handler ready");
                    hosts.push(host);
                }
                let world = World {
                    env: stack.env().into_iter().collect(),
                    storage_token: stack.identity.storage_token_for_app1(),
                    app2_direct: stack.app2_url.clone(),
                    keys: hosts
                        .iter()
                        .flat_map(|h| [h.keys().function.clone(), h.keys().master.clone()])
                        .collect(),
                    forward: hosts[0].url.clone(),
                    payload: hosts[1].url.clone(),
                    proxy: hosts[2].url.clone(),
                    hosts: hosts.iter().map(|h| h.shared.clone()).collect(),
                };
                tx.send(world).unwrap();
                // Keep everything alive for the life of the test process.
                std::future::pending::<()>().await;
                drop((stack, hosts));
            });
        });
        rx.recv_timeout(Duration::from_secs(240))
            .expect("e2e world started")
    })
}

/// Every host, labelled: proxy (host.json's choice), forward, payload.
pub fn modes() -> [(&'static str, &'static str); 3] {
    let w = world();
    [
        ("proxy", w.proxy.as_str()),
        ("forward", w.forward.as_str()),
        ("payload", w.payload.as_str()),
    ]
}

pub fn client() -> reqwest::Client {
    handler::http_client::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub struct Got {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(method: reqwest::Method, url: String, body: Option<(&str, Vec<u8>)>) -> Got {
    let mut req = client().request(method, url);
    if let Some((ct, bytes)) = body {
        req = req.header("content-type", ct).body(bytes);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Got {
        status,
        content_type,
        headers: res.headers().clone(),
        body: res.bytes().await.unwrap(),
    }
}

pub async fn get(url: String) -> Got {
    send(reqwest::Method::GET, url, None).await
}

/// A private devstack (no Azurite) and forward-mode host, for tests that
/// change the world or the handler's settings.
pub async fn private_world(extra_env: &[(&str, &str)]) -> (Stack, FunctionsHost) {
    scenario_world(None, extra_env).await
}

/// As [`private_world`], with one classic failure.
pub async fn scenario_world(
    scenario: Option<devstack::scenario::Scenario>,
    extra_env: &[(&str, &str)],
) -> (Stack, FunctionsHost) {
    scenario_world_with(scenario, extra_env, false).await
}

/// As [`scenario_world`], with Azurite when `azurite` (the flow's audit steps).
pub async fn scenario_world_with(
    scenario: Option<devstack::scenario::Scenario>,
    extra_env: &[(&str, &str)],
    azurite: bool,
) -> (Stack, FunctionsHost) {
    let state = std::env::temp_dir().join(format!(
        "e2e-private-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let mut options = StackOptions::new(&state);
    options.azurite = azurite;
    options.cache_dir = Some(root().join(".devstack/cache"));
    options.scenario = scenario;
    let stack = Stack::start(options).await.expect("devstack starts");
    let mut env = stack.handler_env();
    for (k, v) in extra_env {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    let host = FunctionsHost::start(HostOptions {
        app_root: root(),
        port: 0,
        // As host.json says: proxy mode, what the demo and Azure run.
        mode: HostMode::FromHostJson,
        enforce_keys: false,
        executable: Some(PathBuf::from(env!("CARGO_BIN_EXE_handler"))),
        platform_env: env,
    })
    .await
    .expect("host starts");
    assert!(host.ready(Duration::from_secs(30)).await);
    (stack, host)
}
