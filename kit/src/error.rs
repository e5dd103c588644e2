//! The one error type of the HTTP boundary, rendered in the contract's format:
//! `{"errors":[{"message": "...", "field": "..."}]}`.
//!
//! Internal errors are logged with their detail and answered with generic text only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ticketing_contracts::api::queue::QueuePlace;
pub use ticketing_contracts::error::{ErrorBody, ErrorItem};

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One entry per failing field.
    #[error("invalid request")]
    Validation(Vec<ErrorItem>),
    /// A business rule refused the request.
    #[error("{0}")]
    BadRequest(String),
    #[error("User not authorized.")]
    NotAuthorized,
    /// The caller may not do this now, whoever they are (a cancellation past its
    /// policy's cutoff): 403 with the reason.
    #[error("{0}")]
    Forbidden(String),
    #[error("Not found.")]
    NotFound,
    #[error("Request body too large.")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Service unavailable.")]
    Unavailable,
    /// A rate limit refused the request; the client may retry after this many seconds.
    #[error("Too many requests, try again later.")]
    TooManyRequests { retry_after_secs: u64 },
    /// The server is at capacity for this kind of work (503 with `Retry-After`).
    #[error("Service unavailable.")]
    Busy { retry_after_secs: u64 },
    /// The listing's on-sale queue has not admitted the caller yet (429 with
    /// `Retry-After` rising with the position, and the place in a `queue` member).
    #[error("You are in the queue")]
    InQueue(QueuePlace),
    /// An `Idempotency-Key` reused with another request.
    #[error("{0}")]
    Unprocessable(String),
    /// An object (`Order`, `Ticket`) created moments ago elsewhere has not reached this
    /// service's replica within the wait (409 with `Retry-After: 1`; decision 0029).
    #[error("{0} is not known here yet; try again")]
    NotKnownYet(&'static str),
    /// An `Idempotency-Key` whose first request is still running.
    #[error("A request with this Idempotency-Key is in progress. Please try again.")]
    KeyInUse,
    /// A provider behind us (payments) failed; retrying the same request is safe.
    #[error("The payment provider failed. Please try again.")]
    BadGateway,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![ErrorItem {
            message: message.into(),
            field: Some(field.to_owned()),
        }])
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotAuthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } | ApiError::InQueue(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::BadGateway => StatusCode::BAD_GATEWAY,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::KeyInUse | ApiError::NotKnownYet(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn items(&self) -> Vec<ErrorItem> {
        let plain = |message: String| {
            vec![ErrorItem {
                message,
                field: None,
            }]
        };
        match self {
            ApiError::Validation(items) => items.clone(),
            ApiError::InQueue(QueuePlace {
                position: Some(position),
                ..
            }) => plain(format!(
                "You are in the queue (position {})",
                thousands(*position)
            )),
            ApiError::Internal(_) => plain("Something went wrong.".to_owned()),
            other => plain(other.to_string()),
        }
    }
}

/// A store error a handler did not turn into a domain outcome: a closed store (the
/// process is stopping) is a 503 the client may retry elsewhere, a busy database (no
/// connection to be had) a 503 with `Retry-After`, anything else a 500 whose details go
/// to the log only.
impl From<ticketing_store::Error> for ApiError {
    fn from(err: ticketing_store::Error) -> Self {
        match err {
            ticketing_store::Error::Closed => ApiError::Unavailable,
            ticketing_store::Error::Busy(why) => {
                tracing::warn!(%why, "database busy: answering 503");
                ApiError::Busy {
                    retry_after_secs: 1,
                }
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "request failed");
        }
        let body = ErrorBody {
            errors: self.items(),
        };
        let mut response = match &self {
            ApiError::InQueue(place) => {
                let body = serde_json::json!({"errors": body.errors, "queue": place});
                (self.status(), Json(body)).into_response()
            }
            _ => (self.status(), Json(body)).into_response(),
        };
        if let ApiError::InQueue(place) = &self {
            // Polls spread with the wait: the head asks again soon, the back rarely.
            let retry = place.eta_seconds.unwrap_or(30).clamp(1, 30) as u64;
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry),
            );
        }
        if let ApiError::NotKnownYet(_) = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(1),
            );
        }
        if let ApiError::TooManyRequests { retry_after_secs }
        | ApiError::Busy { retry_after_secs } = self
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        response
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Unknown routes answer 404 in the contract's format.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak() {
        let err = ApiError::Internal(anyhow::anyhow!("password=hunter2 at db.internal"));
        let items = err.items();
        assert_eq!(items[0].message, "Something went wrong.");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_busy_database_is_a_503_to_retry_not_a_500() {
        let err = ApiError::from(ticketing_store::Error::Busy(
            "sorry, too many clients already".into(),
        ));
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        let res = err.into_response();
        assert_eq!(res.headers()["retry-after"], "1");
    }

    #[test]
    fn positions_are_written_with_thousands_separators() {
        let cases = [
            (1, "1"),
            (999, "999"),
            (1_234, "1,234"),
            (1_234_567, "1,234,567"),
        ];
        for (n, text) in cases {
            assert_eq!(thousands(n), text);
        }
    }
}
