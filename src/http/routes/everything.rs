//! `GET Patient/[id]/$everything`: the patient's record, i.e. every resource of its
//! compartment (the Patient included) and what those resources reference, paged as a
//! `searchset`, under the caller's access scope. Parameters: `_since` (changed at or after
//! this instant), `_type` (these types only), `_count`, and the paging cursor of its links.
//! `start`/`end` (clinical date ranges) are not supported.

use actix_web::{web, HttpRequest, HttpResponse};

use super::search::{search, Target};
use crate::fhir::outcome::Issue;
use crate::fhir::served;
use crate::http::error::ApiError;
use crate::http::request::{prefer, Params};
use crate::http::AppState;

/// Parameters of the operation; the others are refused (ignored when lenient).
const KNOWN: &[&str] = &["_since", "_type", "_count", "_cursor", "_format"];

pub async fn everything(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (res_type, id) = path.into_inner();
    if res_type != "Patient" {
        super::resource::check_type(&res_type)?;
        return Err(ApiError::not_found(format!(
            "$everything is an operation of Patient, not of {res_type}"
        )));
    }
    super::resource::check_id(&id)?;
    let lenient = prefer(&req, "handling") == Some("lenient");
    let mut types: Vec<String> = served::served_types()
        .iter()
        .filter(|t| **t == "Patient" || !state.definitions.patient_compartment_paths(t).is_empty())
        .map(|t| t.to_string())
        .collect();
    let mut shown = Vec::new();
    let mut pairs = Vec::new();
    // Repeated `_type` parameters add up.
    let mut wanted_types: Option<Vec<String>> = None;
    for (name, value) in Params::parse(&req)?.into_pairs() {
        match name.as_str() {
            "_since" => {
                pairs.push(("_lastUpdated".to_string(), format!("ge{value}")));
                shown.push((name, value));
            }
            "_type" => {
                let wanted: Vec<&str> = value.split(',').map(str::trim).collect();
                if let Some(outside) = wanted.iter().find(|t| !types.iter().any(|x| x == *t)) {
                    return Err(ApiError::bad_request(
                        Issue::error(
                            "value",
                            format!("{outside} is not a type of the Patient compartment"),
                        )
                        .at("_type"),
                    ));
                }
                wanted_types
                    .get_or_insert_with(Vec::new)
                    .extend(wanted.iter().map(|t| t.to_string()));
                shown.push((name, value));
            }
            "_format" => {
                shown.push((name.clone(), value.clone()));
                pairs.push((name, value));
            }
            "_count" | "_cursor" => pairs.push((name, value)),
            _ if lenient => {}
            _ => {
                return Err(ApiError::bad_request(
                    Issue::error(
                        "not-supported",
                        format!(
                            "{name} is not a parameter of $everything here; use {}",
                            KNOWN.join(", ")
                        ),
                    )
                    .at(name),
                ))
            }
        }
    }
    if let Some(wanted) = wanted_types {
        types.retain(|t| wanted.contains(t));
    }
    // The types the caller may search, under one compartment decision.
    let scope = super::search::several_types_scope(&req, &types)?;
    types.retain(|t| scope.allows_type(t));
    let scope = scope.without_types();
    // Everything the page's resources reference comes with them (practitioners,
    // organisations, binaries...), as far as the scope lets the caller see it: `*` is every
    // reference of every searched type (one parameter, whatever the number of types).
    pairs.push(("_include".to_string(), "*".to_string()));
    let patient = id.clone();
    let store = state.clone();
    let exists = web::block(move || store.store.read(&scope, "Patient", &patient)).await??;
    if exists.is_none_or(|p| p.deleted) {
        return Err(ApiError::not_found(format!("Patient/{id} does not exist")));
    }
    let target = Target::Everything {
        patient: id,
        types,
        shown,
    };
    search(req, state, target, pairs).await
}
