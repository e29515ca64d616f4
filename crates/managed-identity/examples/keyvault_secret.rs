//! Reads a Key Vault secret with the official client, authenticated by the
//! app's managed identity.
//!
//! ```text
//! KEYVAULT_URL=https://myvault.vault.azure.net SECRET_NAME=my-secret \
//!   cargo run -p app-service-identity --example keyvault_secret
//! ```
//!
//! Run it where a managed identity exists (App Service, Functions, or a local
//! devstack: `source .devstack/env`). It prints the secret's version, never
//! its value.

use app_service_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions};
use azure_security_keyvault_secrets::SecretClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let vault = std::env::var("KEYVAULT_URL")?;
    let name = std::env::var("SECRET_NAME").unwrap_or_else(|_| "app1-demo-secret".into());

    // Fails here, with a reason, if this environment has no usable identity.
    let credential = ManagedIdentityCredential::new(ManagedIdentityCredentialOptions::default())?;
    let client = SecretClient::new(&vault, credential.clone(), None)?;

    let secret = client.get_secret(&name, None).await?.into_model()?;
    let version = secret.id.as_deref().and_then(|id| id.rsplit('/').next());
    println!("{name}: version {}", version.unwrap_or("?"));
    Ok(())
}
