//! Many single resources written in one transaction, each exactly as a REST `PUT
//! [type]/[id]` (or `POST [type]` when it has no id) would write it: the bulk loader's unit
//! of work. What needs no database ([`prepare`]: validation, id, compartments, index rows)
//! runs before, on any thread; [`write_many`] then creates every new resource with one
//! multi-row INSERT per table and updates the others one by one, under the row lock.

use std::sync::Arc;

use serde_json::Value;

use super::write::{business_rules, check_id, check_type, derive, stamper, validate, write_error};
use super::{by_identifier, ApiError, Services};
use crate::access::AccessScope;
use crate::fhir::ins::{self, InsReference};
use crate::fhir::meta::{self, FirstVersion};
use crate::fhir::unique::unique_identifiers;
use crate::store::search::index::IndexRows;
use crate::store::transaction::Tx;
use crate::store::{Prepared, StoreError, WriteError, WriteMethod, WriteTarget, Written};

/// A resource ready to be written.
pub struct PreparedWrite {
    pub res_type: String,
    pub res_id: String,
    /// `Put` at the resource's own id; `Post` at a new server id when it had none.
    pub method: WriteMethod,
    resource: Value,
    patients: Vec<String>,
    index: Arc<IndexRows>,
    /// The body as a first version, rendered while preparing (off the writer's thread);
    /// used when the resource turns out to be new.
    first_version: Option<FirstVersion>,
    /// Patient references carrying only an INS: resolved by [`write_many`] in its
    /// transaction, which then derives compartments and index rows again.
    ins: Vec<InsReference>,
}

/// Checks and prepares `resource` as `PUT [type]/[its id]` would (`POST [type]` without an
/// id): a served type, a valid id, the R4 and server rules; then its compartments and index
/// rows. Errors are what the REST interaction would answer.
pub fn prepare(services: &Services, mut resource: Value) -> Result<PreparedWrite, ApiError> {
    let res_type = match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None => {
            return Err(ApiError::bad_request(
                crate::fhir::outcome::Issue::error("required", "the resource has no resourceType")
                    .at("resourceType"),
            ))
        }
    };
    check_type(&res_type)?;
    let (res_id, method) = match resource.get("id").and_then(Value::as_str) {
        Some(id) => {
            check_id(id)?;
            (id.to_string(), WriteMethod::Put)
        }
        None => (uuid::Uuid::new_v4().to_string(), WriteMethod::Post),
    };
    let issues = validate(services, &resource);
    if !issues.is_empty() {
        return Err(ApiError::with_issues(
            actix_web::http::StatusCode::BAD_REQUEST,
            issues,
        ));
    }
    business_rules(&mut resource)?;
    let ins = ins::ins_references(services.definitions, &resource);
    let (patients, index) = derive(services, &mut resource, &res_id)?;
    let first_version = FirstVersion::render(&mut resource, &res_id);
    Ok(PreparedWrite {
        res_type,
        res_id,
        method,
        resource,
        patients,
        index,
        first_version,
        ins,
    })
}

/// Writes `items` inside `tx`. New resources (ids not in the database, first occurrence in
/// `items`) are created together; the rest are updates, each in its own savepoint. Returns
/// each item's outcome, in order; an `Err` of the whole is a database failure.
pub fn write_many(
    tx: &mut Tx<'_>,
    services: &Services,
    scope: &AccessScope,
    items: &mut [PreparedWrite],
) -> Result<Vec<Result<Written, ApiError>>, StoreError> {
    let mut results: Vec<Option<Result<Written, ApiError>>> =
        (0..items.len()).map(|_| None).collect();
    attach_patients(tx, services, scope, items, &mut results)?;
    let named: Vec<(&str, &str)> = items
        .iter()
        .zip(&results)
        .filter(|(w, r)| r.is_none() && w.method == WriteMethod::Put)
        .map(|(w, _)| (w.res_type.as_str(), w.res_id.as_str()))
        .collect();
    let existing = if named.is_empty() {
        Default::default()
    } else {
        tx.existing(&named)?
    };
    // New resources, at most once each; later occurrences of an id update it.
    let mut seen = std::collections::HashSet::new();
    let mut fresh: Vec<usize> = Vec::new();
    let mut updates: Vec<usize> = Vec::new();
    for (i, w) in items.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let key = (w.res_type.clone(), w.res_id.clone());
        if !existing.contains(&key) && seen.insert(key) {
            fresh.push(i);
        } else {
            updates.push(i);
        }
    }
    for method in [WriteMethod::Post, WriteMethod::Put] {
        let group: Vec<usize> = fresh
            .iter()
            .copied()
            .filter(|&i| items[i].method == method)
            .collect();
        if group.is_empty() {
            continue;
        }
        match create_group(tx, scope, items, &group, method) {
            Ok(written) => {
                for (k, w) in written.into_iter().enumerate() {
                    results[group[k]] = Some(Ok(w));
                }
            }
            // Created meanwhile by someone else, or one resource refused: one by one.
            Err(_) => updates.extend(group),
        }
    }
    updates.sort_unstable();
    for i in updates {
        let w = &mut items[i];
        let result = tx.savepoint(|tx| write_one(tx, scope, w));
        results[i] = Some(result);
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ApiError::internal("not written"))))
        .collect())
}

