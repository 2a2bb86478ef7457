//! `GET /metadata`: the CapabilityStatement, generated from the route table and the list of
//! served types, so it states exactly what works.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{Level, INTERACTIONS};
use crate::fhir::search::{reference_doc, ParamType, SearchParam, SearchParams};
use crate::fhir::served::served_types;
use crate::http::error::ApiError;
use crate::http::negotiate::reply_format;
use crate::http::request::Params;
use crate::http::AppState;

pub async fn capability_statement(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &["mode"])?;
    let reply = reply_format(&req, params.get("_format"))?;
    let mut statement = build(&state.base_url, &state.search.current());
    if state.require_auth {
        statement["rest"][0]["security"] = security(state.authority.urls());
    }
    let body = statement.to_string();
    Ok(HttpResponse::Ok()
        .content_type(reply.content_type())
        .body(body))
}

/// The interaction codes routed at `levels`, once each (GET and POST search share a code).
fn codes(levels: &[Level]) -> Vec<Value> {
    let mut seen = Vec::new();
    for i in INTERACTIONS.iter().filter(|i| levels.contains(&i.level)) {
        if !seen.contains(&i.code) {
            seen.push(i.code);
        }
    }
    seen.into_iter()
        .map(|code| json!({ "code": code }))
        .collect()
}

/// The Bulk Data operations routed at the level `code` names, as CapabilityStatement
/// `operation` entries (name and canonical OperationDefinition).
fn bulk_operations(code: &str) -> Vec<Value> {
    const BULK: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/";
    let definition = match code {
        "export" => "export",
        "patient-export" => "patient-export",
        "group-export" => "group-export",
        _ => return Vec::new(),
    };
    if INTERACTIONS.iter().any(|i| i.code == code) {
        vec![json!({"name": "export", "definition": format!("{BULK}{definition}")})]
    } else {
        Vec::new()
    }
}

/// `rest.security`: SMART on FHIR, with the endpoints a client needs (SMART App Launch's
/// `oauth-uris` extension; `.well-known/smart-configuration` says more).
fn security(urls: &crate::auth::Urls) -> Value {
    let uri = |name: &str, url: &str| json!({"url": name, "valueUri": url});
    json!({
        "cors": true,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR"
            }],
            "text": "OAuth2 using SMART-on-FHIR profile (see .well-known/smart-configuration)"
        }],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                uri("authorize", &urls.authorize),
                uri("token", &urls.token),
                uri("introspect", &urls.introspect),
                uri("revoke", &urls.revoke),
                uri("manage", &urls.manage),
            ]
        }]
    })
}

pub fn build(base_url: &str, params: &SearchParams) -> Value {
    let resources: Vec<Value> = served_types()
        .iter()
        .map(|t| {
            let mut searchable: Vec<&SearchParam> = params
                .for_type(t)
                .filter(|p| p.unsupported().is_none())
                .collect();
            searchable.sort_by(|a, b| a.code.cmp(&b.code));
            let includes: Vec<String> = searchable
                .iter()
                .filter(|p| p.kind == ParamType::Reference)
                .map(|p| format!("{t}:{}", p.code))
                .collect();
            let operations = match *t {
                "Patient" => bulk_operations("patient-export"),
                "Group" => bulk_operations("group-export"),
                _ => Vec::new(),
            };
            let mut resource = json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "interaction": codes(&[Level::Instance, Level::Type]),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": includes,
                "searchParam": searchable.iter().map(|p| json!({
                    "name": p.code,
                    "definition": p.url,
                    "type": reference_doc::kind_name(p.kind),
                })).collect::<Vec<_>>(),
            });
            if !operations.is_empty() {
                resource["operation"] = Value::from(operations);
            }
            resource
        })
        .collect();
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "publisher": "Carnet",
        "kind": "instance",
        "software": { "name": "Carnet", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Carnet FHIR server", "url": base_url },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": codes(&[Level::System]),
        }],
    });
    let system_operations = bulk_operations("export");
    if !system_operations.is_empty() {
        statement["instantiates"] =
            json!(["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]);
        statement["rest"][0]["operation"] = Value::from(system_operations);
    }
    statement
}
