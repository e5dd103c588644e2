//! The page shell (head, header, footer) and form pieces shared by the pages.

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use maud::{html, Markup, DOCTYPE};

use crate::assets;
use ticketing_contracts::api::users::SessionUser;
use ticketing_contracts::ErrorItem;

/// What the header needs: who is signed in, and the token for the sign-out form.
pub struct Chrome<'a> {
    pub user: Option<&'a SessionUser>,
    pub csrf: &'a str,
}

/// A full page: the header knows the visitor.
pub fn page(title: &str, chrome: &Chrome, main: Markup) -> Markup {
    shell(title, Some(chrome), main, &[], None)
}

/// A full page that reloads itself every `seconds` (`<meta http-equiv="refresh">`: a
/// place in a line moves without JavaScript).
pub fn page_refreshing(title: &str, chrome: &Chrome, main: Markup, seconds: u32) -> Markup {
    shell(title, Some(chrome), main, &[], Some(seconds))
}

/// A full page with extra scripts (Stripe.js on the payment page).
pub fn page_with_scripts(title: &str, chrome: &Chrome, main: Markup, scripts: &[&str]) -> Markup {
    shell(title, Some(chrome), main, scripts, None)
}

/// Error pages: the visitor may be unknown, so the header has no account links.
pub fn bare_page(title: &str, main: Markup) -> Html<String> {
    Html(shell(title, None, main, &[], None).into_string())
}

pub fn render(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

fn shell(
    title: &str,
    chrome: Option<&Chrome>,
    main: Markup,
    scripts: &[&str],
    refresh: Option<u32>,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) " · Ticketing" }
                link rel="stylesheet" href=(assets::css_url());
                link rel="icon" type="image/svg+xml" href=(assets::icon_url());
                script src=(assets::js_url()) defer {}
                @for src in scripts {
                    script src=(src) defer {}
                }
            }
            body {
                a.skip-link href="#main" { "Skip to content" }
                header.site-header {
                    nav.nav aria-label="Main" {
                        a.brand href="/" { span.brand-mark aria-hidden="true" { "◆" } "Ticketing" }
                        @if let Some(chrome) = chrome {
                            (nav_links(chrome))
                        }
                    }
                }
                main #main .container { (main) }
                footer.site-footer .container {
                    p { "Ticketing — buy and sell tickets. Reservations hold a ticket while you pay." }
                }
            }
        }
    }
}

/// The seed's header: signed in, sell/orders/sign out; otherwise sign up/sign in.
fn nav_links(chrome: &Chrome) -> Markup {
    html! {
        ul.nav-links {
            @match chrome.user {
                Some(user) => {
                    li { a href="/tickets/new" { "Sell tickets" } }
                    li { a href="/orders" { "My orders" } }
                    li { a href="/webhooks" { "Webhooks" } }
                    li { a href="/checkin" { "Gates" } }
                    li.nav-user { a.who href="/auth/password" title={ (user.email) ": change password, sign out everywhere" } { (user.email) } }
                    li {
                        form.inline method="post" action="/auth/signout" {
                            input type="hidden" name="csrf" value=(chrome.csrf);
                            button.link-button type="submit" { "Sign out" }
                        }
                    }
                }
                None => {
                    li { a href="/auth/signin" { "Sign in" } }
                    li { a.button.button-small href="/auth/signup" { "Sign up" } }
                }
            }
        }
    }
}

/// The API's errors for one form: by field, and the rest for the top of the form.
#[derive(Debug, Default)]
pub struct FormErrors(Vec<ErrorItem>);

impl FormErrors {
    pub const fn none() -> FormErrors {
        FormErrors(Vec::new())
    }

    pub fn new(items: Vec<ErrorItem>) -> FormErrors {
        FormErrors(items)
    }

    pub fn message(message: impl Into<String>) -> FormErrors {
        FormErrors(vec![ErrorItem {
            message: message.into(),
            field: None,
        }])
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|e| e.field.as_deref() == Some(name))
            .map(|e| e.message.as_str())
    }

    /// Messages not shown beside one of `fields`.
    pub fn general<'a>(&'a self, fields: &[&str]) -> Vec<&'a str> {
        self.0
            .iter()
            .filter(|e| e.field.as_deref().is_none_or(|f| !fields.contains(&f)))
            .map(|e| e.message.as_str())
            .collect()
    }

    /// The alert at the top of a form.
    pub fn summary(&self, fields: &[&str]) -> Markup {
        let general = self.general(fields);
        html! {
            @if !general.is_empty() {
                div.alert.alert-error role="alert" {
                    @for message in general { p { (message) } }
                }
            }
        }
    }
}

/// One labelled input with its error beside it.
pub struct Input<'a> {
    pub label: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub value: &'a str,
    pub autocomplete: &'a str,
    pub hint: Option<&'a str>,
    pub inputmode: Option<&'a str>,
    pub required: bool,
}

impl<'a> Input<'a> {
    pub fn new(label: &'a str, name: &'a str, kind: &'a str, value: &'a str) -> Input<'a> {
        Input {
            label,
            name,
            kind,
            value,
            autocomplete: "off",
            hint: None,
            inputmode: None,
            required: true,
        }
    }

    /// A field that may be left empty.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    pub fn autocomplete(mut self, value: &'a str) -> Self {
        self.autocomplete = value;
        self
    }

    pub fn hint(mut self, hint: &'a str) -> Self {
        self.hint = Some(hint);
        self
    }

    pub fn inputmode(mut self, mode: &'a str) -> Self {
        self.inputmode = Some(mode);
        self
    }

    pub fn render(&self, errors: &FormErrors) -> Markup {
        let id = format!("f-{}", self.name);
        let error = errors.field(self.name);
        let error_id = format!("{id}-error");
        let hint_id = format!("{id}-hint");
        let described = match (error.is_some(), self.hint.is_some()) {
            (true, true) => Some(format!("{error_id} {hint_id}")),
            (true, false) => Some(error_id.clone()),
            (false, true) => Some(hint_id.clone()),
            (false, false) => None,
        };
        html! {
            div.field.has-error[error.is_some()] {
                label for=(id) { (self.label) }
                input id=(id) name=(self.name) type=(self.kind) value=(self.value)
                    autocomplete=(self.autocomplete) inputmode=[self.inputmode]
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[described] required[self.required];
                @if let Some(error) = error {
                    p.field-error id=(error_id) { (error) }
                }
                @if let Some(hint) = self.hint {
                    p.field-hint id=(hint_id) { (hint) }
                }
            }
        }
    }
}

/// The hidden token every state-changing form carries.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_field_is_not_required() {
        let none = FormErrors::none();
        let required = Input::new("Title", "title", "text", "")
            .render(&none)
            .into_string();
        assert!(required.contains(" required>"), "{required}");
        let optional = Input::new("Quantity", "quantity", "number", "")
            .optional()
            .render(&none)
            .into_string();
        assert!(!optional.contains("required"), "{optional}");
    }
}
