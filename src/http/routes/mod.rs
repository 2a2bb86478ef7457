//! The route table. The same table registers the handlers and fills the CapabilityStatement,
//! so `/metadata` cannot claim an interaction the server does not route, nor hide one.

mod conditional;
mod everything;
mod export;
mod history;
mod metadata;
mod reindex;
mod resource;
mod search;
mod system;
mod transaction;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, Route};

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Instance,
    Type,
    System,
    /// `Patient/[id]/[type]`: listed under the compartment, not as an interaction.
    Compartment,
    /// Type-level writes addressed by search criteria: CapabilityStatement flags.
    Conditional,
    /// Operations of this server with no OperationDefinition to cite; documented in `docs/`.
    Operation,
}

/// One FHIR REST interaction: its code in the CapabilityStatement, and where it is routed.
#[derive(Debug, Clone)]
pub struct Interaction {
    pub code: &'static str,
    pub level: Level,
    pub method: Method,
    /// Relative to the FHIR base.
    pub path: &'static str,
}

const fn interaction(
    code: &'static str,
    level: Level,
    method: Method,
    path: &'static str,
) -> Interaction {
    Interaction {
        code,
        level,
        method,
        path,
    }
}

pub const INTERACTIONS: &[Interaction] = &[
    interaction("read", Level::Instance, Method::GET, "/{type}/{id}"),
    interaction(
        "vread",
        Level::Instance,
        Method::GET,
        "/{type}/{id}/_history/{vid}",
    ),
    interaction("update", Level::Instance, Method::PUT, "/{type}/{id}"),
    interaction("patch", Level::Instance, Method::PATCH, "/{type}/{id}"),
    interaction("delete", Level::Instance, Method::DELETE, "/{type}/{id}"),
    interaction(
        "history-instance",
        Level::Instance,
        Method::GET,
        "/{type}/{id}/_history",
    ),
    interaction("history-type", Level::Type, Method::GET, "/{type}/_history"),
    interaction("create", Level::Type, Method::POST, "/{type}"),
    interaction("search-type", Level::Type, Method::GET, "/{type}"),
    interaction("search-type", Level::Type, Method::POST, "/{type}/_search"),
    interaction("history-system", Level::System, Method::GET, "/_history"),
    interaction("search-system", Level::System, Method::GET, ""),
    interaction("search-system", Level::System, Method::POST, "/_search"),
    // One route serves both: the Bundle's type says which.
    interaction("transaction", Level::System, Method::POST, ""),
    interaction("batch", Level::System, Method::POST, ""),
    interaction("reindex", Level::Operation, Method::POST, "/$reindex"),
    interaction(
        "reindex-status",
        Level::Operation,
        Method::GET,
        "/$reindex-status/{job}",
    ),
    interaction(
        "everything",
        Level::Operation,
        Method::GET,
        "/{type}/{id}/$everything",
    ),
    // Bulk export (docs/bulk-export.md): kick-off at three levels, then status and files.
    interaction("export", Level::Operation, Method::GET, "/$export"),
    interaction("export", Level::Operation, Method::POST, "/$export"),
    interaction(
        "patient-export",
        Level::Operation,
        Method::GET,
        "/Patient/$export",
    ),
    interaction(
        "patient-export",
        Level::Operation,
        Method::POST,
        "/Patient/$export",
    ),
    interaction(
        "group-export",
        Level::Operation,
        Method::GET,
        "/Group/{id}/$export",
    ),
    interaction(
        "group-export",
        Level::Operation,
        Method::POST,
        "/Group/{id}/$export",
    ),
    interaction(
        "export-status",
        Level::Operation,
        Method::GET,
        "/$export-status/{job}",
    ),
    interaction(
        "export-cancel",
        Level::Operation,
        Method::DELETE,
        "/$export-status/{job}",
    ),
    interaction(
        "export-file",
        Level::Operation,
        Method::GET,
        "/$export-file/{job}/{file}",
    ),
    // Conditional interactions are flags of the CapabilityStatement, not interaction codes.
    interaction(
        "conditional-update",
        Level::Conditional,
        Method::PUT,
        "/{type}",
    ),
    interaction(
        "conditional-patch",
        Level::Conditional,
        Method::PATCH,
        "/{type}",
    ),
    interaction(
        "conditional-delete",
        Level::Conditional,
        Method::DELETE,
        "/{type}",
    ),
    // Compartment search has no interaction code of its own: it is a search-type.
    interaction(
        "search-compartment",
        Level::Compartment,
        Method::GET,
        "/{type}/{id}/{target}",
    ),
];

