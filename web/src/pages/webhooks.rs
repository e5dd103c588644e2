//! `/webhooks`: a seller's endpoints (create — the secret shown once —, delete), and
//! `/webhooks/{id}`: an endpoint's deliveries, with Replay.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::StatusCode;
use maud::html;
use serde::Deserialize;

use super::see_other;
use crate::api::Id;
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::format;
use crate::layout::{self, csrf_field, Chrome, FormErrors, Input};
use crate::session::Visitor;
use crate::Settings;
use ticketing_contracts::api::users::SessionUser;
use ticketing_contracts::api::webhooks::{DeliveryBody, DeliveryStatus, WebhookBody, SUBJECTS};

const FIELDS: [&str; 2] = ["url", "events"];

pub async fn index(
    State(settings): State<Settings>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    let user = visitor.require_user(&settings.api, "/webhooks").await?;
    let hooks = settings.api.webhooks(visitor.session()).await?;
    let form = NewForm::default();
    Ok(render_index(
        &visitor,
        &user,
        &hooks,
        &form,
        &FormErrors::default(),
        None,
        StatusCode::OK,
    ))
}

/// The create form as posted: `url`, and one `events` per checked subject.
#[derive(Default)]
struct NewForm {
    url: String,
    events: Vec<String>,
}

impl NewForm {
    fn of(pairs: Vec<(String, String)>) -> NewForm {
        let mut form = NewForm::default();
        for (name, value) in pairs {
            match name.as_str() {
                "url" => form.url = value,
                "events" => form.events.push(value),
                _ => {}
            }
        }
        form
    }
}

