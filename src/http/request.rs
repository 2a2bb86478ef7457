//! Reading what a request carries besides its path: query parameters, FHIR headers and the
//! body, each with the limits and errors a client needs.

use actix_web::dev::Decompress;
use actix_web::http::header::{self, HeaderName};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;

use super::error::ApiError;
use crate::fhir::outcome::Issue;
use crate::fhir::preconditions::{self as fhir_preconditions, Precondition};
use crate::fhir::transaction::Method;

/// The query string as ordered pairs; repeated parameters stay repeated.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(req: &HttpRequest) -> Result<Params, ApiError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
            .map(Params)
            .map_err(|e| {
                ApiError::bad_request(Issue::error(
                    "invalid",
                    format!("malformed query string: {e}"),
                ))
            })
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Fails with 400 naming every parameter outside `known` (`_format` and `_pretty` are
    /// always allowed), unless the client asked for lenient handling.
    pub fn reject_unknown(&self, req: &HttpRequest, known: &[&str]) -> Result<(), ApiError> {
        if prefer(req, "handling") == Some("lenient") {
            return Ok(());
        }
        let unknown: Vec<&str> = self
            .0
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !known.contains(k) && !matches!(*k, "_format" | "_pretty"))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(ApiError::bad_request(Issue::error(
            "not-supported",
            format!(
                "unknown or unsupported parameter(s): {}; supported here: {}",
                unknown.join(", "),
                known.join(", ")
            ),
        )))
    }
}

/// A value of the `Prefer` header, e.g. `prefer(req, "return")` -> `Some("minimal")`.
pub fn prefer<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::HeaderName::from_static("prefer"))
        .find_map(|value| {
            value.to_str().ok()?.split([',', ';']).find_map(|part| {
                let (key, value) = part.split_once('=')?;
                (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().trim_matches('"'))
            })
        })
}

/// `Prefer: respond-async`: the client asks for the asynchronous request pattern (202 and a
/// status URL to poll).
pub fn respond_async(req: &HttpRequest) -> bool {
    req.headers().get_all("prefer").any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split([',', ';'])
                .any(|part| part.trim().eq_ignore_ascii_case("respond-async"))
        })
    })
}

pub use crate::interaction::bundle::Return;

pub fn prefer_return(req: &HttpRequest) -> Return {
    match prefer(req, "return") {
        Some("minimal") => Return::Minimal,
        Some("OperationOutcome") => Return::OperationOutcome,
        _ => Return::Representation,
    }
}

/// A version from an ETag-style header (`W/"3"`, `"3"` or `3`); 400 when malformed.
/// Refuses the precondition headers that mean nothing on a `method` interaction, by the
/// table Bundle entries follow too (`fhir::preconditions`); returns whether the request is
/// create-only (`If-None-Match: *` on an update).
pub fn preconditions(req: &HttpRequest, method: Method) -> Result<bool, ApiError> {
    for precondition in Precondition::ALL {
        let name = precondition.header();
        if let Some(value) = req.headers().get(name) {
            let value = value.to_str().unwrap_or("");
            fhir_preconditions::check(method, precondition, value, name)
                .map_err(|issue| ApiError::bad_request(issue.at(name)))?;
        }
    }
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    Ok(method == Method::Put && fhir_preconditions::create_only(if_none_match))
}

pub fn version_header(req: &HttpRequest, name: HeaderName) -> Result<Option<i64>, ApiError> {
    let Some(value) = req.headers().get(&name) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    crate::fhir::transaction::parse_etag(text)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(Issue::error(
                "invalid",
                format!("{name}: {text:?} is not a version tag; expected W/\"<versionId>\""),
            ))
        })
}

/// Reads the whole body, decompressed, refusing more than `limit` bytes with 413 (so a small
/// gzip bomb cannot inflate past the limit either).
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Issue::error(
                "too-costly",
                format!("the body is larger than the limit of {limit} bytes (--max-body-size)"),
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut stream = Decompress::from_headers(payload.into_inner(), req.headers());
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(Issue::error(
                "structure",
                format!("cannot read the body: {e}"),
            ))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
