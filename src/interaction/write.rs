//! Write preparation: what every written resource goes through, whether it came as a REST
//! create, update or patch, a Bundle entry or a line of a bulk load: the R4 definitions' rules
//! and the server's, its id and `meta` stamped, its patient compartments and its search index
//! rows computed, then the store's write.

use std::sync::Arc;

use actix_web::http::StatusCode;
use serde_json::Value;

use super::{by_identifier, ApiError, Services};
use crate::access::AccessScope;
use crate::fhir::outcome::Issue;
use crate::fhir::patch::JsonPatch;
use crate::fhir::search;
use crate::fhir::unique::unique_identifiers;
use crate::fhir::{compartment, ins, json, measures, meta, served, validate};
use crate::store::search::index::IndexRows;
use crate::store::{Prepared, Prior, WriteError, WriteMethod, WriteTarget, Written};

pub fn check_type(res_type: &str) -> Result<(), ApiError> {
    if served::is_served(res_type) {
        Ok(())
    } else if let Some(why) = served::refusal(res_type) {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Issue::error(
                "not-supported",
                format!("this server does not store {res_type} resources: {why}"),
            ),
        ))
    } else {
        Err(ApiError::not_found(format!(
            "{res_type:?} is not an R4 resource type; this server serves every R4 type but {}",
            served::refused_types()
                .iter()
                .map(|(ty, _)| *ty)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

pub fn check_id(id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(Issue::error(
            "value",
            format!("{id:?} is not a valid resource id: 1 to 64 characters among A-Z a-z 0-9 - ."),
        )))
    }
}

pub fn check_version(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::not_found(format!(
            "{text:?} is not a version id of this server (1, 2, 3, ...)"
        ))
    })
}

/// The problems of a resource about to be written: the R4 definitions' rules, then this
/// server's (a SearchParameter must be one it can index).
pub fn validate(services: &Services, resource: &Value) -> Vec<Issue> {
    let issues = validate::validate_resource(services.definitions, resource);
    if !issues.is_empty() || resource["resourceType"] != "SearchParameter" {
        return issues;
    }
    match search::custom::definitions(resource, &services.search.current()) {
        Ok(_) => Vec::new(),
        Err(issues) => issues,
    }
}

/// The server's business rules on a resource that passed [`validate`]: the Mesures de santé
/// rules of an Observation claiming one of its profiles (`fhir::measures`), which may convert
/// its value to the profile's unit. 422 naming the element; the resource is then not stored.
pub fn business_rules(resource: &mut Value) -> Result<(), ApiError> {
    let issues = measures::check_and_convert(resource);
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ApiError::with_issues(
            StatusCode::UNPROCESSABLE_ENTITY,
            issues,
        ))
    }
}

/// The search index rows of a validated resource; failing here is a defect, not bad input.
pub fn index_rows(services: &Services, resource: &Value) -> Result<IndexRows, ApiError> {
    let params = services.search.current();
    let entries = search::index_entries(&params, resource, &services.base_url)
        .map_err(|e| ApiError::internal(format!("indexing failed: {e}")))?;
    let res_type = resource["resourceType"].as_str().unwrap_or_default();
    Ok(services.store.index_rows(res_type, &entries)?)
}

/// Stamps `resource` (validated) with its id and the server's metadata and writes it;
/// `create_only` (an update with `If-None-Match: *`) refuses to overwrite.
pub fn store_resource(
    services: &Services,
    scope: &AccessScope,
    mut resource: Value,
    res_id: &str,
    method: WriteMethod,
    if_match: Option<i64>,
    create_only: bool,
) -> Result<Written, ApiError> {
    let res_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let target = WriteTarget {
        res_type: &res_type,
        res_id,
        method,
        if_match,
        must_be_new: method == WriteMethod::Post || create_only,
        needs_current_body: false,
    };
    let refused = |e| create_only_error(create_only, &res_type, res_id, write_error(e));
    if ins::ins_references(services.definitions, &resource).is_empty() {
        let mut prepare = resource_preparer(services, &mut resource, res_id)?;
        return services
            .store
            .write(scope, &target, &mut prepare)
            .map_err(refused);
    }
    // A patient named by INS only: found, and the resource written, in one transaction.
    services.store.transaction(|tx| {
        by_identifier::attach(tx, services, scope, &mut resource)?;
        let mut prepare = resource_preparer(services, &mut resource, res_id)?;
        tx.write(scope, &target, &mut prepare).map_err(refused)
    })
}

/// An update that had to create (`If-None-Match: *`) found the resource: that is the failed
/// precondition of the request (412), not a conflict between writers.
pub fn create_only_error(
    create_only: bool,
    res_type: &str,
    res_id: &str,
    error: ApiError,
) -> ApiError {
    if create_only && error.status == StatusCode::CONFLICT && !error.transient {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            Issue::error(
                "duplicate",
                format!("{res_type}/{res_id} already exists (If-None-Match: *)"),
            ),
        )
    } else {
        error
    }
}

