//! Who signed in, as FHIR knows them: a professional is the Practitioner holding their
//! national identifier (created from the claims at first sign-in when the operator allows
//! it), a patient the Patient holding their INS (never created: records exist before their
//! owner first signs in).

use serde_json::{json, Map, Value};

use crate::access::AccessScope;
use crate::config::IdentityProvider;
use crate::interaction::criteria::parse_criteria;
use crate::interaction::write::store_resource;
use crate::interaction::Services;
use crate::store::search::SearchRequest;
use crate::store::WriteMethod;

/// The code system of professions (TRE_G15), for a profession claim without a system.
const PROFESSIONS: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante";

/// Why a person cannot go on; shown to them.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(pub String);

/// A person who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// `Practitioner/ID` or `Patient/ID`.
    pub fhir_user: String,
    /// The national identifier, `system|value` (for the operator's log, never for apps).
    pub subject: String,
}

/// The text of claim `name` (a string, a number, or the first string of an array).
fn claim_text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => items.iter().find_map(|i| i.as_str().map(str::to_string)),
        _ => None,
    }
}

/// The one resource of `res_type` holding `system|value`, if any.
pub fn find_by_identifier(
    services: &Services,
    res_type: &str,
    system: &str,
    value: &str,
) -> Result<Option<String>, IdentityError> {
    let criteria = serde_urlencoded::to_string([("identifier", format!("{system}|{value}"))])
        .map_err(|e| IdentityError(e.to_string()))?;
    let query = parse_criteria(services, res_type, &criteria, "sign-in", false)
        .map_err(|e| IdentityError(e.to_string()))?;
    let page = services
        .store
        .search(
            &AccessScope::everything(),
            &SearchRequest {
                query: &query,
                compartment: None,
                count: 2,
                cursor: None,
                max_included: 0,
            },
        )
        .map_err(|e| IdentityError(format!("the record cannot be searched: {e}")))?;
    match page.matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.res_id.clone())),
        _ => Err(IdentityError(format!(
            "several {res_type} resources hold the identifier {value}; the operator must \
             merge them before you can sign in"
        ))),
    }
}

/// The FHIR identity of the person `claims` describe.
pub fn resolve(
    services: &Services,
    provider: &IdentityProvider,
    claims: &Map<String, Value>,
) -> Result<Person, IdentityError> {
    let value = claim_text(claims, &provider.identifier_claim).ok_or_else(|| {
        IdentityError(format!(
            "{} did not give your national identifier (claim {}); this server cannot tell \
             who you are",
            provider.name, provider.identifier_claim
        ))
    })?;
    let system = &provider.identifier_system;
    let subject = format!("{system}|{value}");
    let res_type = if provider.signs_in == "patient" {
        "Patient"
    } else {
        "Practitioner"
    };
    if let Some(id) = find_by_identifier(services, res_type, system, &value)? {
        return Ok(Person {
            fhir_user: format!("{res_type}/{id}"),
            subject,
        });
    }
    if res_type == "Patient" {
        return Err(IdentityError(format!(
            "no record holds your identifier ({value}); a record is opened by your care \
             provider or health insurer before you can sign in"
        )));
    }
    if !provider.auto_provision {
        return Err(IdentityError(format!(
            "no professional with the identifier {value} is known here, and this server does \
             not register professionals at their first sign-in: ask its operator"
        )));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut practitioner = json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": system, "value": value}],
        "active": true,
    });
    let family = claim_text(claims, "family_name");
    let given = claim_text(claims, "given_name");
    if family.is_some() || given.is_some() {
        let mut name = Map::new();
        if let Some(family) = family {
            name.insert("family".into(), family.into());
        }
        if let Some(given) = given {
            name.insert("given".into(), json!([given]));
        }
        practitioner["name"] = json!([name]);
    }
    if let Some(profession) = provider
        .profession_claim
        .as_deref()
        .and_then(|c| claim_text(claims, c))
    {
        // `code^oid` as Pro Santé Connect writes it, or a bare code of TRE_G15.
        let (code, system) = match profession.split_once('^') {
            Some((code, oid)) => (code.to_string(), format!("urn:oid:{oid}")),
            None => (profession, PROFESSIONS.to_string()),
        };
        practitioner["qualification"] =
            json!([{"code": {"coding": [{"system": system, "code": code}]}}]);
    }
    store_resource(
        services,
        &AccessScope::everything(),
        practitioner,
        &id,
        WriteMethod::Post,
        None,
        false,
    )
    .map_err(|e| IdentityError(format!("your professional record cannot be created: {e}")))?;
    log::info!("registered Practitioner/{id} at the first sign-in of {subject}");
    Ok(Person {
        fhir_user: format!("Practitioner/{id}"),
        subject,
    })
}
