//! Bulk export (HL7 Bulk Data Access 2.0), the HTTP side: the kick-off requests
//! (`[base]/$export`, `[base]/Patient/$export`, `[base]/Group/[id]/$export`, GET or POST with
//! a Parameters body), the status endpoint (`[base]/$export-status/[job]`: poll with GET,
//! cancel with DELETE) and the files (`[base]/$export-file/[job]/[file]`). Jobs are run by the
//! worker in `crate::export`; see docs/bulk-export.md.
//!
//! A job belongs to whoever started it: status, files and cancellation answer 404 to any
//! other caller, as for a job that does not exist.

use std::io::Read;

use actix_web::body::SizedStream;
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::access::{AccessScope, Level, Permissions};
use crate::export::{parse_type_filter, Step};
use crate::fhir::compartment::patient_id;
use crate::fhir::instant::{format_instant, parse_instant};
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::served;
use crate::http::error::ApiError;
use crate::http::negotiate::{body_kind, reply_format, unsupported, Body, FHIR_JSON, PLAIN_JSON};
use crate::http::request::{prefer, read_body, respond_async, Params};
use crate::http::AppState;
use crate::store::export::{
    ExportJob, ExportLevel, ExportMember, ExportSpec, ExportStatus, FileKind,
};

/// The NDJSON media type of the files.
const NDJSON: &str = "application/fhir+ndjson";
/// `_outputFormat` values accepted (all mean NDJSON). A `+` left unencoded in a query string
/// arrives as a space.
const OUTPUT_FORMATS: &[&str] = &[
    "application/fhir+ndjson",
    "application/fhir ndjson",
    "application/ndjson",
    "ndjson",
];
/// Parameters of the specification that this server does not implement: refused, or ignored
/// under `Prefer: handling=lenient`.
const UNSUPPORTED: &[&str] = &[
    "includeAssociatedData",
    "_elements",
    "patient",
    "organizeOutputBy",
    "allowPartialManifests",
];
const SUPPORTED: &[&str] = &["_outputFormat", "_type", "_since", "_typeFilter"];
/// Seconds a client is asked to wait between status polls.
const RETRY_AFTER: &str = "1";

/// The identity a job is bound to: the token's client and subject (none when authorization
/// is off). Another token of the same client and subject reaches the job too.
fn caller(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    Ok(crate::http::caller::caller(req)?.map(|c| format!("{} {}", c.client_id, c.subject)))
}

/// Exporting a type needs a `system/` scope that reads and searches it without a query
/// (Bulk Data's `system/*.rs`). Asked types the token does not reach are refused; without
/// `_type`, the export holds the types it reaches.
fn export_scope(
    req: &HttpRequest,
    types: &mut Vec<String>,
    asked: bool,
) -> Result<AccessScope, ApiError> {
    let Some(caller) = crate::http::caller::caller(req)? else {
        return Ok(AccessScope::everything());
    };
    let wanted = Permissions::READ;
    let exportable = |t: &str| {
        caller.scopes.resources.iter().any(|e| {
            e.level == Level::System
                && e.query.is_empty()
                && e.grants(t, wanted)
                && e.grants(t, Permissions::SEARCH)
        })
    };
    if asked {
        if let Some(t) = types.iter().find(|t| !exportable(t)) {
            return Err(ApiError::forbidden(format!(
                "exporting {t} needs a system/ scope that reads and searches it (for instance \
                 system/{t}.rs or system/*.rs)"
            )));
        }
    } else {
        types.retain(|t| exportable(t));
        if types.is_empty() {
            return Err(ApiError::forbidden(
                "$export needs system/ scopes that read and search (for instance system/*.rs)",
            ));
        }
    }
    Ok(AccessScope::everything())
}

fn lenient(req: &HttpRequest) -> bool {
    prefer(req, "handling") == Some("lenient")
}

pub async fn kickoff_system(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    kickoff(req, state, payload, ExportLevel::System, None).await
}

pub async fn kickoff_patient(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    kickoff(req, state, payload, ExportLevel::Patient, None).await
}

pub async fn kickoff_group(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    super::resource::check_id(&id)?;
    kickoff(req, state, payload, ExportLevel::Group, Some(id)).await
}

/// The parameters of a POST kick-off: a Parameters resource (an empty body: none).
fn body_parameters(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let bad = |message: String| ApiError::bad_request(Issue::error("structure", message));
    let value = crate::fhir::json::parse_strict(body).map_err(ApiError::bad_request)?;
    if value["resourceType"] != "Parameters" {
        return Err(bad(
            "a POST kick-off takes a Parameters resource (or no body)".into(),
        ));
    }
    let mut pairs = Vec::new();
    for (i, parameter) in value["parameter"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let name = parameter["name"]
            .as_str()
            .ok_or_else(|| bad(format!("Parameters.parameter[{i}] has no name")))?;
        let value = parameter
            .as_object()
            .and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.starts_with("value"))
                    .map(|(_, v)| v)
            })
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Object(o) => o
                    .get("reference")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            })
            .ok_or_else(|| {
                bad(format!(
                    "Parameters.parameter[{i}] ({name}) has no value this operation can read"
                ))
            })?;
        pairs.push((name.to_string(), value));
    }
    Ok(pairs)
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(Issue::error("value", message).at(param))
}

