//! Conditional interactions: create with `If-None-Exist`, and update, patch and delete
//! addressed by search criteria (`PUT [type]?identifier=...`). The criteria are resolved and
//! the write done in one store transaction (`Store::conditional`), so two identical requests
//! arriving together cannot both create.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::resource::{
    answer, check_type, deletion_response, no_content, patch_preparer, patch_target, read_patch,
    resource_preparer, write_error,
};
use crate::access::{AccessScope, Operation};
use crate::fhir::search::query::SearchQuery;
use crate::fhir::transaction::Method;
use crate::http::caller::decide;
use crate::http::error::ApiError;
use crate::http::negotiate::reply_format;
use crate::http::request::{preconditions, prefer, version_header};
use crate::http::AppState;
use crate::interaction::by_identifier;
use crate::interaction::criteria::{parse_criteria, several, update_target};
use crate::interaction::write::create_only_error;
use crate::store::conditional::{ConditionalError, Resolved};
use crate::store::{Deletion, WriteMethod, WriteTarget, Written};

/// Parses conditional criteria (a query string) for `res_type`; 400 when they are invalid or
/// select nothing in particular.
pub(super) fn criteria(
    req: &HttpRequest,
    state: &AppState,
    res_type: &str,
    text: &str,
    what: &str,
) -> Result<SearchQuery, ApiError> {
    let lenient = prefer(req, "handling") == Some("lenient");
    parse_criteria(state, res_type, text, what, lenient)
}

pub(super) fn conditional_error(e: ConditionalError<ApiError>) -> ApiError {
    match e {
        ConditionalError::Search(e) => e.into(),
        ConditionalError::Failed(e) => e,
    }
}

/// What a conditional create did.
pub(super) enum Created {
    New(String, Written),
    Existing {
        res_id: String,
        version: i64,
        last_updated: i64,
        body: String,
    },
}

/// `POST [type]` with `If-None-Exist`: creates unless the criteria match one resource (then
/// returns it, 200) or several (412).
pub(super) fn create_if_none_exist(
    state: &AppState,
    scope: &AccessScope,
    criteria: &SearchQuery,
    mut resource: Value,
) -> Result<Created, ApiError> {
    let res_type = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    state
        .store
        .conditional(scope, criteria, |tx, resolved| match resolved {
            Resolved::None => {
                let id = uuid::Uuid::new_v4().to_string();
                let target = WriteTarget {
                    res_type: &res_type,
                    res_id: &id,
                    method: WriteMethod::Post,
                    if_match: None,
                    must_be_new: true,
                    needs_current_body: false,
                };
                by_identifier::attach(tx, state, scope, &mut resource)?;
                let written = {
                    let mut prepare = resource_preparer(state, &mut resource, &id)?;
                    tx.write(scope, &target, &mut prepare)
                        .map_err(write_error)?
                };
                Ok(Created::New(id, written))
            }
            Resolved::One {
                res_id,
                version,
                last_updated,
                body,
            } => Ok(Created::Existing {
                res_id,
                version,
                last_updated,
                body,
            }),
            Resolved::Many => Err(several("If-None-Exist")),
        })
        .map_err(conditional_error)
}

/// The scope of a conditional write: its criteria are a search (`s`), then it writes.
fn conditional_scope(
    req: &HttpRequest,
    operation: Operation,
    res_type: &str,
) -> Result<AccessScope, ApiError> {
    decide(req, Operation::Search, res_type)?;
    Ok(decide(req, operation, res_type)?.scope)
}

