//! `/checkin`: a seller's gate devices (register one — its token shown once —, revoke),
//! and the passes of `/orders/{id}`: a QR code per unit, with Reissue.

use axum::extract::{Path, State};
use axum::response::Response;
use http::StatusCode;
use maud::{html, Markup, PreEscaped};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

use super::see_other;
use crate::api::Id;
use crate::csrf::CsrfForm;
use crate::error::PageError;
use crate::layout::{self, csrf_field, Chrome, FormErrors, Input};
use crate::session::Visitor;
use crate::Settings;
use ticketing_contracts::api::checkin::{DeviceBody, PassBody, PassStatus};
use ticketing_contracts::api::tickets::TicketBody;
use ticketing_contracts::api::users::SessionUser;

const FIELDS: [&str; 2] = ["name", "ticketIds"];

/// Listings offered as checkboxes: the seller's among the first page of those for sale.
const LISTINGS_PAGE: usize = 100;

pub async fn index(
    State(settings): State<Settings>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    let user = visitor.require_user(&settings.api, "/checkin").await?;
    let (devices, listings) = lists(&settings, &visitor, &user).await?;
    Ok(render_index(
        &visitor,
        &user,
        &devices,
        &listings,
        &NewDevice::default(),
        &FormErrors::default(),
        None,
        StatusCode::OK,
    ))
}

/// The seller's devices, and their listings for sale.
async fn lists(
    settings: &Settings,
    visitor: &Visitor,
    user: &SessionUser,
) -> Result<(Vec<DeviceBody>, Vec<TicketBody>), PageError> {
    let (devices, page) = tokio::join!(
        settings.api.devices(visitor.session()),
        settings.api.tickets(visitor.session(), None, LISTINGS_PAGE)
    );
    let mine = page?
        .tickets
        .into_iter()
        .filter(|t| t.user_id == user.id)
        .collect();
    Ok((devices?, mine))
}

/// The registration form as posted: `name`, a `ticketIds` per checked listing, and
/// `more` (other listing ids, separated by spaces or commas).
#[derive(Default)]
struct NewDevice {
    name: String,
    tickets: Vec<String>,
    more: String,
}

impl NewDevice {
    fn of(pairs: Vec<(String, String)>) -> NewDevice {
        let mut form = NewDevice::default();
        for (name, value) in pairs {
            match name.as_str() {
                "name" => form.name = value,
                "ticketIds" => form.tickets.push(value),
                "more" => form.more = value,
                _ => {}
            }
        }
        form
    }

    fn ticket_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.tickets.iter().map(String::as_str).collect();
        ids.extend(
            self.more
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty()),
        );
        ids
    }
}

