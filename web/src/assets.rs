//! Our own static files, compiled into the binary. Their URLs carry a hash of the
//! content, so browsers may keep them for a year and still see every new version.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// An asset of `web/assets/`, by file name, compiled into the binary.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("stripe-card.js", "text/javascript; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = DefaultHasher::new();
    for asset in ASSETS {
        asset.body.hash(&mut hasher);
    }
    format!("{:08x}", hasher.finish() as u32)
});

fn url(name: &str) -> String {
    format!("/assets/{name}?v={}", *VERSION)
}

pub fn css_url() -> String {
    url("app.css")
}

pub fn js_url() -> String {
    url("app.js")
}

pub fn stripe_card_js_url() -> String {
    url("stripe-card.js")
}

pub fn icon_url() -> String {
    url("icon.svg")
}

/// The asset named `name` as a response, if there is one.
pub fn response(name: &str) -> Option<Response> {
    let asset = ASSETS.iter().find(|a| a.name == name)?;
    Some(
        (
            [
                (CONTENT_TYPE, asset.content_type),
                (CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.body,
        )
            .into_response(),
    )
}
