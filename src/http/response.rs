//! Building successful responses with the FHIR headers: ETag, Last-Modified, Location.

use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::header::{self, HttpDate};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};

use super::negotiate::Reply;
use super::request::Return;
use crate::interaction::bundle::written_outcome;

/// What the headers of a resource response describe.
pub struct VersionInfo<'a> {
    pub res_type: &'a str,
    pub res_id: &'a str,
    pub version: i64,
    pub last_updated: i64,
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

pub fn http_date(micros: i64) -> HttpDate {
    let secs = u64::try_from(micros.div_euclid(1_000_000)).unwrap_or(0);
    HttpDate::from(UNIX_EPOCH + Duration::from_secs(secs))
}

/// A builder with ETag and Last-Modified set. `Date` is set too: actix-web's cached date can
/// lag by up to half a second, and Last-Modified must never be later than Date.
pub fn versioned(status: StatusCode, info: &VersionInfo<'_>) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::ETAG, etag(info.version)))
        .insert_header((header::LAST_MODIFIED, http_date(info.last_updated)))
        .insert_header((header::DATE, HttpDate::from(std::time::SystemTime::now())));
    response
}

/// The answer to a create, update or patch, honouring `Prefer: return`.
pub fn written(
    status: StatusCode,
    info: &VersionInfo<'_>,
    base_url: &str,
    reply: Reply,
    prefer: Return,
    body: String,
) -> HttpResponse {
    let mut response = versioned(status, info);
    response.insert_header((
        header::LOCATION,
        format!(
            "{base_url}/{}/{}/_history/{}",
            info.res_type, info.res_id, info.version
        ),
    ));
    match prefer {
        Return::Minimal => response.finish(),
        Return::Representation => response.content_type(reply.content_type()).body(body),
        Return::OperationOutcome => {
            response
                .content_type(reply.content_type())
                .body(written_outcome(
                    status == StatusCode::CREATED,
                    info.res_type,
                    info.res_id,
                    info.version,
                ))
        }
    }
}
