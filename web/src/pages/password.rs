//! `/auth/password`: change the password (the API ends every other session and sets a
//! new cookie, which the page relays), and sign out everywhere.

use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;
use maud::html;
use serde::Deserialize;
use ticketing_contracts::api::users::SessionUser;

use super::see_other;
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::layout::{self, csrf_field, Chrome, FormErrors, Input};
use crate::session::Visitor;
use crate::Settings;

const PATH: &str = "/auth/password";
const FIELDS: [&str; 2] = ["currentPassword", "newPassword"];

#[derive(Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    changed: Option<String>,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default, rename = "currentPassword")]
    current_password: String,
    #[serde(default, rename = "newPassword")]
    new_password: String,
}

pub async fn form(
    State(settings): State<Settings>,
    visitor: Visitor,
    Query(done): Query<Done>,
) -> Result<Response, PageError> {
    let user = visitor.require_user(&settings.api, PATH).await?;
    Ok(render(
        &visitor,
        &user,
        done.changed.is_some(),
        &FormErrors::none(),
        StatusCode::OK,
    ))
}

pub async fn change(
    State(settings): State<Settings>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<PasswordForm>,
) -> Result<Response, PageError> {
    let user = visitor.require_user(&settings.api, PATH).await?;
    match settings
        .api
        .change_password(
            visitor.session(),
            &form.current_password,
            &form.new_password,
        )
        .await
    {
        Ok(reply) => Ok(see_other(&format!("{PATH}?changed=1"), reply.set_cookies)),
        Err(failure) => {
            // Neither password is ever sent back to the browser.
            let errors = FormErrors::new(failure.into_bad_request()?);
            Ok(render(
                &visitor,
                &user,
                false,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
    }
}

pub async fn sign_out_everywhere(
    State(settings): State<Settings>,
    visitor: Visitor,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    let reply = settings.api.sign_out_everywhere(visitor.session()).await?;
    Ok(see_other("/", reply.set_cookies))
}

fn render(
    visitor: &Visitor,
    user: &SessionUser,
    changed: bool,
    errors: &FormErrors,
    status: StatusCode,
) -> Response {
    let chrome = Chrome {
        user: Some(user),
        csrf: &visitor.csrf,
    };
    let body = html! {
        section.card.narrow {
            h1 { "Change password" }
            @if changed {
                p.alert.alert-success #password-changed role="status" {
                    strong { "Password changed." } " Every other session of this account is signed out."
                }
            }
            form.stack method="post" action=(PATH) novalidate {
                (csrf_field(&visitor.csrf))
                (errors.summary(&FIELDS))
                (Input::new("Current password", "currentPassword", "password", "")
                    .autocomplete("current-password")
                    .render(errors))
                (Input::new("New password", "newPassword", "password", "")
                    .autocomplete("new-password")
                    .hint("8 to 128 characters. Your other sessions are signed out.")
                    .render(errors))
                button.button.button-block type="submit" { "Change password" }
            }
        }
        section.card.narrow {
            h2 { "Sessions" }
            p.muted { "Signed in as " strong { (user.email) } ". Signed in on another device, or on a computer you no longer use? End every session of this account, this one included." }
            form method="post" action="/auth/signout-everywhere" {
                (csrf_field(&visitor.csrf))
                button.button.button-block #sign-out-everywhere type="submit" { "Sign out everywhere" }
            }
        }
    };
    layout::render(status, layout::page("Change password", &chrome, body))
}
