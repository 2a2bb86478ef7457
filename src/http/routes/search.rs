//! Search: `GET [type]?..`, `POST [type]/_search`, system search (`GET [base]?_type=..`,
//! `POST [base]/_search`) and Patient compartment search (`GET Patient/[id]/[type]?..`).
//!
//! The parameters are parsed against the search parameter table (`fhir::search::query`),
//! the store plans and runs the page under the caller's scope, and the Bundle is written as
//! text around the stored JSON (re-serialised only for `_summary`/`_elements`).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::access::{self, AccessScope, Operation};
use crate::fhir::outcome::Issue;
use crate::fhir::search::query::{self, SearchQuery, Summary};
use crate::fhir::served;
use crate::http::caller::decide;
use crate::http::error::ApiError;
use crate::http::negotiate::reply_format;
use crate::http::request::{prefer, read_body, Params};
use crate::http::AppState;
use crate::interaction::bundle::{search_bundle, SearchEntry};
use crate::interaction::criteria::{query_error, shape, DEFAULT_COUNT, MAX_COUNT, MAX_INCLUDED};
use crate::store::search::cursor::SearchCursor;
use crate::store::search::{SearchPage, SearchRequest};

/// `GET [type]?...`
pub async fn type_get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let res_type = path.into_inner();
    super::resource::check_type(&res_type)?;
    let pairs = query_pairs(&req)?;
    search(req, state, Target::Type(res_type), pairs).await
}

/// `POST [type]/_search` with a form body (and possibly a query string too).
pub async fn type_post(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let res_type = path.into_inner();
    super::resource::check_type(&res_type)?;
    let pairs = form_pairs(&req, payload, &state).await?;
    search(req, state, Target::Type(res_type), pairs).await
}

/// `GET [base]?_type=...`
pub async fn system_get(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(&req)?;
    search(req, state, Target::System, pairs).await
}

/// `POST [base]/_search`
pub async fn system_post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let pairs = form_pairs(&req, payload, &state).await?;
    search(req, state, Target::System, pairs).await
}

/// `GET Patient/[id]/[type]?...`: the type's resources in that patient's compartment.
pub async fn compartment_get(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (compartment, id, res_type) = path.into_inner();
    if compartment != "Patient" {
        super::resource::check_type(&compartment)?;
        return Err(ApiError::not_found(format!(
            "{compartment}/{id}/{res_type}: only Patient compartments are searchable here"
        )));
    }
    super::resource::check_id(&id)?;
    super::resource::check_type(&res_type)?;
    if res_type != "Patient"
        && state
            .definitions
            .patient_compartment_paths(&res_type)
            .is_empty()
    {
        return Err(ApiError::not_found(format!(
            "{res_type} is not part of the Patient compartment"
        )));
    }
    let pairs = query_pairs(&req)?;
    search(req, state, Target::Compartment(id, res_type), pairs).await
}

/// What is searched.
pub(super) enum Target {
    Type(String),
    System,
    /// `(patient id, type)`.
    Compartment(String, String),
    /// `Patient/[id]/$everything`: these types of the patient's compartment; links show the
    /// operation's own parameters (`shown`), not the search they became.
    Everything {
        patient: String,
        types: Vec<String>,
        shown: Vec<(String, String)>,
    },
}

impl Target {
    fn path(&self) -> String {
        match self {
            Target::Type(t) => t.clone(),
            Target::System => String::new(),
            Target::Compartment(id, t) => format!("Patient/{id}/{t}"),
            Target::Everything { patient, .. } => format!("Patient/{patient}/$everything"),
        }
    }
}

fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    Ok(Params::parse(req)?.into_pairs())
}

/// The query string's parameters followed by the form body's.
async fn form_pairs(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<(String, String)>, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Issue::error(
                "not-supported",
                format!(
                    "POST _search takes a form body (application/x-www-form-urlencoded), not {:?}",
                    content_type
                ),
            ),
        ));
    }
    let body = read_body(req, payload, state.max_body_bytes).await?;
    let mut pairs = query_pairs(req)?;
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).map_err(|e| {
        ApiError::bad_request(Issue::error("invalid", format!("malformed form body: {e}")))
    })?;
    pairs.extend(form);
    Ok(pairs)
}

