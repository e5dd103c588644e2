//! `/auth/signup`, `/auth/signin`, `/auth/signout`: the API sets or clears the session
//! cookie and the page relays it. `/auth/password` is `password.rs`.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use maud::{html, Markup};
use serde::Deserialize;

use super::see_other;
use crate::api;
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::layout::{self, csrf_field, Chrome, FormErrors, Input};
use crate::session::Visitor;
use crate::Settings;

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

#[derive(Clone, Copy)]
enum Kind {
    SignUp,
    SignIn,
}

impl Kind {
    fn title(self) -> &'static str {
        match self {
            Kind::SignUp => "Sign up",
            Kind::SignIn => "Sign in",
        }
    }
    fn action(self) -> &'static str {
        match self {
            Kind::SignUp => "/auth/signup",
            Kind::SignIn => "/auth/signin",
        }
    }
}

pub async fn signup_form(
    state: State<Settings>,
    visitor: Visitor,
    Query(query): Query<NextQuery>,
) -> Result<Response, PageError> {
    form_page(state, visitor, Kind::SignUp, &local_path(&query.next)).await
}

pub async fn signin_form(
    state: State<Settings>,
    visitor: Visitor,
    Query(query): Query<NextQuery>,
) -> Result<Response, PageError> {
    form_page(state, visitor, Kind::SignIn, &local_path(&query.next)).await
}

async fn form_page(
    State(settings): State<Settings>,
    visitor: Visitor,
    kind: Kind,
    next: &str,
) -> Result<Response, PageError> {
    // Already signed in: nothing to do here.
    if settings
        .api
        .current_user(visitor.session())
        .await?
        .is_some()
    {
        return Ok(Redirect::to(next).into_response());
    }
    Ok(render(
        &visitor,
        kind,
        "",
        next,
        &FormErrors::default(),
        StatusCode::OK,
    ))
}

pub async fn signup(
    state: State<Settings>,
    visitor: Visitor,
    form: CsrfForm<Credentials>,
) -> Result<Response, PageError> {
    submit(state, visitor, form, Kind::SignUp).await
}

pub async fn signin(
    state: State<Settings>,
    visitor: Visitor,
    form: CsrfForm<Credentials>,
) -> Result<Response, PageError> {
    submit(state, visitor, form, Kind::SignIn).await
}

async fn submit(
    State(settings): State<Settings>,
    visitor: Visitor,
    CsrfForm(form): CsrfForm<Credentials>,
    kind: Kind,
) -> Result<Response, PageError> {
    let next = local_path(&form.next);
    let api_path = match kind {
        Kind::SignUp => api::SIGN_UP,
        Kind::SignIn => api::SIGN_IN,
    };
    match settings
        .api
        .authenticate(api_path, &form.email, &form.password)
        .await
    {
        Ok(reply) => Ok(see_other(&next, reply.set_cookies)),
        // The API's limits per address and per account (decision 0030): said on the form.
        Err(failure) if failure.status() == Some(StatusCode::TOO_MANY_REQUESTS) => Ok(render(
            &visitor,
            kind,
            &form.email,
            &next,
            &FormErrors::message("Too many attempts. Please wait a minute and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        )),
        Err(failure) => {
            let errors = FormErrors::new(failure.into_bad_request()?);
            // The e-mail is kept; the password is never sent back to the browser.
            Ok(render(
                &visitor,
                kind,
                &form.email,
                &next,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
    }
}

fn render(
    visitor: &Visitor,
    kind: Kind,
    email: &str,
    next: &str,
    errors: &FormErrors,
    status: StatusCode,
) -> Response {
    let chrome = Chrome {
        user: None,
        csrf: &visitor.csrf,
    };
    let (password_autocomplete, password_hint, other) = match kind {
        Kind::SignUp => (
            "new-password",
            Some("8 to 128 characters."),
            html! { "Already have an account? " a href=(with_next("/auth/signin", next)) { "Sign in" } },
        ),
        Kind::SignIn => (
            "current-password",
            None,
            html! { "New here? " a href=(with_next("/auth/signup", next)) { "Create an account" } },
        ),
    };
    let mut password =
        Input::new("Password", "password", "password", "").autocomplete(password_autocomplete);
    if let Some(hint) = password_hint {
        password = password.hint(hint);
    }
    let body = html! {
        section.card.narrow {
            h1 { (kind.title()) }
            form.stack method="post" action=(kind.action()) novalidate {
                (csrf_field(&visitor.csrf))
                input type="hidden" name="next" value=(next);
                (errors.summary(&["email", "password"]))
                (Input::new("Email", "email", "email", email).autocomplete("email").render(errors))
                (password.render(errors))
                button.button.button-block type="submit" { (kind.title()) }
            }
            p.muted { (other) }
        }
    };
    layout::render(status, layout::page(kind.title(), &chrome, body))
}

fn with_next(path: &str, next: &str) -> String {
    if next == "/" {
        return path.to_owned();
    }
    let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("{path}?next={encoded}")
}

/// Where to go after signing in: a path on this site, never another site (`//evil`,
/// `/\evil` and absolute URLs are open redirects).
pub fn local_path(next: &str) -> String {
    let safe = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if safe {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

pub async fn signout_form(
    State(settings): State<Settings>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    let Some(user) = settings.api.current_user(visitor.session()).await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let chrome = Chrome {
        user: Some(&user),
        csrf: &visitor.csrf,
    };
    let body: Markup = html! {
        section.card.narrow {
            h1 { "Sign out" }
            p { "You are signed in as " strong { (user.email) } "." }
            form method="post" action="/auth/signout" {
                (csrf_field(&visitor.csrf))
                button.button.button-block type="submit" { "Sign out" }
            }
        }
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Sign out", &chrome, body),
    ))
}

pub async fn signout(
    State(settings): State<Settings>,
    visitor: Visitor,
    CsrfForm(_): CsrfForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    let reply = settings.api.sign_out(visitor.session()).await?;
    Ok(see_other("/", reply.set_cookies))
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(local_path("/tickets/new"), "/tickets/new");
        assert_eq!(local_path("/orders?x=1"), "/orders?x=1");
        for evil in [
            "//evil.test",
            "/\\evil.test",
            "https://evil.test",
            "",
            "orders",
            "/a\\b",
            "/\n",
        ] {
            assert_eq!(local_path(evil), "/", "{evil:?}");
        }
    }
}