/// What a write of the validated `resource` at `res_id` stores, once the store gives it its
/// version and timestamp: the stamped body, its compartments and its search values.
pub fn resource_preparer<'a>(
    services: &'a Services,
    resource: &'a mut Value,
    res_id: &'a str,
) -> Result<impl FnMut(Prior<'_>, i64, i64) -> Result<Prepared, ApiError> + 'a, ApiError> {
    let (patients, index) = derive(services, resource, res_id)?;
    Ok(stamper(resource, res_id, patients, index))
}

/// Sets the id of the validated `resource` and computes what its write stores besides the
/// body: its patient compartments and its search index rows.
// Indexed before the write: the store stamps only the version and timestamp, which no
// indexed parameter reads, and the SQLite writer should not wait for the extraction.
pub fn derive(
    services: &Services,
    resource: &mut Value,
    res_id: &str,
) -> Result<(Vec<String>, Arc<IndexRows>), ApiError> {
    meta::set_id(resource, res_id);
    let patients =
        compartment::patient_compartments(services.definitions, resource, &services.base_url);
    let index = Arc::new(index_rows(services, resource)?);
    Ok((patients, index))
}

/// The `prepare` of a write of `resource` (with what [`derive`] computed): stamps the version
/// and timestamp the store assigns and serialises once.
pub fn stamper<'a>(
    resource: &'a mut Value,
    res_id: &'a str,
    patients: Vec<String>,
    index: Arc<IndexRows>,
) -> impl FnMut(Prior<'_>, i64, i64) -> Result<Prepared, ApiError> + 'a {
    move |_: Prior<'_>, version: i64, last_updated: i64| {
        meta::stamp(resource, res_id, version, last_updated);
        Ok(Prepared {
            patients: patients.clone(),
            index: index.clone(),
            unique: unique_identifiers(resource),
            body: resource.to_string(),
        })
    }
}

pub fn write_error(e: WriteError<ApiError>) -> ApiError {
    match e {
        WriteError::Store(e) => e.into(),
        WriteError::Rejected(e) => e,
    }
}

/// Applies the patch to the current version under the write's row lock, so that no other
/// writer can slip in between reading and writing.
pub fn patch_resource(
    services: &Services,
    scope: &AccessScope,
    res_type: &str,
    res_id: &str,
    patch: JsonPatch,
    if_match: Option<i64>,
) -> Result<Written, ApiError> {
    let target = patch_target(res_type, res_id, if_match);
    let mut prepare = patch_preparer(services, res_type, res_id, &patch);
    services
        .store
        .write(scope, &target, &mut prepare)
        .map_err(write_error)
}

pub fn patch_target<'a>(
    res_type: &'a str,
    res_id: &'a str,
    if_match: Option<i64>,
) -> WriteTarget<'a> {
    WriteTarget {
        res_type,
        res_id,
        method: WriteMethod::Patch,
        if_match,
        must_be_new: false,
        needs_current_body: true,
    }
}

/// The patched, validated, stamped new version, from the current one seen under the lock.
pub fn patch_preparer<'a>(
    services: &'a Services,
    res_type: &'a str,
    res_id: &'a str,
    patch: &'a JsonPatch,
) -> impl FnMut(Prior<'_>, i64, i64) -> Result<Prepared, ApiError> + 'a {
    move |prior: Prior<'_>, version: i64, last_updated: i64| {
        let body = match prior {
            Prior::Absent => {
                return Err(ApiError::not_found(format!(
                    "{res_type}/{res_id} does not exist"
                )))
            }
            Prior::Deleted => {
                return Err(ApiError::gone(format!("{res_type}/{res_id} was deleted")))
            }
            Prior::Live(body) => body.unwrap_or_default(),
        };
        let current = json::parse_strict(body.as_bytes()).map_err(|e| {
            ApiError::internal(format!(
                "stored {res_type}/{res_id} is unreadable: {}",
                e.diagnostics
            ))
        })?;
        let mut patched = patch
            .apply(&current)
            .map_err(|issue| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, issue))?;
        let issues = validate(services, &patched);
        if !issues.is_empty() {
            return Err(ApiError::with_issues(
                StatusCode::UNPROCESSABLE_ENTITY,
                issues,
            ));
        }
        business_rules(&mut patched)?;
        let patients =
            compartment::patient_compartments(services.definitions, &patched, &services.base_url);
        meta::stamp(&mut patched, res_id, version, last_updated);
        Ok(Prepared {
            patients,
            index: Arc::new(index_rows(services, &patched)?),
            unique: unique_identifiers(&patched),
            body: patched.to_string(),
        })
    }
}
