//! Instance and type interactions on one resource: create, read, vread, update, patch, delete.
//! Binary also travels raw, in its own content type.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};

use super::conditional::Created;
use crate::access::AccessScope;
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::patch::JsonPatch;
use std::sync::Arc;

use crate::fhir::search;
use crate::fhir::{compartment, json, meta, served, validate};
use crate::http::error::ApiError;
use crate::http::negotiate::{
    body_kind, reply_format, unsupported, wants_binary_resource, Body, Reply,
};
use crate::http::request::{prefer_return, read_body, version_header, Params, Return};
use crate::http::response::{versioned, written, VersionInfo};
use crate::http::AppState;
use crate::store::search::index::IndexRows;
use crate::store::{
    Deletion, Prepared, Prior, Store, StoreError, WriteError, WriteMethod, WriteTarget, Written,
};

/// The caller's scope. Until authorization exists every request may touch everything.
pub(super) fn scope(_req: &HttpRequest) -> AccessScope {
    AccessScope::Everything
}

pub(super) fn check_type(res_type: &str) -> Result<(), ApiError> {
    if served::is_served(res_type) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "unknown or unsupported resource type {res_type:?}; this server serves: {}",
            served::served_types().join(", ")
        )))
    }
}

pub(super) fn check_id(id: &str) -> Result<(), ApiError> {
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

pub(super) fn check_version(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::not_found(format!(
            "{text:?} is not a version id of this server (1, 2, 3, ...)"
        ))
    })
}

/// Parses and validates a body as a resource of `res_type`; 400 naming every problem.
pub(super) fn parse_resource(
    state: &AppState,
    bytes: &[u8],
    res_type: &str,
) -> Result<Value, ApiError> {
    let resource = json::parse_resource(bytes).map_err(ApiError::bad_request)?;
    let sent_type = resource["resourceType"].as_str().unwrap_or("");
    if sent_type != res_type {
        return Err(ApiError::bad_request(
            Issue::error(
                "invalid",
                format!("the body is a {sent_type} but the URL addresses {res_type}"),
            )
            .at("resourceType"),
        ));
    }
    let issues = validate(state, &resource);
    if issues.is_empty() {
        Ok(resource)
    } else {
        Err(ApiError::with_issues(StatusCode::BAD_REQUEST, issues))
    }
}

/// The problems of a resource about to be written: the R4 definitions' rules, then this
/// server's (a SearchParameter must be one it can index).
pub(super) fn validate(state: &AppState, resource: &Value) -> Vec<Issue> {
    let issues = validate::validate_resource(state.definitions, resource);
    if !issues.is_empty() || resource["resourceType"] != "SearchParameter" {
        return issues;
    }
    match search::custom::definitions(resource, &state.search.current()) {
        Ok(_) => Vec::new(),
        Err(issues) => issues,
    }
}

