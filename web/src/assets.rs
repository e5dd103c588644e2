//! Our own static files, compiled into the binary. Their URLs carry a hash of the
//! content, so browsers may keep them for a year and still see every new version.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};

use crate::error::PageError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "stripe-card.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/stripe-card.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/icon.svg"),
    },
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

pub async fn serve(Path(name): Path<String>) -> Result<Response, PageError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or(PageError::NotFound)?;
    Ok((
        [
            (CONTENT_TYPE, asset.content_type),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.body,
    )
        .into_response())
}
