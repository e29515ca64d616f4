//! A refused token exchange, by Entra's AADSTS code: what the federated
//! identity credential (FIC) must say, beside what the assertion presented.

use super::{Diagnosis, Principal, TokenView, UpstreamView};
use crate::azure::federated::ExchangeError;
use crate::identity::IdentityDescription;
use crate::problem::ProblemType;
use serde_json::{Map, Value};

fn text(claims: &Map<String, Value>, name: &str) -> String {
    claims
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or("<absent>")
        .to_owned()
}

/// Whether Entra answered with `code` (in `error_codes`, or as `AADSTS<code>:`).
fn said(e: &ExchangeError, code: &str) -> bool {
    e.codes.iter().any(|c| c == code) || e.description.contains(&format!("AADSTS{code}:"))
}

/// The diagnosis of a refused exchange, if its code is one Entra documents.
pub fn explain(
    e: &ExchangeError,
    identity: IdentityDescription,
) -> Option<(ProblemType, Diagnosis)> {
    let a = &e.assertion;
    let (iss, sub, aud) = (text(a, "iss"), text(a, "sub"), text(a, "aud"));
    let tid_a = text(a, "tid");
    let oid = a
        .get("oid")
        .and_then(Value::as_str)
        .unwrap_or(&sub)
        .to_owned();
    let want_issuer = format!("https://login.microsoftonline.com/{tid_a}/v2.0");
    let (tenant, client) = (&e.federation.tenant_id, &e.federation.client_id);
    let fic = format!(
        "az ad app federated-credential create --id {client} --parameters '{{\"name\":\"app1-managed-identity\",\"issuer\":\"{want_issuer}\",\"subject\":\"{oid}\",\"audiences\":[\"{}\"]}}'",
        e.federation.audience
    );
    let list = format!(
        "az ad app federated-credential list --id {client} --query \"[].{{issuer:issuer,subject:subject,audiences:audiences}}\""
    );
    let (kind, cause, fix) = if said(e, "7002138") {
        (
            ProblemType::FicSubjectCase,
            format!(
                "App {client}'s FIC has the right subject in the wrong letter case: subjects compare case-sensitively, and the assertion presented {sub}."
            ),
            format!(
                "The FIC's subject must be this identity's object id exactly as {oid} (lower case). Recreate it: {fic}"
            ),
        )
    } else if said(e, "700213") {
        (
            ProblemType::FicSubjectMismatch,
            format!("No FIC of app {client} has the subject the assertion presented: {sub}."),
            format!(
                "The FIC's subject must be this identity's object id {oid}; the assertion presented {sub}. Check with {list}; add one with {fic}"
            ),
        )
    } else if said(e, "700212") {
        (
            ProblemType::FicAudienceMismatch,
            format!("No FIC of app {client} lists the audience the assertion presented: {aud}."),
            format!(
                "The FIC's audiences must contain {aud} (the assertion's aud, from TOKEN_EXCHANGE_AUDIENCE: {}). Check with {list}; fix with {fic}",
                e.federation.audience
            ),
        )
    } else if said(e, "700211") {
        (
            ProblemType::FicIssuerMismatch,
            format!("No FIC of app {client} has the issuer the assertion presented: {iss}."),
            format!(
                "The FIC's issuer must be {want_issuer} (this identity's tenant {tid_a}, v2); the assertion presented {iss}. Check with {list}; fix with {fic}"
            ),
        )
    } else if said(e, "70021") {
        (
            ProblemType::FicNoMatch,
            format!(
                "No FIC of app {client} matches the assertion: issuer {iss}, subject {sub}, audience {aud}."
            ),
            format!(
                "Compare each FIC with these three values ({list}): the issuer must be {want_issuer}, the subject {oid}, an audience {aud}. Add the right one with {fic}"
            ),
        )
    } else if said(e, "700016") || said(e, "7000215") {
        (
            ProblemType::PartnerNotProvisioned,
            format!(
                "App {client} does not exist in tenant {tenant}: it is not multitenant, or no admin of that tenant has provisioned (consented to) it."
            ),
            format!(
                "Make the registration multitenant (az ad app update --id {client} --sign-in-audience AzureADMultipleOrgs), then an admin of tenant {tenant} provisions it: az ad sp create --id {client} (signed in to that tenant), or opens https://login.microsoftonline.com/{tenant}/adminconsent?client_id={client}, and grants it the API's app role."
            ),
        )
    } else if said(e, "500011") {
        (
            ProblemType::PartnerNotProvisioned,
            format!(
                "Tenant {tenant} has no service principal for the requested resource: the API (or the scope's resource) is not provisioned there. Entra said: {}",
                e.description
            ),
            format!(
                "Check the API's SCOPES setting (<resource>/.default, the API's Application ID URI in tenant {tenant}); an admin of that tenant must provision the API and grant app {client} its role."
            ),
        )
    } else {
        return None;
    };
    Some((
        kind,
        Diagnosis {
            principal: Principal {
                oid: Some(oid),
                appid: a
                    .get("appid")
                    .or_else(|| a.get("azp"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                azp: a.get("azp").and_then(Value::as_str).map(str::to_owned),
                tid: Some(tid_a),
                xms_mirid: a
                    .get("xms_mirid")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                source: identity.source,
                selector: identity.selector,
                id: identity.id,
            },
            token: Some(TokenView {
                aud: Some(aud),
                iss: Some(iss),
                roles: vec![],
                exp: a.get("exp").and_then(Value::as_i64),
                ver: a.get("ver").and_then(Value::as_str).map(str::to_owned),
            }),
            upstream: UpstreamView {
                status: e.status,
                code: e
                    .codes
                    .first()
                    .map(|c| format!("AADSTS{c}"))
                    .or(e.error.clone()),
                www_authenticate: Map::new(),
                message: e.description.clone(),
            },
            cause,
            fix,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::Stage;
    use crate::configuration::Federation;
    use crate::identity::{CredentialSource, SelectorKind};
    use serde_json::json;

    const OID: &str = "2f4a9c1e-0b7d-4e8a-9f3c-5d6e7f8a9b0c";
    const TID_A: &str = "0d1e2f3a-4b5c-4d6e-8f9a-1b2c3d4e5f6a";

    fn refused(code: &str, sub: &str, iss: &str) -> ExchangeError {
        ExchangeError {
            stage: Stage::api("partner"),
            status: Some(400),
            error: Some("invalid_client".into()),
            codes: vec![code.into()],
            description: format!("AADSTS{code}: No matching federated identity record found for presented assertion."),
            federation: Federation {
                tenant_id: "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d".into(),
                client_id: "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f".into(),
                audience: "api://AzureADTokenExchange".into(),
            },
            authority: "https://login.microsoftonline.com".into(),
            assertion: json!({"iss": iss, "sub": sub, "oid": OID, "tid": TID_A, "aud": "api://AzureADTokenExchange"})
                .as_object()
                .unwrap()
                .clone(),
        }
    }

    fn ua() -> IdentityDescription {
        IdentityDescription {
            source: CredentialSource::AppService,
            selector: SelectorKind::ClientId,
            id: Some("c".into()),
        }
    }

    #[test]
    fn each_code_names_its_mismatch_with_both_values() {
        let v2 = format!("https://login.microsoftonline.com/{TID_A}/v2.0");
        let (kind, d) = explain(&refused("700213", OID, &v2), ua()).unwrap();
        assert_eq!(kind, ProblemType::FicSubjectMismatch);
        assert!(
            d.fix.contains(&format!("object id {OID}"))
                && d.fix.contains("federated-credential create")
        );
        let (kind, d) =
            explain(&refused("700211", OID, "https://sts.windows.net/x/"), ua()).unwrap();
        assert_eq!(kind, ProblemType::FicIssuerMismatch);
        assert!(
            d.fix.contains(&v2) && d.fix.contains("https://sts.windows.net/x/"),
            "{}",
            d.fix
        );
        assert_eq!(
            explain(&refused("7002138", OID, &v2), ua()).unwrap().0,
            ProblemType::FicSubjectCase
        );
        assert_eq!(
            explain(&refused("700212", OID, &v2), ua()).unwrap().0,
            ProblemType::FicAudienceMismatch
        );
        assert_eq!(
            explain(&refused("70021", OID, &v2), ua()).unwrap().0,
            ProblemType::FicNoMatch
        );
        let (kind, d) = explain(&refused("700016", OID, &v2), ua()).unwrap();
        assert_eq!(kind, ProblemType::PartnerNotProvisioned);
        assert!(d.fix.contains("adminconsent?client_id="));
        assert_eq!(d.upstream.code.as_deref(), Some("AADSTS700016"));
        assert!(explain(&refused("50000", OID, &v2), ua()).is_none());
    }
}
