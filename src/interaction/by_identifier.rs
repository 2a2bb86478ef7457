//! Patients referred to by INS: a resource whose patient reference carries only an INS
//! identifier (`subject.identifier`, as the French feeds send it) is attached to the Patient
//! holding that identifier: the literal reference is added (the identifier kept) before its
//! compartments and index rows are computed, so it lands in the patient's record. An INS that
//! no Patient holds is a 422 naming it, and nothing is stored. The lookup runs in the write's
//! own database transaction; every door (REST, conditional interactions, Bundle entries,
//! `carnet import`) goes through [`resolve`].

use std::collections::HashMap;

use actix_web::http::StatusCode;
use serde_json::Value;

use super::criteria::parse_criteria;
use super::{ApiError, Services};
use crate::access::AccessScope;
use crate::fhir::ins::{self, InsReference};
use crate::fhir::outcome::Issue;
use crate::store::transaction::{Resolved, Tx};

/// The Patient (`Patient/id`) of each of `refs`, in order: the one `nearby` names (a Patient
/// written by the same Bundle or batch), else the one stored that holds the identifier.
pub fn resolve(
    tx: &mut Tx<'_>,
    services: &Services,
    scope: &AccessScope,
    refs: &[InsReference],
    nearby: &dyn Fn(&InsReference) -> Option<String>,
) -> Result<Vec<String>, ApiError> {
    let mut known: HashMap<String, String> = HashMap::new();
    let mut targets = Vec::with_capacity(refs.len());
    for r in refs {
        let token = r.token();
        if let Some(target) = known.get(&token) {
            targets.push(target.clone());
            continue;
        }
        let target = match nearby(r) {
            Some(target) => target,
            None => stored_holder(tx, services, scope, r)?,
        };
        known.insert(token, target.clone());
        targets.push(target);
    }
    Ok(targets)
}

/// Finds the INS-only patient references of `resource` and attaches them, inside `tx`.
pub fn attach(
    tx: &mut Tx<'_>,
    services: &Services,
    scope: &AccessScope,
    resource: &mut Value,
) -> Result<(), ApiError> {
    let refs = ins::ins_references(services.definitions, resource);
    if refs.is_empty() {
        return Ok(());
    }
    let targets = resolve(tx, services, scope, &refs, &|_| None)?;
    for (r, target) in refs.iter().zip(&targets) {
        ins::attach(resource, r, target);
    }
    Ok(())
}

fn stored_holder(
    tx: &mut Tx<'_>,
    services: &Services,
    scope: &AccessScope,
    r: &InsReference,
) -> Result<String, ApiError> {
    let token = r.token();
    let text = serde_urlencoded::to_string([("identifier", token.as_str())])
        .map_err(|e| ApiError::internal(format!("encoding {token}: {e}")))?;
    let criteria = parse_criteria(services, "Patient", &text, "INS reference", false)?;
    let at = format!("{}.identifier", r.expression);
    match tx.resolve(scope, &criteria)? {
        Resolved::One { res_id, .. } => Ok(format!("Patient/{res_id}")),
        Resolved::None => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Issue::error(
                "not-found",
                format!(
                    "{at}: no Patient holds the INS {token}; create the Patient first (or in \
                     the same transaction), or refer to it by id"
                ),
            )
            .at(at.clone()),
        )),
        Resolved::Many => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Issue::error(
                "multiple-matches",
                format!("{at}: several Patients hold the INS {token}; refer to one by id"),
            )
            .at(at.clone()),
        )),
    }
}
