//! Content negotiation: which representation a client accepts back (`Accept`, `_format`) and
//! what it sent (`Content-Type`). JSON only; `fhirVersion` 4.0 (R4) and 4.3 (R4B, wire-compatible
//! for the served types) are accepted.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;

use super::error::ApiError;
use crate::fhir::outcome::Issue;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const PLAIN_JSON: &str = "application/json; charset=utf-8";

/// The JSON flavour a response is labelled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    FhirJson,
    PlainJson,
}

impl Reply {
    pub fn content_type(self) -> &'static str {
        match self {
            Reply::FhirJson => FHIR_JSON,
            Reply::PlainJson => PLAIN_JSON,
        }
    }
}

/// What a request body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    FhirJson,
    JsonPatch,
    /// Anything else, for Binary: the media type as sent.
    Other(String),
}

/// One media range of an `Accept` or `Content-Type` header.
struct MediaType<'a> {
    essence: String,
    params: Vec<(String, &'a str)>,
}

fn parse_media_type(text: &str) -> MediaType<'_> {
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"')))
        .collect();
    MediaType { essence, params }
}

impl MediaType<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// A `fhirVersion` parameter, when present, must name a version we speak.
    fn version_ok(&self) -> bool {
        match self.param("fhirversion") {
            None => true,
            Some(v) => matches!(v, "4.0" | "4.0.0" | "4.0.1" | "4.3" | "4.3.0"),
        }
    }

    fn refused(&self) -> bool {
        self.param("q").and_then(|q| q.parse::<f32>().ok()) == Some(0.0)
    }
}

fn is_fhir_json(essence: &str) -> bool {
    matches!(essence, "application/fhir+json" | "application/json+fhir")
}

/// The representation to answer with, or 406 when the client accepts none we produce.
pub fn reply_format(req: &HttpRequest, format_param: Option<&str>) -> Result<Reply, ApiError> {
    if let Some(format) = format_param {
        let essence = parse_media_type(format).essence;
        return match essence.as_str() {
            "json" | "application/fhir+json" | "application/json+fhir" => Ok(Reply::FhirJson),
            "application/json" => Ok(Reply::PlainJson),
            _ => Err(not_acceptable(&format!(
                "_format={format} is not supported; this server speaks JSON (_format=json)"
            ))),
        };
    }
    let Some(accept) = header_text(req, header::ACCEPT) else {
        return Ok(Reply::FhirJson);
    };
    let mut versions_refused = false;
    for range in accept.split(',').map(parse_media_type) {
        if range.refused() || range.essence.is_empty() {
            continue;
        }
        let reply = match range.essence.as_str() {
            e if is_fhir_json(e) => Reply::FhirJson,
            "application/json" => Reply::PlainJson,
            "*/*" | "application/*" => Reply::FhirJson,
            _ => continue,
        };
        if range.version_ok() {
            return Ok(reply);
        }
        versions_refused = true;
    }
    let hint = if versions_refused {
        "this server speaks FHIR R4 (fhirVersion=4.0; 4.3 is accepted too)"
    } else {
        "this server answers application/fhir+json or application/json"
    };
    Err(not_acceptable(&format!(
        "cannot answer in any type of Accept: {accept}; {hint}"
    )))
}

/// Whether a read of a Binary should return the resource (JSON) rather than its raw content:
/// only when the client asked for a FHIR/JSON representation explicitly.
pub fn wants_binary_resource(req: &HttpRequest, format_param: Option<&str>) -> bool {
    if format_param.is_some() {
        return true;
    }
    header_text(req, header::ACCEPT).is_some_and(|accept| {
        accept.split(',').map(parse_media_type).any(|range| {
            !range.refused()
                && (is_fhir_json(&range.essence) || range.essence == "application/json")
        })
    })
}

/// Classifies the request body from `Content-Type`; 415 for anything unusable.
pub fn body_kind(req: &HttpRequest) -> Result<Body, ApiError> {
    let Some(content_type) = header_text(req, header::CONTENT_TYPE) else {
        // Lenient with clients that forget the header: FHIR JSON is the only thing we parse.
        return Ok(Body::FhirJson);
    };
    let media = parse_media_type(content_type);
    if !media.version_ok() {
        return Err(unsupported(&format!(
            "Content-Type {content_type} names a FHIR version this server does not speak; use fhirVersion=4.0"
        )));
    }
    Ok(match media.essence.as_str() {
        e if is_fhir_json(e) || e == "application/json" => Body::FhirJson,
        "application/json-patch+json" => Body::JsonPatch,
        "" => return Err(unsupported("the Content-Type header is empty")),
        other => Body::Other(other.to_string()),
    })
}

pub fn unsupported(diagnostics: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Issue::error("not-supported", diagnostics),
    )
}

fn not_acceptable(diagnostics: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        Issue::error("not-supported", diagnostics),
    )
}

fn header_text(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}