/// `PUT [type]?criteria`: updates the one match, creates when none matches, 412 for several.
pub async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let res_type = path.into_inner();
    check_type(&res_type)?;
    let criteria = criteria(
        &req,
        &state,
        &res_type,
        req.query_string(),
        "conditional update",
    )?;
    let reply = reply_format(&req, None)?;
    let create_only = preconditions(&req, Method::Put)?;
    let if_match = version_header(&req, header::IF_MATCH)?;
    let resource = super::resource::incoming_resource(&req, payload, &state, &res_type).await?;
    let body_id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let scope = conditional_scope(&req, Operation::Update, &res_type)?;
    let worker = state.clone();
    let ty = res_type.clone();
    let (id, stored) = web::block(move || {
        let mut resource = resource;
        worker
            .store
            .conditional(&scope, &criteria, |tx, resolved| {
                let (id, created_at_body_id) = update_target(&ty, resolved, body_id)?;
                let target = WriteTarget {
                    res_type: &ty,
                    res_id: &id,
                    method: WriteMethod::Put,
                    if_match,
                    must_be_new: created_at_body_id || create_only,
                    needs_current_body: false,
                };
                by_identifier::attach(tx, &worker, &scope, &mut resource)?;
                let written = {
                    let mut prepare = resource_preparer(&worker, &mut resource, &id)?;
                    tx.write(&scope, &target, &mut prepare)
                        .map_err(|e| create_only_error(create_only, &ty, &id, write_error(e)))?
                };
                Ok((id, written))
            })
            .map_err(conditional_error)
    })
    .await??;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(&req, &state, reply, status, &res_type, &id, stored))
}

/// `PATCH [type]?criteria`: patches the one match; 404 when none matches, 412 for several.
pub async fn patch(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let res_type = path.into_inner();
    check_type(&res_type)?;
    let criteria = criteria(
        &req,
        &state,
        &res_type,
        req.query_string(),
        "conditional patch",
    )?;
    let reply = reply_format(&req, None)?;
    preconditions(&req, Method::Patch)?;
    let if_match = version_header(&req, header::IF_MATCH)?;
    let patch = read_patch(&req, payload, &state).await?;
    let scope = conditional_scope(&req, Operation::Update, &res_type)?;
    let worker = state.clone();
    let ty = res_type.clone();
    let (id, stored) = web::block(move || {
        worker
            .store
            .conditional(&scope, &criteria, |tx, resolved| {
                let id = match resolved {
                    Resolved::Many => return Err(several("conditional patch")),
                    Resolved::None => {
                        return Err(ApiError::not_found(format!(
                            "conditional patch: no {ty} matches the criteria"
                        )))
                    }
                    Resolved::One { res_id, .. } => res_id,
                };
                let written = {
                    let target = patch_target(&ty, &id, if_match);
                    let mut prepare = patch_preparer(&worker, &ty, &id, &patch);
                    tx.write(&scope, &target, &mut prepare)
                        .map_err(write_error)?
                };
                Ok((id, written))
            })
            .map_err(conditional_error)
    })
    .await??;
    Ok(answer(
        &req,
        &state,
        reply,
        StatusCode::OK,
        &res_type,
        &id,
        stored,
    ))
}

/// `DELETE [type]?criteria`: deletes the one match; 204 when none matches (nothing to do),
/// 412 for several (this server deletes one resource per request).
pub async fn delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let res_type = path.into_inner();
    check_type(&res_type)?;
    let criteria = criteria(
        &req,
        &state,
        &res_type,
        req.query_string(),
        "conditional delete",
    )?;
    preconditions(&req, Method::Delete)?;
    let if_match = version_header(&req, header::IF_MATCH)?;
    let scope = conditional_scope(&req, Operation::Delete, &res_type)?;
    let worker = state.clone();
    let ty = res_type.clone();
    let (id, deletion) = web::block(move || {
        worker
            .store
            .conditional(&scope, &criteria, |tx, resolved| match resolved {
                Resolved::Many => Err(several("conditional delete")),
                Resolved::None => Ok((None, Deletion::AlreadyDeleted)),
                Resolved::One { res_id, .. } => {
                    let deletion = tx.delete(&scope, &ty, &res_id, if_match)?;
                    Ok((Some(res_id), deletion))
                }
            })
            .map_err(conditional_error)
    })
    .await??;
    match id {
        Some(id) => deletion_response(&req, &state, &res_type, &id, deletion),
        None => Ok(no_content(
            &req,
            HttpResponse::NoContent(),
            format!("no {res_type} matched the criteria; nothing was deleted"),
        )),
    }
}