async fn kickoff(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
    level: ExportLevel,
    group: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let query = Params::parse(&req)?;
    reply_format(&req, query.get("_format"))?;
    let mut pairs = query.into_pairs();
    pairs.retain(|(k, _)| !matches!(k.as_str(), "_format" | "_pretty"));
    if req.method() == actix_web::http::Method::POST {
        let body = read_body(&req, payload, state.max_body_bytes).await?;
        if !body.iter().all(u8::is_ascii_whitespace) && body_kind(&req)? != Body::FhirJson {
            return Err(unsupported(
                "a POST kick-off takes a Parameters resource as FHIR JSON",
            ));
        }
        pairs.extend(body_parameters(&body)?);
    }
    if !respond_async(&req) {
        return Err(ApiError::bad_request(Issue::error(
            "required",
            "bulk export is asynchronous: send the header Prefer: respond-async",
        )));
    }
    let lenient = lenient(&req);
    let mut refused: Vec<&str> = pairs
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !SUPPORTED.contains(k))
        .collect();
    refused.sort_unstable();
    refused.dedup();
    // What lenient handling ignored, for the job's error file.
    let mut messages: Vec<String> = Vec::new();
    if !refused.is_empty() {
        messages.push(format!(
            "ignored the parameter(s) {}: not supported by this server",
            refused.join(", ")
        ));
    }
    if !lenient && !refused.is_empty() {
        let (unsupported, unknown): (Vec<&str>, Vec<&str>) = refused
            .iter()
            .copied()
            .partition(|k| UNSUPPORTED.contains(k));
        let mut issues = Vec::new();
        if !unsupported.is_empty() {
            issues.push(Issue::error(
                "not-supported",
                format!(
                    "this server does not support {} (send Prefer: handling=lenient to have it ignored)",
                    unsupported.join(", ")
                ),
            ));
        }
        if !unknown.is_empty() {
            issues.push(Issue::error(
                "not-supported",
                format!(
                    "unknown parameter(s) {}; supported: {}",
                    unknown.join(", "),
                    SUPPORTED.join(", ")
                ),
            ));
        }
        return Err(ApiError::with_issues(StatusCode::BAD_REQUEST, issues));
    }
    let values = |name: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let once = |name: &str| -> Result<Option<&str>, ApiError> {
        match values(name).as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(invalid(name, format!("{name} may be given once"))),
        }
    };

    let output_format = once("_outputFormat")?.unwrap_or(NDJSON);
    if !OUTPUT_FORMATS.contains(&output_format) {
        return Err(invalid(
            "_outputFormat",
            format!(
                "_outputFormat {output_format:?} is not supported; use application/fhir+ndjson \
                 (or application/ndjson, ndjson)"
            ),
        ));
    }
    let since = match once("_since")? {
        None => None,
        Some(text) => Some(parse_instant(text).ok_or_else(|| {
            invalid(
                "_since",
                format!("_since {text:?} is not an instant; e.g. 2026-01-31T12:00:00Z"),
            )
        })?),
    };

    // The types: `_type` (in its order), else every served type the level can hold.
    let in_level = |t: &str| match level {
        ExportLevel::System => true,
        ExportLevel::Patient | ExportLevel::Group => {
            t == "Patient" || !state.definitions.patient_compartment_paths(t).is_empty()
        }
    };
    let asked: Vec<&str> = values("_type")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let explicit = !asked.is_empty();
    let mut types: Vec<String> = Vec::new();
    if asked.is_empty() {
        types.extend(
            served::served_types()
                .iter()
                .filter(|t| in_level(t))
                .map(|t| t.to_string()),
        );
    } else {
        for ty in asked {
            if !served::is_served(ty) || !in_level(ty) {
                let why = if served::is_served(ty) {
                    "is outside the patient compartment"
                } else {
                    "is not a served resource type"
                };
                if lenient {
                    messages.push(format!("_type: ignored {ty}, which {why}"));
                    continue;
                }
                return Err(ApiError::bad_request(
                    Issue::error("not-supported", format!("_type: {ty} {why}")).at("_type"),
                ));
            }
            if !types.iter().any(|t| t == ty) {
                types.push(ty.to_string());
            }
        }
    }

    let scope = export_scope(&req, &mut types, explicit)?;
    let params = state.search.current();
    let mut type_filters = Vec::new();
    for text in values("_typeFilter") {
        let filter = parse_type_filter(&params, &state.base_url, text)
            .map_err(|message| invalid("_typeFilter", message))?;
        // A filter on a type that is not exported is ignored, as the specification says.
        if !types.contains(&filter.types[0]) {
            messages.push(format!(
                "_typeFilter {text:?} ignored: the export does not hold {}",
                filter.types[0]
            ));
            continue;
        }
        state
            .store
            .check_export_filter(&scope, &filter)
            .map_err(|e| match ApiError::from(e) {
                e if e.status == StatusCode::BAD_REQUEST => {
                    invalid("_typeFilter", format!("_typeFilter {text:?}: {e}"))
                }
                e => e,
            })?;
        type_filters.push(text.to_string());
    }

    let request = {
        let path = req.path().strip_prefix("/fhir").unwrap_or(req.path());
        match (
            req.method() == actix_web::http::Method::GET,
            req.query_string(),
        ) {
            (true, q) if !q.is_empty() => format!("{}{path}?{q}", state.base_url),
            _ => format!("{}{path}", state.base_url),
        }
    };
    let owner = caller(&req)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let job = ExportSpec {
        id: id.clone(),
        owner,
        scope,
        level,
        group_id: group.clone(),
        request,
        types,
        type_filters,
        since,
        output_format: NDJSON.to_string(),
        transaction_time: chrono::Utc::now().timestamp_micros(),
        messages,
    };
    let worker = state.clone();
    web::block(move || -> Result<(), ApiError> {
        let members = match &group {
            Some(group) => group_members(&worker, &job, group)?,
            None => Vec::new(),
        };
        worker.store.create_export_job(&job, &members)?;
        Ok(())
    })
    .await??;
    state.export.wake();
    let status_url = format!("{}/$export-status/{id}", state.base_url);
    let outcome = operation_outcome(&[Issue::information(
        "informational",
        format!("export job {id} accepted; poll {status_url}"),
    )]);
    Ok(HttpResponse::Accepted()
        .insert_header((header::CONTENT_LOCATION, status_url))
        .content_type(FHIR_JSON)
        .body(outcome.to_string()))
}