/// A Binary sent in its own content type, turned into the resource that stores it.
fn binary_from_raw(req: &HttpRequest, content_type: &str, bytes: &[u8]) -> Value {
    let mut binary = json!({
        "resourceType": "Binary",
        "contentType": content_type,
    });
    if let Some(context) = req
        .headers()
        .get("X-Security-Context")
        .and_then(|v| v.to_str().ok())
    {
        binary["securityContext"] = json!({ "reference": context });
    }
    if !bytes.is_empty() {
        binary["data"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    binary
}

/// Reads the body of a create or update as a resource of `res_type`.
pub(super) async fn incoming_resource(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    res_type: &str,
) -> Result<Value, ApiError> {
    let kind = body_kind(req)?;
    let bytes = read_body(req, payload, state.max_body_bytes).await?;
    match kind {
        Body::FhirJson => parse_resource(state, &bytes, res_type),
        Body::Other(content_type) if res_type == "Binary" => {
            let binary = binary_from_raw(req, &content_type, &bytes);
            let issues = validate(state, &binary);
            if issues.is_empty() {
                Ok(binary)
            } else {
                Err(ApiError::with_issues(StatusCode::BAD_REQUEST, issues))
            }
        }
        Body::JsonPatch => Err(unsupported("a JSON Patch body is only accepted with PATCH")),
        Body::Other(content_type) => Err(unsupported(&format!(
            "Content-Type {content_type} is not accepted for {res_type}; send application/fhir+json"
        ))),
    }
}

/// The answer to a committed write: `status`, the version headers, `Location`, and the body
/// that `Prefer: return` asks for (after [`AppState::after_write`]).
pub(super) fn answer(
    req: &HttpRequest,
    state: &AppState,
    reply: Reply,
    status: StatusCode,
    res_type: &str,
    res_id: &str,
    stored: Written,
) -> HttpResponse {
    state.after_write(res_type, Some(&stored.body));
    let info = VersionInfo {
        res_type,
        res_id,
        version: stored.version,
        last_updated: stored.last_updated,
    };
    written(
        status,
        &info,
        &state.base_url,
        reply,
        prefer_return(req),
        stored.body,
    )
}

/// The search index rows of a validated resource; failing here is a defect, not bad input.
fn index_rows(state: &AppState, resource: &Value) -> Result<IndexRows, ApiError> {
    let params = state.search.current();
    let entries = search::index_entries(&params, resource, &state.base_url)
        .map_err(|e| ApiError::internal(format!("indexing failed: {e}")))?;
    let res_type = resource["resourceType"].as_str().unwrap_or_default();
    Ok(state.store.index_rows(res_type, &entries)?)
}

/// Stamps `resource` (validated) with its id and the server's metadata and writes it.
fn store_resource(
    state: &AppState,
    scope: &AccessScope,
    mut resource: Value,
    res_id: &str,
    method: WriteMethod,
    if_match: Option<i64>,
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
        must_be_new: method == WriteMethod::Post,
        needs_current_body: false,
    };
    let mut prepare = resource_preparer(state, &mut resource, res_id)?;
    state
        .store
        .write(scope, &target, &mut prepare)
        .map_err(write_error)
}

/// What a write of the validated `resource` at `res_id` stores, once the store gives it its
/// version and timestamp: the stamped body, its compartments and its search values.
pub(super) fn resource_preparer<'a>(
    state: &'a AppState,
    resource: &'a mut Value,
    res_id: &'a str,
) -> Result<impl FnMut(Prior<'_>, i64, i64) -> Result<Prepared, ApiError> + 'a, ApiError> {
    let (patients, index) = derive(state, resource, res_id)?;
    Ok(stamper(resource, res_id, patients, index))
}

/// Sets the id of the validated `resource` and computes what its write stores besides the
/// body: its patient compartments and its search index rows.
// Indexed before the write: the store stamps only the version and timestamp, which no
// indexed parameter reads, and the SQLite writer should not wait for the extraction.
pub(super) fn derive(
    state: &AppState,
    resource: &mut Value,
    res_id: &str,
) -> Result<(Vec<String>, Arc<IndexRows>), ApiError> {
    meta::set_id(resource, res_id);
    let patients = compartment::patient_compartments(state.definitions, resource, &state.base_url);
    let index = Arc::new(index_rows(state, resource)?);
    Ok((patients, index))
}

/// The `prepare` of a write of `resource` (with what [`derive`] computed): stamps the version
/// and timestamp the store assigns and serialises once.
pub(super) fn stamper<'a>(
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
            body: resource.to_string(),
        })
    }
}

pub(super) fn write_error(e: WriteError<ApiError>) -> ApiError {
    match e {
        WriteError::Store(e) => e.into(),
        WriteError::Rejected(e) => e,
    }
}

