//! A gate device as the tests drive it: its token on every request, and checks of what
//! a code says against the service's public key (as a gate checks it offline).

#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[derive(Clone)]
pub struct Gate {
    pub http: reqwest::Client,
    pub base: String,
    pub id: String,
    pub token: String,
}

impl Gate {
    /// The device `created` (the answer to its registration) at `base`.
    pub fn new(base: &str, created: &Value) -> Gate {
        Gate {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            id: created["id"].as_str().unwrap().to_owned(),
            token: created["token"].as_str().unwrap().to_owned(),
        }
    }

    /// The same device at another address (another process of the service).
    pub fn at(&self, base: &str) -> Gate {
        Gate {
            base: base.to_owned(),
            ..self.clone()
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let res = req
            .header("Authorization", format!("Device {}", self.token))
            .send()
            .await
            .expect("request");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// POST `body` to `path` as this device.
    pub async fn send_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn redeem(&self, code: &str, nonce: &str) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(format!("{}/api/checkin/redeem", self.base))
                .json(&json!({"code": code, "nonce": nonce})),
        )
        .await
    }

    /// Redeem, which must answer 200: the body.
    pub async fn redeem_ok(&self, code: &str, nonce: &str) -> Value {
        let (status, body) = self.redeem(code, nonce).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn batch(&self, scans: Value) -> (StatusCode, Value) {
        self.send(
            self.http
                .post(format!("{}/api/checkin/batch", self.base))
                .json(&json!({ "scans": scans })),
        )
        .await
    }

    pub async fn changes(&self, cursor: &str, wait: u64) -> (StatusCode, Value) {
        self.send(self.http.get(format!(
            "{}/api/checkin/changes?cursor={cursor}&wait={wait}",
            self.base
        )))
        .await
    }
}

/// The payload of `code` if the key at `key` (the answer of `GET /api/checkin/key`)
/// signed it.
pub fn verify(key: &Value, code: &str) -> Option<Value> {
    let public: [u8; 32] = URL_SAFE_NO_PAD
        .decode(key["publicKey"].as_str()?)
        .ok()?
        .try_into()
        .ok()?;
    let public = VerifyingKey::from_bytes(&public).ok()?;
    let (signed, signature) = code.rsplit_once('.')?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD.decode(signature).ok()?.try_into().ok()?;
    public
        .verify(signed.as_bytes(), &Signature::from_bytes(&signature))
        .ok()?;
    let (prefix, payload) = signed.split_once('.')?;
    if prefix != "T1" {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}
