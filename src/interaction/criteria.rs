//! Search criteria as interactions use them: conditional criteria (`ifNoneExist`,
//! conditional update, patch and delete, conditional references), their errors, and the
//! shape of a search result (`_summary`, `_elements`).

use actix_web::http::StatusCode;

use super::{ApiError, Services};
use crate::fhir::outcome::Issue;
use crate::fhir::search::query::{self, QueryError, QueryErrorKind, SearchQuery, Summary};
use crate::fhir::{json, summary};
use crate::store::conditional::Resolved;

pub const DEFAULT_COUNT: u32 = 50;
pub const MAX_COUNT: u32 = 1000;
/// Included resources per page beyond this are left out, with a warning in the Bundle.
pub const MAX_INCLUDED: usize = 1000;

/// The result parameters that make no sense as conditions.
const NOT_CRITERIA: &[&str] = &[
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_cursor",
];

/// Parses conditional criteria (a query string) for `res_type`, lenient or not (`Prefer:
/// handling=lenient`); 400 when they are invalid or select nothing in particular.
pub fn parse_criteria(
    services: &Services,
    res_type: &str,
    text: &str,
    what: &str,
    lenient: bool,
) -> Result<SearchQuery, ApiError> {
    let text = text.strip_prefix('?').unwrap_or(text);
    let text = text.strip_prefix(&format!("{res_type}?")).unwrap_or(text);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text).map_err(|e| {
        ApiError::bad_request(Issue::error(
            "invalid",
            format!("{what}: malformed criteria: {e}"),
        ))
    })?;
    if let Some((name, _)) = pairs
        .iter()
        .find(|(k, _)| NOT_CRITERIA.contains(&k.split(':').next().unwrap_or(k)))
    {
        return Err(ApiError::bad_request(
            Issue::error(
                "invalid",
                format!("{what}: {name} is not a search criterion"),
            )
            .at(name.clone()),
        ));
    }
    let parsed = query::parse(
        &services.search.current(),
        &[res_type],
        &pairs,
        &services.base_url,
        lenient,
    )
    .map_err(query_error)?;
    if parsed.clauses.is_empty() {
        return Err(ApiError::bad_request(Issue::error(
            "invalid",
            format!("{what} needs search criteria, e.g. identifier=system|value"),
        )));
    }
    Ok(parsed)
}

pub fn several(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        Issue::error(
            "multiple-matches",
            format!("{what}: the criteria match more than one resource; make them more selective"),
        ),
    )
}

/// The id a conditional update writes at, and whether it must be new: the match; when none,
/// the body's id (which must then be new: an existing resource the criteria did not select is
/// not this request's to overwrite, 409) or a server id.
pub fn update_target(
    ty: &str,
    resolved: Resolved,
    body_id: Option<String>,
) -> Result<(String, bool), ApiError> {
    let created_at_body_id = resolved == Resolved::None && body_id.is_some();
    let id = match (resolved, body_id) {
        (Resolved::Many, _) => return Err(several("conditional update")),
        (Resolved::One { res_id, .. }, Some(body)) if body != res_id => {
            return Err(ApiError::bad_request(
                Issue::error(
                    "invalid",
                    format!("the criteria match {ty}/{res_id} but the body has id {body:?}"),
                )
                .at(format!("{ty}.id")),
            ))
        }
        (Resolved::One { res_id, .. }, _) => res_id,
        (Resolved::None, Some(body)) => body,
        (Resolved::None, None) => uuid::Uuid::new_v4().to_string(),
    };
    Ok((id, created_at_body_id))
}

/// The stored JSON, or its `_summary`/`_elements` subset.
pub fn shape(services: &Services, query: &SearchQuery, body: &str) -> Result<String, ApiError> {
    let subset = matches!(query.summary, Summary::True | Summary::Text | Summary::Data)
        || !query.elements.is_empty();
    if !subset {
        return Ok(body.to_string());
    }
    let mut resource = json::parse_strict(body.as_bytes()).map_err(|e| {
        ApiError::internal(format!(
            "a stored resource is unreadable: {}",
            e.diagnostics
        ))
    })?;
    if query.summary != Summary::False {
        summary::summarize(services.definitions, &mut resource, query.summary);
    }
    if !query.elements.is_empty() {
        summary::keep_elements(services.definitions, &mut resource, &query.elements);
    }
    Ok(resource.to_string())
}

pub fn query_error(e: QueryError) -> ApiError {
    let code = match e.kind {
        QueryErrorKind::Unknown | QueryErrorKind::NotSupported => "not-supported",
        QueryErrorKind::Empty | QueryErrorKind::Invalid => "value",
    };
    ApiError::bad_request(Issue::error(code, e.message).at(e.param))
}