pub async fn create(
    State(settings): State<Settings>,
    visitor: Visitor,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let user = visitor.require_user(&settings.api, "/webhooks").await?;
    let form = NewForm::of(pairs);
    let created = settings
        .api
        .create_webhook(visitor.session(), form.url.trim(), &form.events)
        .await;
    let hooks = settings.api.webhooks(visitor.session()).await?;
    match created {
        // Not a redirect: the secret is shown on this answer only.
        Ok(hook) => Ok(render_index(
            &visitor,
            &user,
            &hooks,
            &NewForm::default(),
            &FormErrors::default(),
            Some(&hook),
            StatusCode::OK,
        )),
        Err(failure) => {
            let errors = FormErrors::new(failure.into_bad_request()?);
            Ok(render_index(
                &visitor,
                &user,
                &hooks,
                &form,
                &errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
    }
}

fn render_index(
    visitor: &Visitor,
    user: &SessionUser,
    hooks: &[WebhookBody],
    form: &NewForm,
    errors: &FormErrors,
    created: Option<&WebhookBody>,
    status: StatusCode,
) -> Response {
    let chrome = Chrome {
        user: Some(user),
        csrf: &visitor.csrf,
    };
    let checked =
        |subject: &str| form.events.is_empty() || form.events.iter().any(|e| e == subject);
    let body = html! {
        div.page-head { h1 { "Webhooks" } }
        p.muted { "Your listings' events — and those of the orders and payments on them — are sent to your endpoints as they happen, signed (Standard Webhooks), one order's in sequence." }
        @if let Some(hook) = created {
            div.alert.alert-success #webhook-created role="status" {
                p { "Endpoint added: " code { (hook.url) } }
                p { "Its signing secret, shown this once — copy it now:" }
                p { code #webhook-secret .secret { (hook.secret.as_deref().unwrap_or_default()) } }
            }
        }
        @if hooks.is_empty() {
            div.empty #webhooks-empty { p { "No endpoints yet." } }
        } @else {
            div.table-scroll { table.listing #webhooks {
                thead { tr {
                    th scope="col" { "Endpoint" }
                    th scope="col" { "Events" }
                    th scope="col" { "Status" }
                    th scope="col" { span.visually-hidden { "Actions" } }
                } }
                tbody {
                    @for hook in hooks {
                        tr {
                            td { a.wrap href={ "/webhooks/" (hook.id) } { (hook.url) } }
                            td.small { (hook.events.join(", ")) }
                            td {
                                @if hook.disabled_at.is_some() {
                                    span.badge.badge-muted title="It answered 410 Gone" { "Disabled" }
                                } @else {
                                    span.badge.badge-success { "Active" }
                                }
                            }
                            td {
                                form.inline method="post" action={ "/webhooks/" (hook.id) "/delete" } {
                                    (csrf_field(&visitor.csrf))
                                    button.link-button type="submit" aria-label={ "Delete " (hook.url) } { "Delete" }
                                }
                            }
                        }
                    }
                }
            } }
        }
        section.card.narrow {
            h2 { "Add an endpoint" }
            form.stack method="post" action="/webhooks" novalidate {
                (csrf_field(&visitor.csrf))
                (errors.summary(&FIELDS))
                (Input::new("URL", "url", "url", &form.url).hint("Where to POST the events: http(s), at most 2,048 characters.").render(errors))
                fieldset.stack.events.has-error[errors.field("events").is_some()] {
                    legend { "Events" }
                    @if let Some(error) = errors.field("events") {
                        p.field-error #f-events-error { (error) }
                    }
                    div.checks {
                        @for subject in SUBJECTS {
                            label.check {
                                input type="checkbox" name="events" value=(subject.as_str()) checked[checked(subject.as_str())];
                                " " code { (subject.as_str()) }
                            }
                        }
                    }
                }
                button.button.button-block type="submit" { "Add endpoint" }
            }
        }
    };
    layout::render(status, layout::page("Webhooks", &chrome, body))
}

pub async fn delete(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    visitor.require_user(&settings.api, "/webhooks").await?;
    settings.api.delete_webhook(visitor.session(), &id).await?;
    Ok(see_other("/webhooks", Vec::new()))
}

#[derive(Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    cursor: Option<i64>,
    #[serde(default)]
    replayed: Option<i64>,
}

pub async fn show(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    let back = format!("/webhooks/{id}");
    let user = visitor.require_user(&settings.api, &back).await?;
    let cursor = query.cursor.unwrap_or(0).max(0);
    let (hooks, page) = tokio::join!(
        settings.api.webhooks(visitor.session()),
        settings
            .api
            .webhook_deliveries(visitor.session(), &id, cursor)
    );
    let hook = hooks?
        .into_iter()
        .find(|h| h.id == id.as_str())
        .ok_or(PageError::NotFound)?;
    let page = page?;
    Ok(render_show(
        &visitor,
        &user,
        &hook,
        &page,
        cursor,
        query.replayed,
        &FormErrors::default(),
        StatusCode::OK,
    ))
}

#[allow(clippy::too_many_arguments)]
fn render_show(
    visitor: &Visitor,
    user: &SessionUser,
    hook: &WebhookBody,
    page: &[DeliveryBody],
    cursor: i64,
    replayed: Option<i64>,
    errors: &FormErrors,
    status: StatusCode,
) -> Response {
    let chrome = Chrome {
        user: Some(user),
        csrf: &visitor.csrf,
    };
    let first = page.first().map_or(cursor, |d| d.seq).to_string();
    let full = page.len() as i64 >= ticketing_contracts::api::webhooks::DELIVERIES_PAGE;
    let body = html! {
        div.page-head { h1 { "Deliveries" } }
        p { code.wrap { (hook.url) } }
        @if let Some(n) = replayed {
            div.alert.alert-success #replayed role="status" {
                p {
                    @if n == 1 { "1 delivery queued again: it is sent anew, with the same id." }
                    @else { (n) " deliveries queued again: they are sent anew, in the same order, with the same ids." }
                }
            }
        }
        @if page.is_empty() {
            div.empty #deliveries-empty { p { "No deliveries yet: events of your listings, orders and payments appear here." } }
        } @else {
            div.table-scroll { table.listing #deliveries {
                thead { tr {
                    th.num scope="col" { "Seq" }
                    th scope="col" { "Event" }
                    th scope="col" { "Status" }
                    th.num scope="col" { "Attempts" }
                    th scope="col" { "Delivered" }
                } }
                tbody {
                    @for d in page {
                        tr {
                            td.num { (d.seq) }
                            td { code { (d.subject) } br; span.small.muted.mono { (d.event_id) } }
                            td { span class=(badge(d.status)) { (d.status.as_str()) } }
                            td.num { (d.attempts) }
                            td.small { (d.delivered_at.as_deref().and_then(format::when).unwrap_or_default()) }
                        }
                    }
                }
            } }
            @if full {
                p { a #next-page href={ "/webhooks/" (hook.id) "?cursor=" (page.last().map_or(cursor, |d| d.seq)) } { "Next page →" } }
            }
        }
        section.card.narrow {
            h2 { "Replay" }
            form.stack method="post" action={ "/webhooks/" (hook.id) "/replay" } novalidate {
                (csrf_field(&visitor.csrf))
                (errors.summary(&["fromSeq"]))
                (Input::new("From seq", "fromSeq", "number", &first).inputmode("numeric").hint("Every delivery from this one on is sent again.").render(errors))
                button.button.button-block type="submit" { "Replay" }
            }
        }
        p { a href="/webhooks" { "← Webhooks" } }
    };
    layout::render(status, layout::page("Deliveries", &chrome, body))
}

fn badge(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Delivered => "badge badge-success",
        DeliveryStatus::Pending => "badge badge-pending",
        DeliveryStatus::Dead => "badge badge-muted",
    }
}

#[derive(Deserialize)]
pub struct ReplayForm {
    #[serde(default, rename = "fromSeq")]
    from_seq: String,
}

pub async fn replay(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ReplayForm>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    let back = format!("/webhooks/{id}");
    let user = visitor.require_user(&settings.api, &back).await?;
    let text = form.from_seq.trim();
    let from_seq = match text.parse::<i64>() {
        Ok(n) => serde_json::Value::from(n),
        Err(_) => serde_json::Value::from(text),
    };
    match settings
        .api
        .replay_webhook(visitor.session(), &id, from_seq)
        .await
    {
        Ok(accepted) => Ok(see_other(
            &format!("{back}?replayed={}", accepted.queued),
            Vec::new(),
        )),
        Err(failure) => {
            let errors = FormErrors::new(failure.into_bad_request()?);
            let (hooks, page) = tokio::join!(
                settings.api.webhooks(visitor.session()),
                settings.api.webhook_deliveries(visitor.session(), &id, 0)
            );
            let hook = hooks?
                .into_iter()
                .find(|h| h.id == id.as_str())
                .ok_or(PageError::NotFound)?;
            Ok(render_show(
                &visitor,
                &user,
                &hook,
                &page?,
                0,
                None,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
    }
}
