//! The pages, one module per area of the seed's `client/pages/`.

mod auth;
mod checkin;
mod home;
mod orders;
mod password;
mod queue;
mod refund;
mod tickets;
mod waitlist;
mod webhooks;

use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use http::header::SET_COOKIE;
use http::HeaderValue;

use crate::Settings;

pub fn routes() -> Router<Settings> {
    Router::new()
        .route("/", get(home::index))
        .route("/auth/signup", get(auth::signup_form).post(auth::signup))
        .route("/auth/signin", get(auth::signin_form).post(auth::signin))
        .route("/auth/signout", get(auth::signout_form).post(auth::signout))
        .route("/auth/password", get(password::form).post(password::change))
        .route(
            "/auth/signout-everywhere",
            post(password::sign_out_everywhere),
        )
        .route("/tickets/new", get(tickets::new_form).post(tickets::create))
        .route("/tickets/{id}", get(tickets::show).post(tickets::update))
        .route("/tickets/{id}/queue", get(queue::show).post(queue::join))
        .route("/orders", get(orders::index).post(orders::create))
        .route("/orders/{id}", get(orders::show))
        .route("/orders/{id}/pay", post(orders::pay))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/orders/{id}/passes/{pass}/reissue", post(checkin::reissue))
        .route("/orders/{id}/refund", post(refund::request))
        .route("/waitlist", post(waitlist::join))
        .route("/waitlist/{id}", get(waitlist::show))
        .route("/waitlist/{id}/leave", post(waitlist::leave))
        .route("/webhooks", get(webhooks::index).post(webhooks::create))
        .route("/webhooks/{id}", get(webhooks::show))
        .route("/webhooks/{id}/delete", post(webhooks::delete))
        .route("/webhooks/{id}/replay", post(webhooks::replay))
        .route("/checkin", get(checkin::index))
        .route("/checkin/devices", post(checkin::create))
        .route("/checkin/devices/{id}/delete", post(checkin::delete))
}

/// Post-redirect-get: `303 See Other` to `location`, with the API's cookies relayed.
fn see_other(location: &str, set_cookies: Vec<HeaderValue>) -> Response {
    let mut response = Redirect::to(location).into_response();
    for cookie in set_cookies {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}
