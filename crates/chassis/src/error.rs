//! One error type for every handler, rendered as RFC 9457 problem+json.
//!
//! Handlers return `Result<_, ApiError>`. Client mistakes become a 4xx that
//! says what to fix. Everything else becomes an opaque 500: the cause is
//! logged (inside the request's span, so the line carries the request id) and
//! the body holds neither SQL nor internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dure_contracts::problem::{FieldError, PROBLEM_JSON, Problem};
use std::time::Duration;

/// What went wrong, and so which status the client gets.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, has a wrong type or an unexpected field.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials that are not valid (any more).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: valid credentials that do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: nothing at this path (or nothing the caller may know about).
    #[error("{0}")]
    NotFound(String),
    /// 409: the change conflicts with existing state (a taken username).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than this endpoint accepts.
    #[error("the request body is larger than this endpoint accepts")]
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed JSON whose values break the rules, one entry a field.
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    /// 429: too many attempts; try again after `retry_after`.
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after: Duration,
    },
    /// 503: a dependency is unavailable; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// 503: a dependency's circuit breaker is open; try after `retry_after`.
    #[error("{detail}")]
    CircuitOpen {
        detail: String,
        retry_after: Duration,
    },
    /// 502: the upstream failed to answer properly (gateway only).
    #[error("{0}")]
    BadGateway(String),
    /// 504: the upstream did not answer in time (gateway only).
    #[error("{0}")]
    GatewayTimeout(String),
    /// 500: a bug or an infrastructure failure. The cause is only logged.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad-request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Validation(_) => "validation-failed",
            Self::TooManyRequests { .. } => "too-many-requests",
            Self::Unavailable(_) | Self::CircuitOpen { .. } => "service-unavailable",
            Self::BadGateway(_) => "bad-gateway",
            Self::GatewayTimeout(_) => "gateway-timeout",
            Self::Internal(_) => "internal-error",
        }
    }

    /// The problem body the client sees.
    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let problem = Problem::new(self.slug(), title, status.as_u16());
        match self {
            Self::Internal(_) => {
                problem.with_detail("an internal error occurred; it has been logged")
            }
            Self::Validation(errors) => Problem {
                errors: errors.clone(),
                ..problem.with_detail("some fields are invalid")
            },
            other => problem.with_detail(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            // `{:#}` prints the whole context chain on one line.
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let mut response = problem_response(self.to_problem());
        match &self {
            Self::TooManyRequests { retry_after, .. } | Self::CircuitOpen { retry_after, .. } => {
                // Round up: retrying a little late is fine, early is not.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            Self::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// Renders a problem with its status and media type. The request id is added
/// by the HTTP layer on the way out.
pub fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

/// Maps a unique-constraint violation to a 409 naming the field.
///
/// `uniques` lists `(field, postgres constraint name, sqlite "table.column")`:
/// Postgres reports the constraint, SQLite the column, and both mean the same
/// rule. Any other database error becomes a 500.
#[cfg(feature = "storage")]
pub fn conflict_or_internal(err: sqlx::Error, uniques: &[(&str, &str, &str)]) -> ApiError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        let message = db.message();
        for (field, constraint, column) in uniques {
            let matches_pg = db.constraint() == Some(*constraint);
            let matches_sqlite = message.contains(column);
            if matches_pg || matches_sqlite {
                return ApiError::Conflict(format!("{field} is already taken"));
            }
        }
        return ApiError::Conflict("this conflicts with an existing record".into());
    }
    ApiError::Internal(err.into())
}

#[cfg(feature = "storage")]
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        conflict_or_internal(err, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let err = ApiError::Internal(anyhow::anyhow!("SELECT secret FROM users failed"));
        let problem = err.to_problem();
        assert_eq!(problem.status, 500);
        let json = serde_json::to_string(&problem).unwrap();
        assert!(!json.contains("SELECT"), "{json}");
    }

    #[test]
    fn validation_lists_fields() {
        let problem = ApiError::validation("username", "too short").to_problem();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].field, "username");
        assert_eq!(problem.kind, "urn:dure:problem:validation-failed");
    }

    #[test]
    fn too_many_requests_carries_retry_after_rounded_up() {
        let response = ApiError::TooManyRequests {
            detail: "slow down".into(),
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}

/// Collects field errors so that one 422 can list every invalid field.
#[derive(Debug, Default)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// Keeps the value of a successful check; records the error otherwise.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    pub fn push(&mut self, field: &str, message: &str) {
        self.0.push(FieldError::new(field, message));
    }

    /// 422 listing every recorded error, if there is any.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}
