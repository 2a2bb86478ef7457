//! The failure of an interaction, whichever door it came through: a status and the issues
//! that explain it, rendered as an OperationOutcome (by `http::error` for REST, in the report
//! of `carnet import`). The status is an HTTP status because FHIR speaks in them, in Bundle
//! responses too.

use std::fmt;

use actix_web::http::StatusCode;

use crate::fhir::outcome::Issue;
use crate::store::search::SearchError;
use crate::store::StoreError;

/// A failed request: a status and the issues explaining it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub issues: Vec<Issue>,
    /// For 405: the methods the path does allow.
    pub allow: Option<String>,
    /// The database gave up the work because of concurrent transactions (a deadlock or a
    /// serialization failure): running it again may succeed.
    pub transient: bool,
    /// For 401: what the `WWW-Authenticate` challenge says.
    pub challenge: Option<Challenge>,
}

/// RFC 6750's error of a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No token was sent: the challenge carries no error.
    Missing,
    InvalidToken,
    InvalidRequest,
}

impl Challenge {
    pub fn error(self) -> Option<&'static str> {
        match self {
            Challenge::Missing => None,
            Challenge::InvalidToken => Some("invalid_token"),
            Challenge::InvalidRequest => Some("invalid_request"),
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, issue: Issue) -> ApiError {
        ApiError {
            status,
            issues: vec![issue],
            allow: None,
            transient: false,
            challenge: None,
        }
    }

    pub fn with_issues(status: StatusCode, issues: Vec<Issue>) -> ApiError {
        ApiError {
            status,
            issues,
            allow: None,
            transient: false,
            challenge: None,
        }
    }

    pub fn bad_request(issue: Issue) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, issue)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Issue::error("not-found", diagnostics),
        )
    }

    pub fn gone(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GONE, Issue::error("deleted", diagnostics))
    }

    pub fn method_not_allowed(method: &str, path: &str, allow: String) -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            issues: vec![Issue::error(
                "not-supported",
                format!("{method} is not supported on {path}; allowed: {allow}"),
            )],
            allow: Some(allow),
            transient: false,
            challenge: None,
        }
    }

    /// 401: no usable access token.
    pub fn unauthorized(challenge: Challenge, diagnostics: impl Into<String>) -> ApiError {
        let code = if challenge == Challenge::Missing {
            "login"
        } else {
            "security"
        };
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, Issue::error(code, diagnostics));
        e.challenge = Some(challenge);
        e
    }

    /// 403: the caller is known but may not do this.
    pub fn forbidden(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            Issue::error("forbidden", diagnostics),
        )
    }

    pub fn internal(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Issue::error("exception", diagnostics),
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self
            .issues
            .first()
            .map(|i| i.diagnostics.as_str())
            .unwrap_or("");
        write!(f, "{}: {}", self.status, first)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let (status, code) = match &e {
            StoreError::VersionConflict { .. } => (StatusCode::PRECONDITION_FAILED, "conflict"),
            StoreError::AlreadyExists | StoreError::DuplicateIdentifier { .. } => {
                (StatusCode::CONFLICT, "duplicate")
            }
            StoreError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            StoreError::Contention => (StatusCode::CONFLICT, "transient"),
            StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "transient"),
            StoreError::Config(_)
            | StoreError::Migration(_)
            | StoreError::Database(_)
            | StoreError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "exception"),
        };
        // Database and configuration details stay in the log, not in answers to clients.
        let diagnostics = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            log::error!("{e}");
            "internal error; the server log has the details".to_string()
        } else {
            e.to_string()
        };
        let mut error = ApiError::new(status, Issue::error(code, diagnostics));
        error.transient = matches!(e, StoreError::Contention);
        error
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        match e {
            SearchError::Store(e) => e.into(),
            SearchError::Plan(e) => {
                ApiError::bad_request(Issue::error("not-supported", e.to_string()))
            }
            SearchError::BadCursor => {
                ApiError::bad_request(Issue::error("value", e.to_string()).at("_cursor"))
            }
        }
    }
}
