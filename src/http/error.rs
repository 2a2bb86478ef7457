//! The one place where failures become HTTP responses: every error is an OperationOutcome.
//! The error itself ([`ApiError`]) belongs to `interaction`, which every door shares.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::fhir::outcome::operation_outcome;
pub use crate::interaction::error::ApiError;

use super::negotiate::FHIR_JSON;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            log::error!("{self}");
        }
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON)));
        if let Some(challenge) = self.challenge {
            let description = self
                .issues
                .first()
                .map(|i| i.diagnostics.replace(['"', '\\'], "'"))
                .unwrap_or_default();
            let challenge = match challenge.error() {
                None => "Bearer realm=\"carnet\"".to_string(),
                Some(error) => format!(
                    "Bearer realm=\"carnet\", error=\"{error}\", error_description=\"{description}\""
                ),
            };
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.insert_header((header::WWW_AUTHENTICATE, value));
            }
        }
        if let Some(allow) = &self.allow {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        response.body(operation_outcome(&self.issues).to_string())
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> ApiError {
        ApiError::internal("the database worker stopped unexpectedly")
    }
}
