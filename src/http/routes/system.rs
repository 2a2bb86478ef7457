//! Routes outside FHIR resources: health, and the answers for unroutable requests.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::error::ApiError;
use crate::http::AppState;

/// 200 once the database answers and is migrated; 503 otherwise (for load balancers).
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let store = state.clone();
    match web::block(move || store.store.check_health()).await {
        Ok(Ok(())) => HttpResponse::Ok()
            .content_type("application/json")
            .body(r#"{"status":"ok"}"#),
        Ok(Err(e)) => {
            // The reason goes to the log; /health is unauthenticated.
            log::warn!("health check failed: {e}");
            HttpResponse::ServiceUnavailable()
                .content_type("application/json")
                .body(r#"{"status":"unavailable"}"#)
        }
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

pub async fn method_not_allowed(req: HttpRequest, allow: String) -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed(
        req.method().as_str(),
        req.path(),
        allow,
    ))
}