pub async fn create(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let res_type = path.into_inner();
    check_type(&res_type)?;
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &[])?;
    let reply = reply_format(&req, params.get("_format"))?;
    let if_none_exist = match req.headers().get("If-None-Exist") {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::bad_request(Issue::error(
                    "invalid",
                    "If-None-Exist is not readable text",
                ))
            })?;
            Some(super::conditional::criteria(
                &req,
                &state,
                &res_type,
                text,
                "If-None-Exist",
            )?)
        }
        None => None,
    };
    let resource = incoming_resource(&req, payload, &state, &res_type).await?;
    if let Some(criteria) = if_none_exist {
        let worker = state.clone();
        let scope = scope(&req);
        let created = web::block(move || {
            super::conditional::create_if_none_exist(&worker, &scope, &criteria, resource)
        })
        .await??;
        let (status, id, version, last_updated, body) = match created {
            Created::New(id, stored) => {
                state.after_write(&res_type, Some(&stored.body));
                (
                    StatusCode::CREATED,
                    id,
                    stored.version,
                    stored.last_updated,
                    stored.body,
                )
            }
            Created::Existing {
                res_id,
                version,
                last_updated,
                body,
            } => (StatusCode::OK, res_id, version, last_updated, body),
        };
        let info = VersionInfo {
            res_type: &res_type,
            res_id: &id,
            version,
            last_updated,
        };
        return Ok(written(
            status,
            &info,
            &state.base_url,
            reply,
            prefer_return(&req),
            body,
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let scope = scope(&req);
    let worker = state.clone();
    let res_id = id.clone();
    let stored = web::block(move || {
        store_resource(&worker, &scope, resource, &res_id, WriteMethod::Post, None)
    })
    .await??;
    Ok(answer(
        &req,
        &state,
        reply,
        StatusCode::CREATED,
        &res_type,
        &id,
        stored,
    ))
}

pub async fn update(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (res_type, res_id) = path.into_inner();
    check_type(&res_type)?;
    check_id(&res_id)?;
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &[])?;
    let reply = reply_format(&req, params.get("_format"))?;
    let if_match = version_header(&req, header::IF_MATCH)?;
    let mut resource = incoming_resource(&req, payload, &state, &res_type).await?;
    match resource.get("id").and_then(Value::as_str) {
        Some(id) if id == res_id => {}
        Some(id) => {
            return Err(ApiError::bad_request(
                Issue::error(
                    "invalid",
                    format!("the body has id {id:?} but the URL says {res_id:?}"),
                )
                .at(format!("{res_type}.id")),
            ))
        }
        // A raw Binary carries no id; the URL gives it.
        None if res_type == "Binary" && !is_json(&req) => meta::set_id(&mut resource, &res_id),
        None => {
            return Err(ApiError::bad_request(
                Issue::error(
                    "required",
                    format!("an update must carry the id of the URL ({res_id:?}) in the body"),
                )
                .at(format!("{res_type}.id")),
            ))
        }
    }
    let scope = scope(&req);
    let worker = state.clone();
    let id = res_id.clone();
    let stored = web::block(move || {
        store_resource(&worker, &scope, resource, &id, WriteMethod::Put, if_match)
    })
    .await??;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(
        &req, &state, reply, status, &res_type, &res_id, stored,
    ))
}

fn is_json(req: &HttpRequest) -> bool {
    matches!(body_kind(req), Ok(Body::FhirJson))
}

pub async fn patch(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (res_type, res_id) = path.into_inner();
    check_type(&res_type)?;
    check_id(&res_id)?;
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &[])?;
    let reply = reply_format(&req, params.get("_format"))?;
    let if_match = version_header(&req, header::IF_MATCH)?;
    let patch = read_patch(&req, payload, &state).await?;
    let scope = scope(&req);
    let worker = state.clone();
    let (ty, id) = (res_type.clone(), res_id.clone());
    let stored =
        web::block(move || patch_resource(&worker, &scope, &ty, &id, patch, if_match)).await??;
    Ok(answer(
        &req,
        &state,
        reply,
        StatusCode::OK,
        &res_type,
        &res_id,
        stored,
    ))
}