/// The Patient members of a Group the caller may read (inactive members left out); 404 when
/// the Group does not exist for the caller. With `_since`, a member is `added` when the
/// Group's version current at `_since` did not list it (active): its whole compartment is
/// exported.
fn group_members(
    state: &AppState,
    job: &ExportSpec,
    group: &str,
) -> Result<Vec<ExportMember>, ApiError> {
    let current = state.store.read(&job.scope, "Group", group)?;
    let Some(body) = current.and_then(|c| c.body.filter(|_| !c.deleted)) else {
        return Err(ApiError::not_found(format!("Group/{group} does not exist")));
    };
    let members = active_members(state, group, &body)?;
    let before = match job.since {
        None => None,
        Some(since) => {
            let then = state.store.read_as_of(&job.scope, "Group", group, since)?;
            match then.and_then(|v| v.body) {
                Some(body) => Some(active_members(state, group, &body)?),
                None => Some(Vec::new()),
            }
        }
    };
    Ok(members
        .into_iter()
        .map(|patient| ExportMember {
            added: before.as_ref().is_some_and(|b| !b.contains(&patient)),
            patient,
        })
        .collect())
}

/// The Patient ids a stored Group lists as active members, each once.
fn active_members(state: &AppState, group: &str, body: &str) -> Result<Vec<String>, ApiError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| ApiError::internal(format!("stored Group/{group} is not JSON: {e}")))?;
    let mut members: Vec<String> = Vec::new();
    for member in value["member"].as_array().into_iter().flatten() {
        if member["inactive"] == true {
            continue;
        }
        if let Some(id) = member["entity"]["reference"]
            .as_str()
            .and_then(|r| patient_id(r, &state.base_url))
        {
            if !members.iter().any(|m| m == id) {
                members.push(id.to_string());
            }
        }
    }
    Ok(members)
}

/// The job `id` if the caller started it; 404 otherwise, whether it exists or not.
async fn owned_job(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    id: String,
) -> Result<ExportJob, ApiError> {
    let worker = state.clone();
    let job = web::block(move || worker.store.export_job(&id)).await??;
    match job {
        Some(job) if job.spec.owner == caller(req)? => Ok(job),
        _ => Err(ApiError::not_found(
            "no such export job (it may have expired, been cancelled, or belong to another caller)",
        )),
    }
}

