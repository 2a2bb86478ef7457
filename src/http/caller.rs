//! Bearer-token extraction: every request under `/fhir` (but the CapabilityStatement) must
//! carry a valid access token, verified by `auth`; the caller it stands for is kept in the
//! request for handlers to ask `access` what it may do. Fails closed: a handler that finds
//! no identity refuses the request.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};

use super::error::ApiError;
use super::AppState;
use crate::access::{self, Caller, Decision, Operation};
use crate::auth::TokenError;
use crate::interaction::error::Challenge;

/// Who a request was found to come from.
#[derive(Clone)]
enum Identity {
    /// Authorization is switched off (`--insecure-no-auth`).
    Anyone,
    Caller(Arc<Caller>),
}

/// Paths under `/fhir` that need no token.
fn is_public(path: &str) -> bool {
    path == "/fhir/metadata" || path.starts_with("/fhir/.well-known/")
}

/// The middleware: 401 without a valid bearer token.
pub async fn authenticate<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    match identify(&req).await {
        Ok(identity) => {
            if let Some(identity) = identity {
                req.extensions_mut().insert(identity);
            }
            Ok(next.call(req).await?.map_into_left_body())
        }
        // Answered here (not raised) so that the outer middleware still adds its headers.
        Err(e) => Ok(req.error_response(e).map_into_right_body()),
    }
}

/// The identity of `req`; `None` for the public paths.
async fn identify(req: &ServiceRequest) -> Result<Option<Identity>, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("the server state is missing"))?;
    if !state.require_auth {
        return Ok(Some(Identity::Anyone));
    }
    if is_public(req.path()) {
        return Ok(None);
    }
    let token = bearer_token(req)?;
    let caller = if state.store.has_idle_connection() {
        state.authority.verify(&state.store, &token)
    } else {
        let worker = state.clone();
        web::block(move || worker.authority.verify(&worker.store, &token)).await?
    }
    .map_err(|e| match e {
        TokenError::Invalid(message) => ApiError::unauthorized(Challenge::InvalidToken, message),
        TokenError::Store(e) => e.into(),
    })?;
    Ok(Some(Identity::Caller(caller)))
}

fn bearer_token(req: &ServiceRequest) -> Result<String, ApiError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            Challenge::Missing,
            "this server needs an access token: send 'Authorization: Bearer <token>' (see \
             /.well-known/smart-configuration, or `carnet token` for operators)",
        ));
    };
    let text = value.to_str().unwrap_or("");
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_string())
        }
        _ => Err(ApiError::unauthorized(
            Challenge::InvalidRequest,
            "the Authorization header must be 'Bearer <token>'",
        )),
    }
}

/// The verified caller of `req` (`None` when authorization is off).
pub(crate) fn caller(req: &HttpRequest) -> Result<Option<Arc<Caller>>, ApiError> {
    match req.extensions().get::<Identity>() {
        Some(Identity::Anyone) => Ok(None),
        Some(Identity::Caller(caller)) => Ok(Some(caller.clone())),
        None => Err(ApiError::internal(
            "the request reached a handler without being authenticated",
        )),
    }
}

/// What the caller of `req` may touch doing `operation` on `res_type`; 403 naming the
/// missing scope otherwise.
pub(crate) fn decide(
    req: &HttpRequest,
    operation: Operation,
    res_type: &str,
) -> Result<Decision, ApiError> {
    let caller = caller(req)?;
    access::decide(caller.as_deref(), operation, res_type)
        .map_err(|access::Denied(message)| ApiError::forbidden(message))
}
