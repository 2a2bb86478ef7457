//! `POST [base]/$reindex`: indexes stored resources again, so that search parameters added
//! since they were written (SearchParameter resources) become searchable. Without `_type` it
//! reindexes the types that have such pending parameters; with `_type=A,B`, those types.
//! Runs to completion before answering, with progress in the server log.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::access::AccessScope;
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::served;
use crate::http::error::ApiError;
use crate::http::negotiate::reply_format;
use crate::http::request::Params;
use crate::http::AppState;

pub async fn reindex(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &["_type", "_format"])?;
    let reply = reply_format(&req, params.get("_format"))?;
    if super::resource::scope(&req) != AccessScope::Everything {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            Issue::error(
                "forbidden",
                "reindexing is for callers who may see every resource",
            ),
        ));
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
    let message = web::block(move || -> Result<String, ApiError> {
        let types = match requested {
            Some(types) => types,
            None => state.store.pending_search_types()?,
        };
        if types.is_empty() {
            return Ok("nothing to reindex: every search parameter is searchable".into());
        }
        let started = std::time::Instant::now();
        let done = state
            .search
            .reindex(&state.store, &types, &state.base_url)?;
        Ok(format!(
            "reindexed {done} resources of {} in {:.1} s; their search parameters are searchable",
            types.join(", "),
            started.elapsed().as_secs_f64()
        ))
    })
    .await??;
    let outcome = operation_outcome(&[Issue::information("informational", message)]);
    Ok(HttpResponse::Ok()
        .content_type(reply.content_type())
        .body(outcome.to_string()))
}