/// The JSON Patch document of a PATCH body, parsed once, before any row is locked; a body of
/// another type is a 415, a malformed patch a 400.
pub(super) async fn read_patch(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<JsonPatch, ApiError> {
    if body_kind(req)? != Body::JsonPatch {
        return Err(unsupported(
            "PATCH takes a JSON Patch document with Content-Type application/json-patch+json",
        ));
    }
    let bytes = read_body(req, payload, state.max_body_bytes).await?;
    let document = json::parse_strict(&bytes).map_err(ApiError::bad_request)?;
    JsonPatch::parse(document).map_err(ApiError::bad_request)
}

/// Applies the patch to the current version under the write's row lock, so that no other
/// writer can slip in between reading and writing.
fn patch_resource(
    state: &AppState,
    scope: &AccessScope,
    res_type: &str,
    res_id: &str,
    patch: JsonPatch,
    if_match: Option<i64>,
) -> Result<Written, ApiError> {
    let target = patch_target(res_type, res_id, if_match);
    let mut prepare = patch_preparer(state, res_type, res_id, &patch);
    state
        .store
        .write(scope, &target, &mut prepare)
        .map_err(write_error)
}

pub(super) fn patch_target<'a>(
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
pub(super) fn patch_preparer<'a>(
    state: &'a AppState,
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
        let issues = validate(state, &patched);
        if !issues.is_empty() {
            return Err(ApiError::with_issues(
                StatusCode::UNPROCESSABLE_ENTITY,
                issues,
            ));
        }
        let patients =
            compartment::patient_compartments(state.definitions, &patched, &state.base_url);
        meta::stamp(&mut patched, res_id, version, last_updated);
        Ok(Prepared {
            patients,
            index: Arc::new(index_rows(state, &patched)?),
            body: patched.to_string(),
        })
    }
}

/// Runs a one-row lookup on the HTTP worker when a connection is free (the common case, and
/// cheaper than a hop to the blocking pool); otherwise waits for a connection on the blocking
/// pool rather than stall every request of this worker.
async fn lookup<T: Send + 'static>(
    state: &web::Data<AppState>,
    query: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    if state.store.has_idle_connection() {
        return Ok(query(&state.store)?);
    }
    let worker = state.clone();
    Ok(web::block(move || query(&worker.store)).await??)
}

pub async fn read(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (res_type, res_id) = path.into_inner();
    check_type(&res_type)?;
    check_id(&res_id)?;
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &[])?;
    let format = params.get("_format");
    let raw_binary = res_type == "Binary" && !wants_binary_resource(&req, format);
    let reply = if raw_binary {
        Reply::FhirJson
    } else {
        reply_format(&req, format)?
    };
    let scope = scope(&req);
    let (ty, id) = (res_type.clone(), res_id.clone());
    let current = lookup(&state, move |store| store.read(&scope, &ty, &id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{res_type}/{res_id} does not exist")))?;
    let Some(body) = current.body.filter(|_| !current.deleted) else {
        return Err(ApiError::gone(format!("{res_type}/{res_id} was deleted")));
    };
    let info = VersionInfo {
        res_type: &res_type,
        res_id: &res_id,
        version: current.version,
        last_updated: current.last_updated,
    };
    if not_modified(&req, &info) {
        return Ok(versioned(StatusCode::NOT_MODIFIED, &info).finish());
    }
    if raw_binary {
        return raw_binary_response(&info, &body);
    }
    Ok(versioned(StatusCode::OK, &info)
        .content_type(reply.content_type())
        .body(body))
}

/// `If-None-Match` (a matching ETag) or `If-Modified-Since` (nothing newer) make a read 304.
fn not_modified(req: &HttpRequest, info: &VersionInfo<'_>) -> bool {
    if let Some(tags) = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return tags.split(',').any(|t| {
            t.trim() == "*" || crate::http::request::parse_etag(t.trim()) == Some(info.version)
        });
    }
    if let Some(since) = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<header::HttpDate>().ok())
    {
        return crate::http::response::http_date(info.last_updated) <= since;
    }
    false
}

