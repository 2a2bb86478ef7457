//! Instance and type interactions on one resource: create, read, vread, update, patch, delete.
//! Binary also travels raw, in its own content type.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};

use super::conditional::Created;
use crate::access::{AccessScope, Operation};
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::patch::JsonPatch;
use crate::fhir::transaction::Method;
use crate::fhir::{json, meta};
use crate::http::caller::decide;
use crate::http::error::ApiError;
use crate::http::negotiate::{
    body_kind, reply_format, unsupported, wants_binary_resource, Body, Reply,
};
use crate::http::request::{
    preconditions, prefer_return, read_body, version_header, Params, Return,
};
use crate::http::response::{versioned, written, VersionInfo};
use crate::http::AppState;
pub(super) use crate::interaction::write::{
    business_rules, check_id, check_type, check_version, patch_preparer, patch_resource,
    patch_target, resource_preparer, store_resource, validate, write_error,
};
use crate::store::{Deletion, Store, StoreError, WriteMethod, Written};

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
    if !issues.is_empty() {
        return Err(ApiError::with_issues(StatusCode::BAD_REQUEST, issues));
    }
    let mut resource = resource;
    business_rules(&mut resource)?;
    Ok(resource)
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
    preconditions(&req, Method::Post)?;
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
        // The criteria are a search: `s` as well as `c`.
        decide(&req, Operation::Search, &res_type)?;
        let scope = decide(&req, Operation::Create, &res_type)?.scope;
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
    let scope = decide(&req, Operation::Create, &res_type)?.scope;
    let worker = state.clone();
    let res_id = id.clone();
    let stored = web::block(move || {
        store_resource(
            &worker,
            &scope,
            resource,
            &res_id,
            WriteMethod::Post,
            None,
            false,
        )
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
    let create_only = preconditions(&req, Method::Put)?;
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
    let scope = decide(&req, Operation::Update, &res_type)?.scope;
    let worker = state.clone();
    let id = res_id.clone();
    let stored = web::block(move || {
        store_resource(
            &worker,
            &scope,
            resource,
            &id,
            WriteMethod::Put,
            if_match,
            create_only,
        )
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
    preconditions(&req, Method::Patch)?;
    let if_match = version_header(&req, header::IF_MATCH)?;
    let patch = read_patch(&req, payload, &state).await?;
    let scope = decide(&req, Operation::Update, &res_type)?.scope;
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

/// The scope under which the caller may read `res_type/res_id` (read, vread, instance
/// history). A scope limited by a query reaches the resource only while its current version
/// matches the query: otherwise it is answered as not found, like anything out of scope.
pub(super) async fn readable(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    res_type: &str,
    res_id: &str,
) -> Result<AccessScope, ApiError> {
    // The signed-in person's own resource (`fhirUser`) reads back with their token, whatever
    // its resource scopes: SMART apps learn who signed in that way.
    if let Some(caller) = crate::http::caller::caller(req)? {
        let own = caller.fhir_user.as_deref() == Some(&format!("{res_type}/{res_id}"));
        if own && caller.scopes.has("fhirUser") {
            return Ok(AccessScope::everything());
        }
    }
    let decision = decide(req, Operation::Read, res_type)?;
    if decision.filter.is_empty() {
        return Ok(decision.scope);
    }
    let mut pairs = vec![("_id".to_string(), res_id.to_string())];
    pairs.extend(decision.filter);
    let query = crate::fhir::search::query::parse(
        &state.search.current(),
        &[res_type],
        &pairs,
        &state.base_url,
        false,
    )
    .map_err(crate::interaction::criteria::query_error)?;
    let worker = state.clone();
    let scope = decision.scope.clone();
    let page = web::block(move || {
        worker.store.search(
            &scope,
            &crate::store::search::SearchRequest {
                query: &query,
                compartment: None,
                count: 1,
                cursor: None,
                max_included: 0,
            },
        )
    })
    .await??;
    if page.matches.is_empty() {
        return Err(ApiError::not_found(format!(
            "{res_type}/{res_id} does not exist"
        )));
    }
    Ok(decision.scope)
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
    let scope = readable(&req, &state, &res_type, &res_id).await?;
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
            t.trim() == "*" || crate::fhir::transaction::parse_etag(t) == Some(info.version)
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
    let scope = readable(&req, &state, &res_type, &res_id).await?;
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
    preconditions(&req, Method::Delete)?;
    let if_match = version_header(&req, header::IF_MATCH)?;
    let scope = decide(&req, Operation::Delete, &res_type)?.scope;
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