/// Attaches the items whose patient is named by INS only to the Patient holding it (one of
/// `items`, else a stored one), then derives their compartments and index rows again; an
/// item whose INS no Patient holds gets its error in `results` and is not written.
fn attach_patients(
    tx: &mut Tx<'_>,
    services: &Services,
    scope: &AccessScope,
    items: &mut [PreparedWrite],
    results: &mut [Option<Result<Written, ApiError>>],
) -> Result<(), StoreError> {
    for i in 0..items.len() {
        if items[i].ins.is_empty() {
            continue;
        }
        let refs = std::mem::take(&mut items[i].ins);
        let nearby = |r: &InsReference| {
            items
                .iter()
                .find(|w| ins::holds_identifier(&w.resource, &r.system, &r.value))
                .map(|w| format!("Patient/{}", w.res_id))
        };
        let targets = match by_identifier::resolve(tx, services, scope, &refs, &nearby) {
            Ok(targets) => targets,
            Err(e) if e.status.is_server_error() => {
                return Err(StoreError::Internal(format!("{e}")))
            }
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        let w = &mut items[i];
        for (r, target) in refs.iter().zip(&targets) {
            ins::attach(&mut w.resource, r, target);
        }
        match derive(services, &mut w.resource, &w.res_id) {
            Ok((patients, index)) => {
                w.patients = patients;
                w.index = index;
                w.first_version = FirstVersion::render(&mut w.resource, &w.res_id);
            }
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    Ok(())
}

fn create_group(
    tx: &mut Tx<'_>,
    scope: &AccessScope,
    items: &mut [PreparedWrite],
    group: &[usize],
    method: WriteMethod,
) -> Result<Vec<Written>, ApiError> {
    let ids: Vec<(String, String)> = group
        .iter()
        .map(|&i| (items[i].res_type.clone(), items[i].res_id.clone()))
        .collect();
    let targets: Vec<(&str, &str)> = ids.iter().map(|(t, i)| (t.as_str(), i.as_str())).collect();
    let mut prepare = |k: usize, version: i64, last_updated: i64| -> Result<Prepared, ApiError> {
        let w = &mut items[group[k]];
        let body = match w.first_version.take() {
            Some(first) if version == 1 => first.finish(last_updated),
            _ => {
                meta::stamp(&mut w.resource, &w.res_id, version, last_updated);
                w.resource.to_string()
            }
        };
        Ok(Prepared {
            patients: w.patients.clone(),
            index: w.index.clone(),
            unique: unique_identifiers(&w.resource),
            body,
        })
    };
    let created = match method {
        WriteMethod::Post => tx.create_many(scope, &targets, &mut prepare),
        _ => tx.create_many_at(scope, &targets, &mut prepare),
    };
    created.map_err(|(_, e)| write_error(e))
}

fn write_one(
    tx: &mut Tx<'_>,
    scope: &AccessScope,
    w: &mut PreparedWrite,
) -> Result<Written, ApiError> {
    let target = WriteTarget {
        res_type: &w.res_type,
        res_id: &w.res_id,
        method: w.method,
        if_match: None,
        must_be_new: w.method == WriteMethod::Post,
        needs_current_body: false,
    };
    let mut prepare = stamper(
        &mut w.resource,
        &w.res_id,
        w.patients.clone(),
        w.index.clone(),
    );
    tx.write(scope, &target, &mut prepare)
        .map_err(|e: WriteError<ApiError>| write_error(e))
}