pub async fn status(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &[])?;
    let job = owned_job(&req, &state, path.into_inner()).await?;
    match job.status {
        ExportStatus::Queued => Ok(HttpResponse::Accepted()
            .insert_header(("X-Progress", "queued"))
            .insert_header((header::RETRY_AFTER, RETRY_AFTER))
            .finish()),
        ExportStatus::Running => {
            let cp = &job.checkpoint;
            let steps = 2 * job.spec.types.len() + 1;
            let done = cp.type_done;
            let total = cp.type_total.map_or("?".to_string(), |t| t.to_string());
            let progress = match Step::at(&job.spec, cp.type_index) {
                Some(Step::Output(ty)) => format!(
                    "{ty}: {done}/{total} resources (type {} of {}; {} exported in all)",
                    cp.type_index + 1,
                    job.spec.types.len(),
                    cp.exported
                ),
                Some(Step::Deleted(ty)) => format!(
                    "deleted {ty}: {done}/{total} (step {} of {steps}; {} resources exported)",
                    cp.type_index + 1,
                    cp.exported
                ),
                Some(Step::Messages) | None => {
                    format!("finishing: {} resources exported", cp.exported)
                }
            };
            Ok(HttpResponse::Accepted()
                .insert_header(("X-Progress", progress))
                .insert_header((header::RETRY_AFTER, RETRY_AFTER))
                .finish())
        }
        ExportStatus::Failed => Err(ApiError::internal(
            job.error.unwrap_or_else(|| "the export failed".to_string()),
        )),
        ExportStatus::Completed => {
            let worker = state.clone();
            let id = job.spec.id.clone();
            let files = web::block(move || worker.store.export_files(&id)).await??;
            let list = |kind: FileKind| -> Vec<Value> {
                files
                    .iter()
                    .filter(|f| f.kind == kind)
                    .map(|f| {
                        json!({
                            "type": f.res_type,
                            "url": format!("{}/$export-file/{}/{}", state.base_url, job.spec.id, f.name),
                            "count": f.count,
                        })
                    })
                    .collect()
            };
            let mut manifest = json!({
                "transactionTime": format_instant(job.spec.transaction_time),
                "request": job.spec.request,
                "requiresAccessToken": job.spec.owner.is_some(),
                "output": list(FileKind::Output),
                "error": list(FileKind::Error),
            });
            // Deletions are only meaningful relative to `_since`.
            if job.spec.since.is_some() {
                manifest["deleted"] = Value::from(list(FileKind::Deleted));
            }
            let mut response = HttpResponse::Ok();
            if let Some(finished) = job.finished {
                let retention = state.export.settings().retention;
                let expires = crate::fhir::instant::to_datetime(finished)
                    + chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::zero());
                response.insert_header((
                    header::EXPIRES,
                    expires.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                ));
            }
            Ok(response.content_type(PLAIN_JSON).body(manifest.to_string()))
        }
    }
}

pub async fn cancel(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let job = owned_job(&req, &state, path.into_inner()).await?;
    let worker = state.clone();
    let id = job.spec.id.clone();
    state.export.cancel(&id);
    let deleted = web::block(move || -> Result<bool, ApiError> {
        let deleted = worker.store.delete_export_job(&id)?;
        // A running worker notices at its next checkpoint and removes what it wrote since.
        worker.export.remove_files(&id);
        Ok(deleted)
    })
    .await??;
    if !deleted {
        return Err(ApiError::not_found("no such export job"));
    }
    let outcome = operation_outcome(&[Issue::information(
        "informational",
        format!(
            "export job {} cancelled; its files are removed",
            job.spec.id
        ),
    )]);
    Ok(HttpResponse::Accepted()
        .content_type(FHIR_JSON)
        .body(outcome.to_string()))
}

/// Chunks read from a file per blocking call.
const CHUNK: usize = 256 * 1024;

pub async fn file(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    let job = owned_job(&req, &state, id).await?;
    let gone = || ApiError::not_found(format!("export job {} has no file {name:?}", job.spec.id));
    if job.status != ExportStatus::Completed {
        return Err(gone());
    }
    let worker = state.clone();
    let job_id = job.spec.id.clone();
    let files = web::block(move || worker.store.export_files(&job_id)).await??;
    // Only names the job recorded: nothing else under the export directory is reachable.
    let Some(recorded) = files.into_iter().find(|f| f.name == name) else {
        return Err(gone());
    };
    let path = state.export.job_dir(&job.spec.id).join(&recorded.name);
    let opened = web::block(move || {
        let file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        Ok::<_, std::io::Error>((file, len))
    })
    .await?;
    let (file, len) = opened.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            gone()
        } else {
            ApiError::internal(format!("cannot read the export file: {e}"))
        }
    })?;
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = web::block(move || {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => None,
            Ok(Ok((file, buf))) => Some((Ok(web::Bytes::from(buf)), Some(file))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(_) => Some((Err(std::io::Error::other("the file reader stopped")), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(NDJSON)
        .body(SizedStream::new(len, Box::pin(chunks))))
}