pub(super) async fn search(
    req: HttpRequest,
    state: web::Data<AppState>,
    target: Target,
    mut pairs: Vec<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    // One type: its scope's query (if any) joins the caller's parameters.
    let single = match &target {
        Target::Type(t) | Target::Compartment(_, t) => {
            let decision = decide(&req, Operation::Search, t)?;
            pairs.extend(decision.filter.iter().cloned());
            Some(decision.scope)
        }
        _ => None,
    };
    let format = pairs
        .iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v.as_str());
    let reply = reply_format(&req, format)?;
    let lenient = prefer(&req, "handling") == Some("lenient");
    let types: Vec<&str> = match &target {
        Target::Type(t) | Target::Compartment(_, t) => vec![t.as_str()],
        Target::System => served::served_types().to_vec(),
        Target::Everything { types, .. } => types.iter().map(String::as_str).collect(),
    };
    let mut parsed = query::parse(
        &state.search.current(),
        &types,
        &pairs,
        &state.base_url,
        lenient,
    )
    .map_err(query_error)?;
    if parsed.types.is_empty() {
        parsed.types = types.iter().map(|t| t.to_string()).collect();
    }
    let count = if parsed.summary == Summary::Count {
        0
    } else {
        parsed.count.unwrap_or(DEFAULT_COUNT).min(MAX_COUNT)
    };
    let scope = match single {
        Some(scope) => scope,
        None => {
            let scope = several_types_scope(&req, &parsed.types)?;
            if let Some(types) = scope.types() {
                parsed.types.retain(|t| types.contains(t));
            }
            scope
        }
    };
    let mut context = cursor_context(&target.path(), &parsed);
    // A cursor handed to one caller means nothing to another.
    if let Some(caller) = crate::http::caller::caller(&req)? {
        context.extend_from_slice(caller.token_id.as_bytes());
    }
    let cursor = match &parsed.cursor {
        Some(text) => Some(state.store.open_cursor(text, &context)?.ok_or_else(|| {
            ApiError::bad_request(
                Issue::error(
                    "value",
                    "_cursor: not a paging cursor of this search; follow the Bundle's links",
                )
                .at("_cursor"),
            )
        })?),
        None => None,
    };

    let worker = state.clone();
    let compartment = match &target {
        Target::Compartment(id, _) | Target::Everything { patient: id, .. } => Some(id.clone()),
        _ => None,
    };
    let query = parsed.clone();
    let page: SearchPage = web::block(move || {
        let request = SearchRequest {
            query: &query,
            compartment: compartment.as_deref(),
            count: count as usize,
            cursor: cursor.as_ref(),
            max_included: MAX_INCLUDED,
        };
        worker.store.search(&scope, &request)
    })
    .await??;

    let base = format!("{}/{}", state.base_url, target.path());
    let base = base.trim_end_matches('/');
    let link = |cursor: Option<String>| {
        let shown = match &target {
            Target::Everything { shown, .. } => shown,
            _ => &parsed.applied,
        };
        let mut pairs: Vec<(&str, &str)> = shown
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let count_text = count.to_string();
        if !pairs.iter().any(|(k, _)| *k == "_count") {
            pairs.push(("_count", &count_text));
        }
        if let Some(c) = &cursor {
            pairs.push(("_cursor", c));
        }
        let encoded = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("{base}?{encoded}")
    };
    let self_link = link(parsed.cursor.clone());
    let seal = |c: &SearchCursor| state.store.seal_cursor(c, &context);
    let next = page
        .next
        .as_ref()
        .map(seal)
        .transpose()?
        .map(|c| link(Some(c)));
    let previous = page
        .previous
        .as_ref()
        .map(seal)
        .transpose()?
        .map(|c| link(Some(c)));

    let mut warnings = Vec::new();
    if !parsed.ignored.is_empty() {
        warnings.push(Issue {
            severity: crate::fhir::outcome::Severity::Warning,
            code: "not-supported",
            diagnostics: format!(
                "ignored (Prefer: handling=lenient): {}",
                parsed.ignored.join(", ")
            ),
            expression: None,
        });
    }
    if page.included_truncated {
        warnings.push(Issue {
            severity: crate::fhir::outcome::Severity::Warning,
            code: "too-costly",
            diagnostics: format!(
                "more than {MAX_INCLUDED} resources were included; the rest were left out"
            ),
            expression: None,
        });
    }
    let shape = |body: &str| -> Result<String, ApiError> { shape(&state, &parsed, body) };
    let entries = SearchEntry::of_page(&page, shape)?;
    let body = search_bundle(
        &state.base_url,
        &self_link,
        next.as_deref(),
        previous.as_deref(),
        page.total,
        &entries,
        &warnings,
    );
    Ok(HttpResponse::Ok()
        .content_type(reply.content_type())
        .body(body))
}

/// The scope of a search over several types (system search, `$everything`): the types the
/// caller may search without a query restriction (a scope's query names parameters of its own
/// type; such types are reached by type-level searches), all under one compartment decision.
pub(super) fn several_types_scope(
    req: &HttpRequest,
    types: &[String],
) -> Result<AccessScope, ApiError> {
    let mut compartments: Option<AccessScope> = None;
    let mut refusal = None;
    for t in types {
        match decide(req, Operation::Search, t) {
            Ok(decision) if decision.filter.is_empty() => {
                let patients = decision.scope.without_types();
                match &compartments {
                    None => compartments = Some(patients),
                    Some(first) if *first == patients => {}
                    Some(_) => {
                        return Err(ApiError::forbidden(
                            "the token's scopes reach these types at different levels \
                             (patient/, user/, system/); search them one type at a time",
                        ))
                    }
                }
            }
            Ok(_) => {}
            Err(e) => refusal = Some(e),
        }
    }
    match compartments {
        // What the store returns (matches and includes): every type the caller may search.
        Some(scope) => Ok(match crate::http::caller::caller(req)? {
            Some(caller) => scope.with_types(access::searchable_types(&caller)),
            None => scope,
        }),
        None => Err(refusal.unwrap_or_else(|| {
            ApiError::forbidden("the access token lets no searched type be searched")
        })),
    }
}

/// What a cursor is bound to: the searched path and the parameters as applied (`_count`
/// aside, which a client may change between pages). A cursor pasted onto another query is
/// refused rather than silently paging through the wrong results.
fn cursor_context(path: &str, query: &SearchQuery) -> Vec<u8> {
    let mut context = path.as_bytes().to_vec();
    for (k, v) in &query.applied {
        if k != "_count" {
            for part in [k.as_bytes(), v.as_bytes()] {
                context.push(0);
                context.extend_from_slice(part);
            }
        }
    }
    context
}