pub async fn create(
    State(settings): State<Settings>,
    visitor: Visitor,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let user = visitor.require_user(&settings.api, "/checkin").await?;
    let form = NewDevice::of(pairs);
    let created = settings
        .api
        .create_device(visitor.session(), form.name.trim(), &form.ticket_ids())
        .await;
    let (devices, listings) = lists(&settings, &visitor, &user).await?;
    let (errors, created, status) = match created {
        // Not a redirect: the token is shown on this answer only.
        Ok(device) => (FormErrors::default(), Some(device), StatusCode::OK),
        Err(failure) if failure.status() == Some(StatusCode::UNAUTHORIZED) => (
            FormErrors::message("Devices can only be registered for your own listings."),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(failure) if failure.status() == Some(StatusCode::CONFLICT) => (
            FormErrors::message("A listing is not known here yet. Please try again in a moment."),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(failure) => (
            FormErrors::new(failure.into_bad_request()?),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    };
    let form = if created.is_some() {
        NewDevice::default()
    } else {
        form
    };
    Ok(render_index(
        &visitor,
        &user,
        &devices,
        &listings,
        &form,
        &errors,
        created.as_ref(),
        status,
    ))
}

pub async fn delete(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let id = Id::parse(&id).ok_or(PageError::NotFound)?;
    visitor.require_user(&settings.api, "/checkin").await?;
    settings.api.delete_device(visitor.session(), &id).await?;
    Ok(see_other("/checkin", Vec::new()))
}

#[allow(clippy::too_many_arguments)]
fn render_index(
    visitor: &Visitor,
    user: &SessionUser,
    devices: &[DeviceBody],
    listings: &[TicketBody],
    form: &NewDevice,
    errors: &FormErrors,
    created: Option<&DeviceBody>,
    status: StatusCode,
) -> Response {
    let chrome = Chrome {
        user: Some(user),
        csrf: &visitor.csrf,
    };
    let title_of = |id: &str| {
        listings
            .iter()
            .find(|t| t.id == id)
            .map_or_else(|| id.to_owned(), |t| t.title.clone())
    };
    let body = html! {
        div.page-head { h1 { "Gates" } }
        p.muted { "Gate devices scan your buyers' passes: online each scan is checked at once, offline they upload their scans later. A device sends its token as " code { "Authorization: Device <token>" } "." }
        @if let Some(device) = created {
            div.alert.alert-success #device-created role="status" {
                p { "Device added: " strong { (device.name) } }
                p { "Its token, shown this once — copy it onto the device now:" }
                p { code #device-token .secret { (device.token.as_deref().unwrap_or_default()) } }
            }
        }
        @if devices.is_empty() {
            div.empty #devices-empty { p { "No devices yet." } }
        } @else {
            div.table-scroll { table.listing #devices {
                thead { tr {
                    th scope="col" { "Device" }
                    th scope="col" { "Listings" }
                    th scope="col" { span.visually-hidden { "Actions" } }
                } }
                tbody {
                    @for device in devices {
                        tr {
                            td { (device.name) }
                            td.small {
                                @for (i, ticket) in device.ticket_ids.iter().enumerate() {
                                    @if i > 0 { ", " }
                                    a href={ "/tickets/" (ticket) } { (title_of(ticket)) }
                                }
                            }
                            td {
                                form.inline method="post" action={ "/checkin/devices/" (device.id) "/delete" } {
                                    (csrf_field(&visitor.csrf))
                                    button.link-button type="submit" aria-label={ "Revoke " (device.name) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            } }
        }
        section.card.narrow {
            h2 { "Add a device" }
            form.stack method="post" action="/checkin/devices" novalidate {
                (csrf_field(&visitor.csrf))
                (errors.summary(&FIELDS))
                (Input::new("Name", "name", "text", &form.name).hint("E.g. North door, at most 100 characters.").render(errors))
                fieldset.stack.events.has-error[errors.field("ticketIds").is_some()] {
                    legend { "Listings it scans" }
                    @if let Some(error) = errors.field("ticketIds") {
                        p.field-error #f-ticketIds-error { (error) }
                    }
                    @if !listings.is_empty() {
                        div.checks {
                            @for ticket in listings {
                                label.check {
                                    input type="checkbox" name="ticketIds" value=(ticket.id) checked[form.tickets.contains(&ticket.id)];
                                    " " (ticket.title)
                                }
                            }
                        }
                    }
                    (Input::new("Other listing ids", "more", "text", &form.more).optional().hint("Listings no longer for sale: their ids, separated by spaces.").render(errors))
                }
                button.button.button-block type="submit" { "Add device" }
            }
        }
    };
    layout::render(status, layout::page("Gates", &chrome, body))
}

/// The QR code of `code` as inline SVG (dark modules on white, a quiet zone of 4).
pub fn qr_svg(code: &str) -> Option<String> {
    let qr = QrCode::with_error_correction_level(code.as_bytes(), EcLevel::M).ok()?;
    Some(
        qr.render::<svg::Color>()
            .min_dimensions(220, 220)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .build(),
    )
}

/// The passes of a paid order: a QR code per unit and its Reissue button; `None` while
/// they are being issued.
pub fn passes_section(visitor: &Visitor, order: &str, passes: Option<&[PassBody]>) -> Markup {
    html! {
        section.passes #passes aria-labelledby="passes-title" {
            h2 #passes-title { "Your passes" }
            @match passes {
                None => p.muted { "Your passes are being issued — " a href={ "/orders/" (order) } { "refresh" } " in a moment." },
                Some([]) => p.muted { "Your passes are being issued — " a href={ "/orders/" (order) } { "refresh" } " in a moment." },
                Some(passes) => {
                    p.muted { "Show one code per person at the gate. Reissue a code you shared by mistake: the old one stops working." }
                    div.pass-list {
                        @for pass in passes {
                            figure.pass id={ "pass-" (pass.unit) } data-pass=(pass.id) data-status=(pass.status.as_str()) {
                                @if pass.status == PassStatus::Valid {
                                    @if let Some(svg) = qr_svg(&pass.code) {
                                        div.qr role="img" aria-label={ "QR code of pass " (pass.unit) } { (PreEscaped(svg)) }
                                    }
                                }
                                figcaption {
                                    "Pass " (pass.unit) " — "
                                    span.pass-status { (status_label(pass)) }
                                }
                                @if pass.status == PassStatus::Valid {
                                    form.inline method="post" action={ "/orders/" (order) "/passes/" (pass.id) "/reissue" } {
                                        (csrf_field(&visitor.csrf))
                                        button.link-button type="submit" aria-label={ "Reissue pass " (pass.unit) } { "Reissue" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn status_label(pass: &PassBody) -> String {
    match pass.status {
        PassStatus::Valid => "valid".to_owned(),
        PassStatus::Revoked => "revoked".to_owned(),
        PassStatus::CheckedIn => match &pass.checked_in_at {
            Some(at) => format!("checked in at {at}"),
            None => "checked in".to_owned(),
        },
    }
}

/// The Reissue button of a pass on `/orders/{order}`.
pub async fn reissue(
    State(settings): State<Settings>,
    visitor: Visitor,
    Path((order, pass)): Path<(String, String)>,
    CsrfForm(_): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let order = Id::parse(&order).ok_or(PageError::NotFound)?;
    let pass = Id::parse(&pass).ok_or(PageError::NotFound)?;
    let back = format!("/orders/{order}");
    visitor.require_user(&settings.api, &back).await?;
    match settings.api.reissue_pass(visitor.session(), &pass).await {
        Ok(_) => Ok(see_other(&format!("{back}#passes"), Vec::new())),
        // Revoked or checked in meanwhile: the page shows where it stands.
        Err(failure) if failure.status() == Some(StatusCode::BAD_REQUEST) => {
            Ok(see_other(&back, Vec::new()))
        }
        Err(failure) => Err(failure.into()),
    }
}