/// Paths in matching order. A literal segment must come before a parameter that would also
/// match it (`/{type}/_history` before `/{type}/{id}`); beyond that, the hottest path (read by
/// id) comes early because actix tries patterns one by one.
const PATHS: &[&str] = &[
    "",
    "/_history",
    "/_search",
    "/$reindex",
    "/$reindex-status/{job}",
    "/$export",
    "/$export-status/{job}",
    "/$export-file/{job}/{file}",
    "/Patient/$export",
    "/Group/{id}/$export",
    "/{type}/_history",
    "/{type}/_search",
    "/{type}/{id}",
    "/{type}/{id}/_history",
    "/{type}/{id}/_history/{vid}",
    "/{type}/{id}/$everything",
    "/{type}/{id}/{target}",
    "/{type}",
];

fn handler(code: &str, method: &Method) -> Route {
    let get = *method == Method::GET;
    match code {
        "read" => web::get().to(resource::read),
        "vread" => web::get().to(resource::vread),
        "update" => web::put().to(resource::update),
        "patch" => web::patch().to(resource::patch),
        "delete" => web::delete().to(resource::delete),
        "create" => web::post().to(resource::create),
        "history-instance" => web::get().to(history::instance),
        "history-type" => web::get().to(history::type_level),
        "history-system" => web::get().to(history::system),
        "search-type" if get => web::get().to(search::type_get),
        "search-type" => web::post().to(search::type_post),
        "search-system" if get => web::get().to(search::system_get),
        "search-system" => web::post().to(search::system_post),
        "search-compartment" => web::get().to(search::compartment_get),
        "conditional-update" => web::put().to(conditional::update),
        "conditional-patch" => web::patch().to(conditional::patch),
        "conditional-delete" => web::delete().to(conditional::delete),
        "transaction" | "batch" => web::post().to(transaction::process),
        "reindex" => web::post().to(reindex::reindex),
        "reindex-status" => web::get().to(reindex::status),
        "everything" => web::get().to(everything::everything),
        "export" => web::method(method.clone()).to(export::kickoff_system),
        "patient-export" => web::method(method.clone()).to(export::kickoff_patient),
        "group-export" => web::method(method.clone()).to(export::kickoff_group),
        "export-status" => web::get().to(export::status),
        "export-cancel" => web::delete().to(export::cancel),
        "export-file" => web::get().to(export::file),
        other => unreachable!("interaction {other} has no handler"),
    }
}

/// Registers every route of the server.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health")
            .route(web::get().to(system::health))
            .default_service(web::to(|req: HttpRequest| {
                system::method_not_allowed(req, "GET".into())
            })),
    );
    let mut fhir = web::scope("/fhir")
        .wrap(actix_web::middleware::from_fn(super::caller::authenticate))
        .service(
            web::resource("/metadata")
                .route(web::get().to(metadata::capability_statement))
                .default_service(web::to(|req: HttpRequest| {
                    system::method_not_allowed(req, "GET".into())
                })),
        );
    for path in PATHS {
        let mut routed: Vec<&Interaction> =
            INTERACTIONS.iter().filter(|i| i.path == *path).collect();
        // Interactions told apart by the body (transaction, batch) share one route.
        routed.dedup_by(|a, b| a.method == b.method);
        let allow = routed
            .iter()
            .map(|i| i.method.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut resource = web::resource(*path);
        for i in &routed {
            resource = resource.route(handler(i.code, &i.method));
        }
        fhir = fhir.service(resource.default_service(web::to(move |req: HttpRequest| {
            system::method_not_allowed(req, allow.clone())
        })));
    }
    cfg.service(fhir);
}

/// 404 with an OperationOutcome for anything outside the route table.
pub async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no route for {} {}; the FHIR API is under /fhir (see /fhir/metadata)",
        req.method(),
        req.path()
    )))
}
