//! Calls your own API (for example an App Service behind EasyAuth) with a
//! token whose audience is that API, as a user-assigned identity if you name one.
//!
//! ```text
//! API_RESOURCE=api://<api client id> API_URL=https://myapi.azurewebsites.net/api/whoami \
//!   [AZURE_CLIENT_ID=<user-assigned client id>] \
//!   cargo run -p app-service-identity --example custom_api
//! ```
//!
//! Prints the token's audience and expiry and the API's status, never the token.

use app_service_identity::{
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let resource = std::env::var("API_RESOURCE")?;
    let url = std::env::var("API_URL").ok();
    let client_id = std::env::var("AZURE_CLIENT_ID").ok();

    let mut options = ManagedIdentityCredentialOptions::default();
    options.user_assigned_id = UserAssignedId::from_settings(
        ("AZURE_CLIENT_ID", client_id.as_deref()),
        ("MANAGED_IDENTITY_OBJECT_ID", None),
        ("MANAGED_IDENTITY_RESOURCE_ID", None),
    )?;
    let credential = ManagedIdentityCredential::new(options)?;

    let provided = credential.token(&resource, None).await?;
    println!(
        "token for {resource} as {} {}: expires {}, cached {}",
        provided.identity.source,
        provided.identity.selector,
        provided.token.expires_on,
        provided.cached
    );
    if let Some(url) = url {
        let status = reqwest::Client::new()
            .get(url)
            .bearer_auth(provided.token.token.secret())
            .send()
            .await?
            .status();
        println!("the API answered {status}");
    }
    Ok(())
}
