//! `POST [base]/$reindex`: indexes stored resources again, so that search parameters added
//! since they were written (SearchParameter resources) become searchable. Without `_type` it
//! reindexes the types that have such pending parameters; with `_type=A,B`, those types.
//!
//! It runs to completion before answering, or, with `Prefer: respond-async`, on a thread of
//! its own: `202 Accepted` and `Content-Location: [base]/$reindex-status/[job]`, which any
//! node answers from the job's row (`202` with `X-Progress` while it runs, then `200` with
//! the outcome).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::access::{Level, Permissions};
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::served;
use crate::http::error::ApiError;
use crate::http::negotiate::{reply_format, Reply};
use crate::http::request::{respond_async, Params};
use crate::http::AppState;
use crate::interaction::Services;
use crate::store::reindex_job::ReindexStatus;

/// A running job whose heartbeat is older than this lost its node.
const STALE_AFTER_MICROS: i64 = 60_000_000;
/// Ended jobs are forgotten after a day (when the next one starts).
const RETENTION_MICROS: i64 = 24 * 3_600_000_000;
/// The runner records its progress at most this often.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn reindex(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &["_type", "_format"])?;
    let reply = reply_format(&req, params.get("_format"))?;
    // Reindexing rewrites the index rows of every resource: a system/ scope that updates
    // every type.
    if let Some(caller) = crate::http::caller::caller(&req)? {
        let all = caller.scopes.resources.iter().any(|e| {
            e.level == Level::System
                && e.resource_type.is_none()
                && e.query.is_empty()
                && e.permissions.contains(Permissions::UPDATE)
        });
        if !all {
            return Err(ApiError::forbidden(
                "$reindex needs the scope system/*.u (it rewrites the index of every resource)",
            ));
        }
    }
    let requested: Option<Vec<String>> = match params.get("_type") {
        Some(list) => {
            let types: Vec<String> = list.split(',').map(|t| t.trim().to_string()).collect();
            for ty in &types {
                if !served::is_served(ty) {
                    return Err(ApiError::bad_request(
                        Issue::error(
                            "not-supported",
                            format!("{ty} is not a served resource type"),
                        )
                        .at("_type"),
                    ));
                }
            }
            Some(types)
        }
        None => None,
    };
    let asynchronous = respond_async(&req);
    let worker = state.clone();
    let types = web::block(move || match requested {
        Some(types) => Ok::<_, ApiError>(types),
        None => Ok(worker.store.pending_search_types()?),
    })
    .await??;
    if types.is_empty() {
        return Ok(outcome(
            reply,
            StatusCode::OK,
            "nothing to reindex: every search parameter is searchable",
        ));
    }
    if !asynchronous {
        let message = web::block(move || run(&state, &types, &mut |_| {})).await??;
        return Ok(outcome(reply, StatusCode::OK, &message));
    }

    let id = uuid::Uuid::new_v4().simple().to_string();
    let worker = state.clone();
    let job = id.clone();
    web::block(move || -> Result<(), ApiError> {
        let total = worker.store.count_live(&types)?;
        let forget = chrono::Utc::now().timestamp_micros() - RETENTION_MICROS;
        worker
            .store
            .create_reindex_job(&job, &types, total, forget)?;
        std::thread::Builder::new()
            .name("carnet-reindex".into())
            .spawn(move || run_job(&worker, &job, &types))
            .map_err(|e| ApiError::internal(format!("cannot start the reindex: {e}")))?;
        Ok(())
    })
    .await??;
    let status_url = format!("{}/$reindex-status/{id}", state.base_url);
    let mut response = outcome(
        reply,
        StatusCode::ACCEPTED,
        &format!("reindex job {id} started; poll {status_url}"),
    );
    response.headers_mut().insert(
        header::CONTENT_LOCATION,
        header::HeaderValue::from_str(&status_url)
            .map_err(|e| ApiError::internal(format!("status URL: {e}")))?,
    );
    Ok(response)
}

/// Reindexes `types`; the message for the client.
fn run(
    services: &Services,
    types: &[String],
    progress: &mut dyn FnMut(u64),
) -> Result<String, ApiError> {
    let started = std::time::Instant::now();
    let done = services
        .search
        .reindex(&services.store, types, &services.base_url, progress)?;
    Ok(format!(
        "reindexed {done} resources of {} in {:.1} s; their search parameters are searchable",
        types.join(", "),
        started.elapsed().as_secs_f64()
    ))
}

/// The job's thread: runs the reindex, records progress as it goes and the outcome at the
/// end. A node that stops meanwhile leaves the job's heartbeat to go stale (the status then
/// says so) and the parameters pending, which the next start reindexes.
fn run_job(services: &Services, id: &str, types: &[String]) {
    let mut last = std::time::Instant::now();
    let mut progress = |done: u64| {
        if last.elapsed() >= PROGRESS_EVERY {
            last = std::time::Instant::now();
            if let Err(e) = services.store.reindex_job_progress(id, done as i64) {
                log::warn!("reindex job {id}: recording progress: {e}");
            }
        }
    };
    let outcome = run(services, types, &mut progress);
    let recorded = match &outcome {
        Ok(message) => services.store.finish_reindex_job(id, Ok(message)),
        Err(e) => {
            log::error!("reindex job {id} failed: {e}");
            services.store.finish_reindex_job(id, Err(&e.to_string()))
        }
    };
    if let Err(e) = recorded {
        log::error!("reindex job {id}: recording its end: {e}");
    }
}

/// `GET [base]/$reindex-status/[job]`.
pub async fn status(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &["_format"])?;
    let reply = reply_format(&req, params.get("_format"))?;
    let id = path.into_inner();
    let worker = state.clone();
    let job = web::block(move || worker.store.reindex_job(&id))
        .await??
        .ok_or_else(|| ApiError::not_found("no such reindex job (it may have expired)"))?;
    let now = chrono::Utc::now().timestamp_micros();
    match job.status {
        ReindexStatus::Running if now - job.updated > STALE_AFTER_MICROS => {
            Err(ApiError::internal(format!(
                "reindex job {} stopped with its node after {} of {} resources; the \
                 parameters still pending are reindexed at the next start of a node, or by \
                 POST [base]/$reindex",
                job.id, job.done, job.total
            )))
        }
        ReindexStatus::Running => Ok(HttpResponse::Accepted()
            .insert_header((
                "X-Progress",
                format!(
                    "{}: {}/{} resources",
                    job.types.join(", "),
                    job.done,
                    job.total
                ),
            ))
            .insert_header((header::RETRY_AFTER, "1"))
            .finish()),
        ReindexStatus::Completed => Ok(outcome(
            reply,
            StatusCode::OK,
            job.message.as_deref().unwrap_or("reindexed"),
        )),
        ReindexStatus::Failed => Err(ApiError::internal(
            job.message.unwrap_or_else(|| "the reindex failed".into()),
        )),
    }
}

fn outcome(reply: Reply, status: StatusCode, message: &str) -> HttpResponse {
    let outcome = operation_outcome(&[Issue::information("informational", message)]);
    HttpResponse::build(status)
        .content_type(reply.content_type())
        .body(outcome.to_string())
}
