//! `POST [base]` with a `transaction` or `batch` Bundle: the request's body, scope and
//! preferences handed to `interaction::transaction`, which does the work.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::error::ApiError;
use crate::http::negotiate::{body_kind, reply_format, unsupported, Body};
use crate::http::request::{prefer, prefer_return, read_body, Params};
use crate::http::AppState;
use crate::interaction::transaction::{run, Context};

/// `POST [base]`.
pub async fn process(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req)?;
    params.reject_unknown(&req, &[])?;
    let reply = reply_format(&req, params.get("_format"))?;
    if body_kind(&req)? != Body::FhirJson {
        return Err(unsupported(
            "POST to the base takes a transaction or batch Bundle in application/fhir+json",
        ));
    }
    let bytes = read_body(&req, payload, state.max_body_bytes).await?;
    let context = Context {
        caller: crate::http::caller::caller(&req)?,
        prefer: prefer_return(&req),
        lenient: prefer(&req, "handling") == Some("lenient"),
    };
    let worker = state.clone();
    let body = web::block(move || run(&worker, &context, &bytes)).await??;
    Ok(HttpResponse::Ok()
        .content_type(reply.content_type())
        .body(body))
}