/// The content of a Binary in its own media type.
fn raw_binary_response(info: &VersionInfo<'_>, body: &str) -> Result<HttpResponse, ApiError> {
    let binary = json::parse_strict(body.as_bytes()).map_err(|e| {
        ApiError::internal(format!("stored Binary is unreadable: {}", e.diagnostics))
    })?;
    let content_type = binary["contentType"]
        .as_str()
        .unwrap_or("application/octet-stream")
        .to_string();
    let data = match binary.get("data").and_then(Value::as_str) {
        Some(data) => base64::engine::general_purpose::STANDARD
            .decode(data.split_ascii_whitespace().collect::<String>())
            .map_err(|e| ApiError::internal(format!("stored Binary data is not base64: {e}")))?,
        None => Vec::new(),
    };
    let mut response = versioned(StatusCode::OK, info);
    response.insert_header((header::CONTENT_TYPE, content_type));
    // Stored content is the client's: never let a browser run it as this server's page.
    response.insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    response.insert_header((
        header::CONTENT_SECURITY_POLICY,
        "sandbox; default-src 'none'",
    ));
    if let Some(context) = binary
        .pointer("/securityContext/reference")
        .and_then(Value::as_str)
    {
        response.insert_header(("X-Security-Context", context.to_string()));
    }
    Ok(response.body(data))
}

pub async fn vread(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (res_type, res_id, version) = path.into_inner();
    check_type(&res_type)?;
    check_id(&res_id)?;
    let version = check_version(&version)?;
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &[])?;
    let format = params.get("_format");
    let raw_binary = res_type == "Binary" && !wants_binary_resource(&req, format);
    let reply = if raw_binary {
        Reply::FhirJson
    } else {
        reply_format(&req, format)?
    };
    let scope = scope(&req);
    let (ty, id) = (res_type.clone(), res_id.clone());
    let found = lookup(&state, move |store| store.vread(&scope, &ty, &id, version))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("{res_type}/{res_id} has no version {version}"))
        })?;
    let info = VersionInfo {
        res_type: &res_type,
        res_id: &res_id,
        version: found.version,
        last_updated: found.last_updated,
    };
    let Some(body) = found.body else {
        return Err(ApiError::gone(format!(
            "version {version} of {res_type}/{res_id} is a deletion"
        )));
    };
    if raw_binary {
        return raw_binary_response(&info, &body);
    }
    Ok(versioned(StatusCode::OK, &info)
        .content_type(reply.content_type())
        .body(body))
}

pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (res_type, res_id) = path.into_inner();
    check_type(&res_type)?;
    check_id(&res_id)?;
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &[])?;
    let if_match = version_header(&req, header::IF_MATCH)?;
    let scope = scope(&req);
    let worker = state.clone();
    let (ty, id) = (res_type.clone(), res_id.clone());
    let deletion = web::block(move || worker.store.delete(&scope, &ty, &id, if_match)).await??;
    deletion_response(&req, &state, &res_type, &res_id, deletion)
}

/// 204 (or 200 with an OperationOutcome when asked) for a deletion; 404 when nothing existed.
pub(super) fn deletion_response(
    req: &HttpRequest,
    state: &AppState,
    res_type: &str,
    res_id: &str,
    deletion: Deletion,
) -> Result<HttpResponse, ApiError> {
    if matches!(deletion, Deletion::Deleted { .. }) {
        state.after_write(res_type, None);
    }
    let (response, message) = match deletion {
        Deletion::Deleted { version, .. } => {
            let mut response = HttpResponse::NoContent();
            response.insert_header((header::ETAG, crate::http::response::etag(version)));
            (
                response,
                format!("{res_type}/{res_id} deleted (version {version})"),
            )
        }
        Deletion::AlreadyDeleted => (
            HttpResponse::NoContent(),
            format!("{res_type}/{res_id} was already deleted"),
        ),
        Deletion::NotFound => {
            return Err(ApiError::not_found(format!(
                "{res_type}/{res_id} does not exist"
            )))
        }
    };
    Ok(no_content(req, response, message))
}

/// 204, or 200 with `message` in an OperationOutcome under `Prefer: return=OperationOutcome`.
pub(super) fn no_content(
    req: &HttpRequest,
    mut response: actix_web::HttpResponseBuilder,
    message: String,
) -> HttpResponse {
    if prefer_return(req) == Return::OperationOutcome {
        let outcome = operation_outcome(&[Issue::information("informational", message)]);
        response.status(StatusCode::OK);
        return response
            .content_type(crate::http::negotiate::FHIR_JSON)
            .body(outcome.to_string());
    }
    response.finish()
}
