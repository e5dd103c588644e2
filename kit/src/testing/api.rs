//! One client of the HTTP API for every test and tool: a base URL, a cookie jar, maybe a
//! Bearer token, and the steps a buyer and a seller take (sign up, sell, order, pay).
//!
//! Other services learn of a ticket or an order by event; a request naming one just
//! created waits for it there, and is answered 409 with `Retry-After` if it is still on
//! its way (docs/decisions/0029): [`Api::post_once_known`] and the domain steps retry
//! that (and whatever else [`Patience::retry_on`] names) until [`Patience::limit`]. A
//! 404 is final: the object does not exist.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use super::{TestEnv, TestServer};
use crate::runtime::Mounted;

/// The password of every user the tests sign up.
pub const PASSWORD: &str = "password123";

/// How long a test waits for the system to catch up, and how.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// How long a retried request or a wait may take.
    pub limit: Duration,
    /// The pause between two tries.
    pub every: Duration,
    /// The answers a POST is sent again on.
    pub retry_on: &'static [StatusCode],
    /// Whether a wait goes on through error answers (a restarting service) rather than
    /// failing at the first.
    pub through_errors: bool,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            limit: Duration::from_secs(10),
            every: Duration::from_millis(10),
            retry_on: &[StatusCode::CONFLICT],
            through_errors: false,
        }
    }
}

impl Patience {
    /// Poll `check` until it returns something; fail the test past `limit`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + self.limit;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(self.every).await;
        }
    }
}

/// A signed-in user: a browser's cookie jar, or a Bearer token.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    session: Session,
}

#[derive(Clone)]
enum Session {
    Cookies(reqwest::Client),
    Bearer(String),
}

impl User {
    /// `id` with a token of `keys` (email `<id>@test.com`), no account needed: for
    /// services that trust the token alone.
    pub fn bearer(keys: &crate::auth::JwtKeys, id: &str) -> User {
        let email = format!("{id}@test.com");
        let (token, _) = keys.issue(id, &email).expect("issue a token");
        User {
            id: id.to_owned(),
            email,
            session: Session::Bearer(token),
        }
    }
}

/// A client of one base URL, acting for nobody or for one [`User`].
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    bearer: Option<String>,
    timeout: Option<Duration>,
    pub patience: Patience,
}

impl Api {
    /// A browser of its own (a fresh cookie jar) at `base` (`http://host:port`).
    pub fn new(base: impl Into<String>) -> Api {
        Api::with_http(TestServer::new_client(), base)
    }

    pub fn with_http(http: reqwest::Client, base: impl Into<String>) -> Api {
        Api {
            http,
            base: base.into(),
            bearer: None,
            timeout: None,
            patience: Patience::default(),
        }
    }

    pub fn with_patience(mut self, patience: Patience) -> Api {
        self.patience = patience;
        self
    }

    /// Every request fails after `timeout` rather than hang (a killed service).
    pub fn with_timeout(mut self, timeout: Duration) -> Api {
        self.timeout = Some(timeout);
        self
    }

