//! The one error type of the pages, and the one place it becomes a response: a friendly
//! page, or a redirect to sign in. Nothing internal reaches the browser; details go to
//! the log.

use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use maud::html;

use crate::api::ApiFailure;
use crate::layout;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("not found")]
    NotFound,
    /// The page needs a signed-in user; the path to come back to.
    #[error("sign-in required")]
    SignInRequired(String),
    /// Signed in, but the object is someone else's.
    #[error("not yours")]
    NotYours,
    /// A post failed the CSRF checks.
    #[error("forbidden")]
    Forbidden,
    /// A post that is not one of our forms.
    #[error("malformed form")]
    BadForm,
    /// The API refused in a way no page expects (a 400 outside a form).
    #[error("refused: {0}")]
    Refused(String),
    #[error("API unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl From<ApiFailure> for PageError {
    fn from(failure: ApiFailure) -> Self {
        match failure {
            ApiFailure::Refused { status, errors } => match status {
                StatusCode::NOT_FOUND => PageError::NotFound,
                StatusCode::UNAUTHORIZED => PageError::NotYours,
                s if s.is_client_error() => PageError::Refused(
                    errors
                        .into_iter()
                        .map(|e| e.message)
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                s => PageError::Unavailable(format!("API answered {s}")),
            },
            ApiFailure::Unavailable(detail) => PageError::Unavailable(detail),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, text): (StatusCode, &str, &str) = match &self {
            PageError::SignInRequired(back_to) => {
                let target = format!(
                    "/auth/signin?next={}",
                    url::form_urlencoded::byte_serialize(back_to.as_bytes()).collect::<String>()
                );
                return Redirect::to(&target).into_response();
            }
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing here. The ticket or order may have been removed, or the address mistyped.",
            ),
            PageError::NotYours => (
                StatusCode::FORBIDDEN,
                "Not yours",
                "This belongs to another account. Sign in as its owner to see it.",
            ),
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form could not be accepted: it expired or came from another site. Go back, reload the page and try again.",
            ),
            PageError::BadForm => (
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The form sent was not understood. Go back, reload the page and try again.",
            ),
            PageError::Refused(message) => {
                tracing::info!(%message, "API refused a page's request");
                (
                    StatusCode::BAD_REQUEST,
                    "Request refused",
                    "That could not be done. Go back and try again.",
                )
            }
            PageError::Unavailable(detail) => {
                tracing::warn!(%detail, "API unavailable to the pages");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "The marketplace is not answering right now. Please try again in a moment.",
                )
            }
            PageError::Internal(detail) => {
                tracing::error!(%detail, "page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Something went wrong on our side. Please try again.",
                )
            }
        };
        let body = html! {
            section.error-page {
                p.error-code { (status.as_u16()) }
                h1 { (title) }
                p { (text) }
                p { a.button href="/" { "Back to the tickets" } }
            }
        };
        (status, layout::bare_page(title, body)).into_response()
    }
}
