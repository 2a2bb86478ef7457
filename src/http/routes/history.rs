//! History at instance, type and system level, newest first, with `_since`, `_count` and
//! keyset paging (`_cursor`, only ever taken from a `next` link).

use actix_web::{web, HttpRequest, HttpResponse};

use crate::access::Operation;
use crate::fhir::instant::parse_instant;
use crate::fhir::outcome::Issue;
use crate::http::caller::decide;
use crate::http::error::ApiError;
use crate::http::negotiate::reply_format;
use crate::http::request::Params;
use crate::http::AppState;
use crate::interaction::bundle::history_bundle;
use crate::store::{HistoryCursor, HistoryQuery};

const DEFAULT_COUNT: i64 = 50;
const MAX_COUNT: i64 = 1000;
const PARAMS: &[&str] = &["_since", "_count", "_cursor"];

pub async fn instance(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (res_type, res_id) = path.into_inner();
    super::resource::check_type(&res_type)?;
    super::resource::check_id(&res_id)?;
    history(req, state, Some(res_type), Some(res_id)).await
}

pub async fn type_level(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let res_type = path.into_inner();
    super::resource::check_type(&res_type)?;
    history(req, state, Some(res_type), None).await
}

pub async fn system(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    history(req, state, None, None).await
}

async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    res_type: Option<String>,
    res_id: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, PARAMS)?;
    let reply = reply_format(&req, params.get("_format"))?;
    let since = match params.get("_since") {
        Some(text) => Some(parse_instant(text).ok_or_else(|| {
            ApiError::bad_request(Issue::error(
                "value",
                format!("_since={text:?} is not an instant; e.g. 2026-01-31T12:00:00Z"),
            ))
        })?),
        None => None,
    };
    let count = match params.get("_count") {
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| {
                ApiError::bad_request(Issue::error(
                    "value",
                    format!("_count={text:?} is not a number of entries (0 to {MAX_COUNT})"),
                ))
            })?,
        None => DEFAULT_COUNT,
    }
    .min(MAX_COUNT);
    let after = match params.get("_cursor") {
        Some(text) => Some(HistoryCursor::decode(text).ok_or_else(|| {
            ApiError::bad_request(Issue::error(
                "value",
                "_cursor is not a paging cursor of this server; follow the Bundle's next link",
            ))
        })?),
        None => None,
    };
    let scope = match (&res_type, &res_id) {
        (Some(t), Some(id)) => super::resource::readable(&req, &state, t, id).await?,
        (Some(t), None) => {
            let decision = decide(&req, Operation::Search, t)?;
            if !decision.filter.is_empty() {
                return Err(ApiError::forbidden(format!(
                    "the token reaches {t} only through a query-limited scope, which history \
                     cannot apply; search {t} instead"
                )));
            }
            decision.scope
        }
        _ => super::search::several_types_scope(
            &req,
            &crate::fhir::served::served_types()
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>(),
        )?,
    };
    let worker = state.clone();
    let (ty, id) = (res_type.clone(), res_id.clone());
    let page = web::block(move || {
        let query = HistoryQuery {
            res_type: ty.as_deref(),
            res_id: id.as_deref(),
            since,
            after,
            count,
        };
        worker.store.history(&scope, &query)
    })
    .await??
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "{}/{} does not exist",
            res_type.as_deref().unwrap_or(""),
            res_id.as_deref().unwrap_or("")
        ))
    })?;

    let mut path = state.base_url.clone();
    for segment in [res_type.as_deref(), res_id.as_deref()]
        .into_iter()
        .flatten()
    {
        path.push('/');
        path.push_str(segment);
    }
    path.push_str("/_history");
    let link = |cursor: Option<HistoryCursor>| {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(since) = params.get("_since") {
            query.push(("_since", since.to_string()));
        }
        query.push(("_count", count.to_string()));
        if let Some(cursor) = cursor {
            query.push(("_cursor", cursor.encode()));
        }
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(&query).unwrap_or_default()
        )
    };
    let self_link = link(after);
    let next_link = page.next.map(|c| link(Some(c)));
    let body = history_bundle(
        &state.base_url,
        &self_link,
        next_link.as_deref(),
        page.total,
        &page.entries,
    );
    Ok(HttpResponse::Ok()
        .content_type(reply.content_type())
        .body(body))
}