    /// The same API as `user`: its cookies, or its token.
    pub fn as_user(&self, user: &User) -> Api {
        let mut api = self.clone();
        match &user.session {
            Session::Cookies(http) => {
                api.http = http.clone();
                api.bearer = None;
            }
            Session::Bearer(token) => api.bearer = Some(token.clone()),
        }
        api
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The same API with `token` as its Bearer token.
    pub fn with_token(&self, token: &str) -> Api {
        let mut api = self.clone();
        api.bearer = Some(token.to_owned());
        api
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self.http.request(method, self.url(path));
        if let Some(timeout) = self.timeout {
            req = req.timeout(timeout);
        }
        match &self.bearer {
            Some(token) => req.header(AUTHORIZATION, format!("Bearer {token}")),
            None => req,
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Response {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put_json(&self, path: &str, body: Value) -> Response {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.send(Method::DELETE, path, None).await
    }

    /// GET `path`, which must answer 200: its body.
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        res.json().await.expect("a JSON body")
    }

    /// POST, sent again while the answer is one of [`Patience::retry_on`], after its
    /// `Retry-After` if it has one.
    pub async fn post_once_known(&self, path: &str, body: Value) -> Response {
        let deadline = Instant::now() + self.patience.limit;
        loop {
            let res = self.post_json(path, body.clone()).await;
            if !self.patience.retry_on.contains(&res.status()) || Instant::now() > deadline {
                return res;
            }
            let pause = res
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map_or(self.patience.every, Duration::from_secs);
            tokio::time::sleep(pause.min(self.patience.limit)).await;
        }
    }

    /// GET `path` until it answers 200 with a body `ok` accepts: that body.
    pub async fn wait_for(&self, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + self.patience.limit;
        loop {
            let (status, value) = reply(self.get(path).await).await;
            if status == StatusCode::OK && ok(&value) {
                return value;
            }
            assert!(
                status == StatusCode::OK || self.patience.through_errors,
                "{path}: {status} {value}"
            );
            assert!(
                Instant::now() < deadline,
                "{path} stuck at {} {value}",
                status.as_u16()
            );
            tokio::time::sleep(self.patience.every).await;
        }
    }

    /// Wait until order `id` has `status`: the order.
    pub async fn wait_order(&self, id: &str, status: &str) -> Value {
        self.wait_for(&format!("/api/orders/{id}"), |o| o["status"] == status)
            .await
    }

    /// Wait until `ticket` is reserved by `order`, or free (`None`): the ticket.
    pub async fn wait_ticket_held_by(&self, ticket: &str, order: Option<&str>) -> Value {
        self.wait_for(&format!("/api/tickets/{ticket}"), |t| match order {
            Some(order) => t["orderId"] == order,
            None => t.get("orderId").is_none(),
        })
        .await
    }

    /// Sign up `email` from a browser of its own: the user, signed in, and the answer's
    /// headers (its `Set-Cookie`).
    pub async fn sign_up_with_headers(&self, email: &str) -> (User, HeaderMap) {
        let browser = Api {
            http: TestServer::new_client(),
            bearer: None,
            ..self.clone()
        };
        let res = browser
            .post_json("/api/users/signup", credentials(email))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "sign up {email}");
        let headers = res.headers().clone();
        let body: Value = res.json().await.expect("the user");
        let user = User {
            id: id_of(&body),
            email: email.to_owned(),
            session: Session::Cookies(browser.http),
        };
        (user, headers)
    }

    pub async fn sign_up(&self, email: &str) -> User {
        self.sign_up_with_headers(email).await.0
    }

    /// List a ticket: its id.
    pub async fn sell(&self, title: &str, price: Value) -> String {
        let res = self
            .post_once_known("/api/tickets", json!({"title": title, "price": price}))
            .await;
        let (status, ticket) = reply(res).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        id_of(&ticket)
    }

    /// Order `ticket`, once the orders service knows it.
    pub async fn order(&self, ticket: &str) -> Response {
        self.post_once_known("/api/orders", json!({"ticketId": ticket}))
            .await
    }

    /// An order of `ticket`, which must be placed: its body.
    pub async fn order_ok(&self, ticket: &str) -> Value {
        let (status, order) = reply(self.order(ticket).await).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        order
    }

    /// Pay `order` with a card that succeeds, once the payments service knows it.
    pub async fn pay(&self, order: &str) -> Response {
        self.post_once_known("/api/payments", payment(order)).await
    }
}

/// An app of some services on port 0, its environment, and a client of it.
pub struct TestApp {
    pub server: TestServer,
    pub env: TestEnv,
    pub api: Api,
}

impl TestApp {
    pub async fn spawn(env: TestEnv, services: Vec<Mounted>) -> TestApp {
        let server = TestServer::spawn(services).await;
        let api = server.api();
        TestApp { server, env, api }
    }

    /// The API as `user`, by a token (see [`User::bearer`]).
    pub fn as_user(&self, user: &str) -> Api {
        self.api
            .as_user(&User::bearer(&self.env.runtime.keys, user))
    }
}

/// The sign-up and sign-in body of `email`.
pub fn credentials(email: &str) -> Value {
    json!({"email": email, "password": PASSWORD})
}

/// The body of a payment of `order` with a card that succeeds.
pub fn payment(order: &str) -> Value {
    json!({"orderId": order, "token": "tok_visa"})
}

/// An answer's status and JSON body (`null` when it has none).
pub async fn reply(res: Response) -> (StatusCode, Value) {
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The errors of an answer in the contract's format.
pub async fn errors(res: Response) -> Vec<Value> {
    let body: Value = res.json().await.expect("error body is JSON");
    body["errors"].as_array().expect("errors array").clone()
}

/// The `id` of a created object.
pub fn id_of(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}
