//! CORS for browser apps (SMART public clients run in the browser): any origin may call,
//! since access is carried by bearer tokens, never by cookies. A preflight is answered before
//! routing.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpResponse;

/// Headers a browser app may read from responses.
const EXPOSED: &str =
    "Location, Content-Location, ETag, Last-Modified, WWW-Authenticate, X-Progress, Retry-After";

pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !req.headers().contains_key(header::ORIGIN) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let asked = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("Authorization, Content-Type"));
        let response = HttpResponse::build(StatusCode::NO_CONTENT)
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
            ))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, asked))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
            .finish();
        return Ok(req.into_response(response));
    }
    let mut response = next.call(req).await?.map_into_boxed_body();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    Ok(response)
}
