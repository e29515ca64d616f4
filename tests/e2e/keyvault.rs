//! Key Vault behaviour that needs its own world: the secret cache and the
//! challenge-resource check.

use crate::helpers::*;
use devstack::world::VaultRole;
use std::time::Duration;

#[tokio::test]
async fn cached_secret_is_dropped_when_key_vault_starts_refusing() {
    let (stack, host) = private_world(&[("SECRET_CACHE_TTL_SECS", "1")]).await;
    let url = format!("{}/api/secrets/{}", host.url, stack.seed_secret);
    let first = get(url.clone()).await;
    assert_eq!(
        (first.status, first.json()["cached"].clone()),
        (200, serde_json::json!(false))
    );
    assert_eq!(
        get(url.clone()).await.json()["cached"],
        true,
        "served from the cache within the TTL"
    );

    // Revoke app1's role; once the copy is stale, Key Vault's 403 is what the caller sees.
    let oid = stack.world.read().unwrap().app1.object_id.clone();
    stack
        .world
        .write()
        .unwrap()
        .vault_role_assignments
        .retain(|(o, _)| *o != oid);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let denied = get(url.clone()).await;
    assert_eq!(denied.status, 502, "{}", denied.text());
    assert_eq!(denied.json()["upstream_status"], 403);
    assert_eq!(
        get(url.clone()).await.status,
        502,
        "the old copy is not served again"
    );

    // Restore it: the next read goes to Key Vault, not to a stale entry.
    stack
        .world
        .write()
        .unwrap()
        .vault_role_assignments
        .push((oid, VaultRole::SecretsUser));
    let again = get(url).await;
    assert_eq!(
        (again.status, again.json()["cached"].clone()),
        (200, serde_json::json!(false))
    );
    host.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn challenge_resource_verification_is_on_unless_relaxed() {
    // Without the test-only relaxation, a vault at 127.0.0.1 fails the SDK's check.
    let (stack, host) = private_world(&[("KEYVAULT_SKIP_CHALLENGE_RESOURCE_CHECK", "false")]).await;
    let got = get(format!("{}/api/secrets/{}", host.url, stack.seed_secret)).await;
    assert!(matches!(got.status, 502 | 503), "{}", got.text());
    assert_eq!(got.json()["stage"], "keyvault");
    assert!(got.text().contains("challenge resource"), "{}", got.text());
    host.stop().await;
    stack.stop().await;
}
