//! The auth contract (`../shared/spec/api.md` §auth), over real HTTP, on both backends.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use ticketing_kit::backend_tests;
use ticketing_kit::testing::{errors, TestApp, TestBackend, TestEnv, TestServer};

/// The auth service alone.
struct App(TestApp);

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.0
    }
}

async fn spawn(backend: TestBackend) -> App {
    spawn_with(backend, |_| {}).await
}

async fn spawn_with(
    backend: TestBackend,
    configure: impl FnOnce(&mut ticketing_auth::Settings),
) -> App {
    let env = TestEnv::new(backend);
    let mut settings = ticketing_auth::Settings::default();
    configure(&mut settings);
    let auth = ticketing_auth::mount(&env.runtime, &settings)
        .await
        .expect("mount auth");
    App(TestApp::spawn(env, vec![auth]).await)
}

impl App {
    async fn post(&self, path: &str, body: Value) -> Response {
        self.api.post_json(path, body).await
    }

    async fn signup(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/users/signup",
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn current_user(&self) -> Value {
        self.api.get_json("/api/users/currentuser").await
    }
}

fn fields(errors: &[Value]) -> Vec<&str> {
    errors.iter().filter_map(|e| e["field"].as_str()).collect()
}

fn set_cookie(res: &Response) -> String {
    res.headers()
        .get(SET_COOKIE)
        .expect("Set-Cookie")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The JWT inside a `session=<base64 {"jwt": ..}>` Set-Cookie header.
fn jwt_of(cookie: &str) -> String {
    let value = cookie
        .strip_prefix("session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let session: Value = serde_json::from_slice(&STANDARD.decode(value).unwrap()).unwrap();
    session["jwt"].as_str().unwrap().to_owned()
}

async fn signup_returns_201_and_sets_the_session_cookie(backend: TestBackend) {
    let app = spawn(backend).await;
    let res = app.signup("test@test.com", "password123").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let cookie = set_cookie(&res);
    assert!(cookie.starts_with("session="), "{cookie}");
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains("Secure"),
        "embedded test runtime is not Secure"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], "test@test.com");
    assert!(body["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(body.get("password").is_none() && body.get("passwordHash").is_none());
}

async fn signup_rejects_an_invalid_email(backend: TestBackend) {
    let app = spawn(backend).await;
    for email in ["alskdflaskjfd", "a@b", "", "x@y..com"] {
        let res = app.signup(email, "password123").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{email}");
        assert_eq!(fields(&errors(res).await), ["email"]);
    }
    let long = format!("{}@example.com", "a".repeat(243));
    let res = app.signup(&long, "password123").await;
    assert_eq!(fields(&errors(res).await), ["email"]);
}

async fn signup_rejects_an_invalid_password(backend: TestBackend) {
    let app = spawn(backend).await;
    for password in ["p", "seven77", &"x".repeat(129)] {
        let res = app.signup("test@test.com", password).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(fields(&errors(res).await), ["password"]);
    }
    // 8 and 128 characters are fine, counted as characters, not bytes.
    assert_eq!(
        app.signup("a@test.com", "ççççççç1").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.signup("b@test.com", &"y".repeat(128)).await.status(),
        StatusCode::CREATED
    );
}

async fn signup_names_every_missing_field(backend: TestBackend) {
    let app = spawn(backend).await;
    let res = app.post("/api/users/signup", json!({})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(fields(&errors(res).await), ["email", "password"]);
    let res = app
        .post("/api/users/signup", json!({"email": "test@test.com"}))
        .await;
    assert_eq!(fields(&errors(res).await), ["password"]);
    let res = app
        .post("/api/users/signup", json!({"password": "password123"}))
        .await;
    assert_eq!(fields(&errors(res).await), ["email"]);
}

async fn signup_refuses_a_taken_email_in_any_case(backend: TestBackend) {
    let app = spawn(backend).await;
    assert_eq!(
        app.signup("test@test.com", "password123").await.status(),
        StatusCode::CREATED
    );
    for email in ["test@test.com", "TEST@Test.com"] {
        let res = app.signup(email, "password456").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let errs = errors(res).await;
        assert_eq!(errs[0]["message"], "Email in use");
        assert!(errs[0].get("field").is_none());
    }
}

async fn concurrent_signups_for_one_email_create_one_account(backend: TestBackend) {
    // Ten attempts on one account in a moment: the uniqueness under test, not the limit.
    let app = spawn_with(backend, |s| s.limits.enabled = false).await;
    let attempts = (0..10).map(|i| {
        let email = if i % 2 == 0 {
            "race@test.com"
        } else {
            "RACE@test.com"
        };
        let client = TestServer::new_client();
        let url = app.server.url("/api/users/signup");
        async move {
            client
                .post(url)
                .json(&json!({"email": email, "password": "password123"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::CREATED || *s == StatusCode::BAD_REQUEST));
}

async fn signin_with_unknown_email_or_wrong_password_says_the_same(backend: TestBackend) {
    let app = spawn(backend).await;
    let unknown = app
        .post(
            "/api/users/signin",
            json!({"email": "nobody@test.com", "password": "password123"}),
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(unknown.headers().get(SET_COOKIE).is_none());
    let unknown = errors(unknown).await;

    app.signup("test@test.com", "password123").await;
    let wrong = app
        .post(
            "/api/users/signin",
            json!({"email": "test@test.com", "password": "password124"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert_eq!(errors(wrong).await, unknown);
    assert_eq!(unknown[0]["message"], "Invalid credentials");
}

async fn signin_validates_its_fields(backend: TestBackend) {
    let app = spawn(backend).await;
    let res = app
        .post(
            "/api/users/signin",
            json!({"email": "not-an-email", "password": ""}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(fields(&errors(res).await), ["email", "password"]);
}

async fn signin_with_valid_credentials_sets_the_cookie(backend: TestBackend) {
    let app = spawn(backend).await;
    let created: Value = app
        .signup("test@test.com", "password123")
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .post(
            "/api/users/signin",
            json!({"email": "Test@Test.com", "password": "password123"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookie(&res).starts_with("session="));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["id"], created["id"]);
    assert_eq!(body["email"], "test@test.com");
}

async fn signout_clears_the_cookie(backend: TestBackend) {
    let app = spawn(backend).await;
    app.signup("test@test.com", "password123").await;
    let res = app.post("/api/users/signout", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = set_cookie(&res);
    assert!(cookie.starts_with("session=;"), "{cookie}");
    assert!(
        cookie.contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
        "{cookie}"
    );
    assert_eq!(res.json::<Value>().await.unwrap(), json!({}));
    assert_eq!(app.current_user().await, json!({"currentUser": null}));
}

async fn currentuser_describes_the_signed_in_user(backend: TestBackend) {
    let app = spawn(backend).await;
    assert_eq!(app.current_user().await, json!({"currentUser": null}));
    let created: Value = app
        .signup("test@test.com", "password123")
        .await
        .json()
        .await
        .unwrap();
    let me = app.current_user().await;
    assert_eq!(me["currentUser"]["email"], "test@test.com");
    assert_eq!(me["currentUser"]["id"], created["id"]);
    assert!(me["currentUser"]["iat"].is_i64());
}

async fn sessions_work_by_bearer_and_by_the_seed_cookie_name(backend: TestBackend) {
    let app = spawn(backend).await;
    let res = app.signup("test@test.com", "password123").await;
    let cookie = set_cookie(&res);
    let jwt = jwt_of(&cookie);
    let value = cookie
        .strip_prefix("session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let anonymous = TestServer::new_client();
    let url = app.server.url("/api/users/currentuser");

    let by_bearer: Value = anonymous
        .get(&url)
        .header(AUTHORIZATION, format!("Bearer {jwt}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_bearer["currentUser"]["email"], "test@test.com");

    let by_legacy: Value = anonymous
        .get(&url)
        .header(COOKIE, format!("express:sess={value}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_legacy["currentUser"]["email"], "test@test.com");
}

async fn foreign_expired_and_unsigned_tokens_are_anonymous(backend: TestBackend) {
    let app = spawn(backend).await;
    let url = app.server.url("/api/users/currentuser");
    let foreign =
        ticketing_kit::auth::JwtKeys::new(b"someone else", std::time::Duration::from_secs(60));
    let (foreign_token, _) = foreign.issue("u1", "a@b.co").unwrap();
    let expired = ticketing_kit::auth::JwtKeys::new(
        ticketing_kit::testing::TEST_JWT_KEY,
        std::time::Duration::from_secs(0),
    );
    let (expired_token, _) = expired.issue("u1", "a@b.co").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(6100)).await;
    let header = STANDARD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let claims = STANDARD.encode(r#"{"id":"u1","email":"a@b.co","iat":1,"exp":99999999999}"#);
    let unsigned = format!(
        "{}.{}.",
        header.trim_end_matches('='),
        claims.trim_end_matches('=')
    );

    for token in [foreign_token, expired_token, unsigned, "garbage".to_owned()] {
        let res = TestServer::new_client()
            .get(&url)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.json::<Value>().await.unwrap(),
            json!({"currentUser": null})
        );
    }
    let res = TestServer::new_client()
        .get(&url)
        .header(COOKIE, "session=not-base64!!")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"currentUser": null})
    );
}

async fn secure_cookies_when_configured(backend: TestBackend) {
    let app = spawn_with(backend, |settings| settings.cookie_secure = true).await;
    let res = app.signup("test@test.com", "password123").await;
    assert!(set_cookie(&res).contains("; Secure"));
    let res = app.post("/api/users/signout", json!({})).await;
    assert!(set_cookie(&res).contains("; Secure"));
}

async fn bad_input_gets_a_4xx_in_the_contract_format(backend: TestBackend) {
    let app = spawn(backend).await;
    let url = app.server.url("/api/users/signup");
    let client = &app.server.client;
    let send = |body: Vec<u8>, content_type: &'static str| {
        client
            .post(&url)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };

    let malformed = send(b"{\"email\": ".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(malformed).await[0]["message"],
        "Malformed JSON body."
    );

    let not_object = send(b"[1,2,3]".to_vec(), "application/json").await.unwrap();
    assert_eq!(not_object.status(), StatusCode::BAD_REQUEST);

    let wrong_types = send(
        br#"{"email": 5, "password": ["x"]}"#.to_vec(),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(wrong_types.status(), StatusCode::BAD_REQUEST);
    assert_eq!(fields(&errors(wrong_types).await), ["email", "password"]);

    // Just over the limit: the server refuses without reading the rest and closes the
    // connection, so a body much larger than the socket buffers can hold would leave
    // the client writing into a closed connection (broken pipe) instead of reading the
    // answer. On a client of its own, which no later request reuses.
    let huge = format!(
        r#"{{"email": "a@b.co", "password": "{}"}}"#,
        "x".repeat(ticketing_kit::json::MAX_BODY_BYTES)
    );
    let too_large = TestServer::new_client()
        .post(&url)
        .header(CONTENT_TYPE, "application/json")
        .body(huge.into_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!errors(too_large).await.is_empty());

    let form = send(
        b"email=a@b.co".to_vec(),
        "application/x-www-form-urlencoded",
    )
    .await
    .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(!errors(form).await.is_empty());

    let unknown = client
        .get(app.server.url("/api/users/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(errors(unknown).await[0]["message"], "Not found.");
}

async fn health_and_openapi_are_served(backend: TestBackend) {
    let app = spawn(backend).await;
    let client = &app.server.client;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let res = client.get(app.server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let doc: Value = client
        .get(app.server.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/users/signup",
        "/api/users/signin",
        "/api/users/signout",
        "/api/users/currentuser",
        "/api/users/password",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
}

async fn assert_refused_with_429(res: Response) -> u64 {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let errs = errors(res).await;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0]["message"], "Too many requests, try again later.");
    assert!(errs[0].get("field").is_none());
    retry_after
}

async fn wrong_passwords_for_one_account_are_refused_after_a_handful(backend: TestBackend) {
    let app = spawn(backend).await;
    assert_eq!(
        app.signup("victim@test.com", "password123").await.status(),
        StatusCode::CREATED
    );
    // The sign-up was the first attempt on the account; four wrong passwords follow.
    let wrong = |email: &str| json!({"email": email, "password": "wrong password"});
    for _ in 0..4 {
        let res = app
            .post("/api/users/signin", wrong("victim@test.com"))
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    // Then, whatever the case of the address, and even with the right password: 429.
    for attempt in 0..56 {
        let body = if attempt == 0 {
            json!({"email": "VICTIM@test.com", "password": "password123"})
        } else {
            wrong("Victim@Test.com")
        };
        let res = app.post("/api/users/signin", body).await;
        let retry_after = assert_refused_with_429(res).await;
        assert!((1..=12).contains(&retry_after), "{retry_after}");
    }
    // Another account from the same address is not affected.
    assert_eq!(
        app.post("/api/users/signin", wrong("other@test.com"))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    let metrics = app
        .server
        .client
        .get(app.server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("auth_rate_limited_total{")
                && l.contains("limit=\"account\"")
                && l.contains("route=\"signin\"")),
        "{metrics}"
    );
}

async fn the_default_address_limit_lets_a_test_suite_through(backend: TestBackend) {
    let app = spawn(backend).await;
    // Hundreds of sign-ups a minute from 127.0.0.1 (rejected by validation, so that no
    // password is hashed: the address limit counts them all the same).
    let allowance = ticketing_auth::DEFAULT_PER_ADDRESS_PER_MINUTE;
    for i in 0..allowance {
        let res = app.signup(&format!("user{i}@test.com"), "short").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "attempt {i}");
    }
    // The allowance comes back one attempt every 100 ms, so a client that keeps going
    // meets the limit soon after.
    let mut refused = None;
    for i in 0..allowance {
        let res = app.signup(&format!("more{i}@test.com"), "short").await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(res);
            break;
        }
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    assert_refused_with_429(refused.expect("the address limit is reached")).await;
}

async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy(backend: TestBackend) {
    let send = |app: &App, client: &'static str| {
        app.server
            .client
            .post(app.server.url("/api/users/signup"))
            .header("x-forwarded-for", client)
            .json(&json!({"email": "x@test.com", "password": "short"}))
            .send()
    };
    // Not trusted: the header is ignored, every request is 127.0.0.1's.
    let app = spawn_with(backend, |s| s.limits.per_address_per_minute = 2).await;
    assert_eq!(send(&app, "192.0.2.1").await.unwrap().status(), 400);
    assert_eq!(send(&app, "192.0.2.2").await.unwrap().status(), 400);
    assert_refused_with_429(send(&app, "192.0.2.3").await.unwrap()).await;

    // Behind a trusted proxy: each forwarded client has its own budget.
    let app = spawn_with(backend, |s| {
        s.limits.per_address_per_minute = 2;
        s.limits.trusted_proxies =
            ticketing_kit::client::TrustedProxies::new(vec!["127.0.0.0/8".parse().unwrap()]);
    })
    .await;
    for _ in 0..2 {
        assert_eq!(send(&app, "192.0.2.1").await.unwrap().status(), 400);
        assert_eq!(send(&app, "192.0.2.2").await.unwrap().status(), 400);
    }
    assert_refused_with_429(send(&app, "192.0.2.1").await.unwrap()).await;
    assert_refused_with_429(send(&app, "6.6.6.6, 192.0.2.2").await.unwrap()).await;
    assert_eq!(send(&app, "192.0.2.3").await.unwrap().status(), 400);
}

async fn limits_can_be_switched_off(backend: TestBackend) {
    let app = spawn_with(backend, |s| {
        s.limits.enabled = false;
        s.limits.per_address_per_minute = 1;
        s.limits.per_account_per_minute = 1;
    })
    .await;
    for _ in 0..8 {
        let res = app
            .post(
                "/api/users/signin",
                json!({"email": "nobody@test.com", "password": "wrong password"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
}

async fn a_flood_of_hashes_is_refused_with_503_not_queued(backend: TestBackend) {
    let app = spawn_with(backend, |s| {
        s.limits.enabled = false;
        s.hashing.max_concurrent = 1;
        s.hashing.max_wait = std::time::Duration::from_millis(1);
    })
    .await;
    let attempts = (0..12).map(|i| {
        let client = TestServer::new_client();
        let url = app.server.url("/api/users/signup");
        async move {
            client
                .post(url)
                .json(&json!({"email": format!("flood{i}@test.com"), "password": "password123"}))
                .send()
                .await
                .unwrap()
        }
    });
    let responses = futures::future::join_all(attempts).await;
    let mut created = 0;
    let mut busy = 0;
    for res in responses {
        match res.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(res.headers()["retry-after"], "1");
                assert_eq!(errors(res).await[0]["message"], "Service unavailable.");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(created >= 1 && busy >= 1, "created {created}, busy {busy}");
}

/// `email`'s token from a sign-in of its own (a session of its own).
async fn session_of(app: &App, email: &str, password: &str) -> String {
    let res = app
        .post(
            "/api/users/signin",
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "sign in {email}");
    jwt_of(&set_cookie(&res))
}

/// What the auth service says of `token`: its current user's e-mail, or null.
async fn who(app: &App, token: &str) -> Value {
    let me: Value = app
        .server
        .client
        .get(app.server.url("/api/users/currentuser"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["currentUser"]["email"].clone()
}

async fn with_token(
    app: &App,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Response {
    app.server
        .client
        .request(method, app.server.url(path))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn tokens_carry_a_random_sid(backend: TestBackend) {
    let app = spawn(backend).await;
    app.signup("test@test.com", "password123").await;
    let a = session_of(&app, "test@test.com", "password123").await;
    let b = session_of(&app, "test@test.com", "password123").await;
    let claims = |t: &str| -> Value {
        let payload = t.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let (ca, cb) = (claims(&a), claims(&b));
    for key in ["id", "email", "iat", "exp", "sid"] {
        assert!(ca.get(key).is_some(), "{key} missing from {ca}");
    }
    assert_eq!(ca.as_object().unwrap().len(), 5, "{ca}");
    assert_ne!(ca["sid"], cb["sid"]);
}

async fn signout_ends_this_session_only(backend: TestBackend) {
    let app = spawn(backend).await;
    app.signup("test@test.com", "password123").await;
    let a = session_of(&app, "test@test.com", "password123").await;
    let b = session_of(&app, "test@test.com", "password123").await;
    assert_eq!(who(&app, &a).await, "test@test.com");
    let res = with_token(
        &app,
        &a,
        reqwest::Method::POST,
        "/api/users/signout",
        json!({}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookie(&res).starts_with("session=;"));
    assert_eq!(res.json::<Value>().await.unwrap(), json!({}));
    // The auth process that ended it refuses it at once.
    assert_eq!(who(&app, &a).await, Value::Null);
    assert_eq!(who(&app, &b).await, "test@test.com");
    // Signing out again, or with no body at all, is still 200 `{}`.
    let again = app
        .server
        .client
        .post(app.server.url("/api/users/signout"))
        .header(AUTHORIZATION, format!("Bearer {a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), json!({}));
}

async fn signout_everywhere_ends_every_session(backend: TestBackend) {
    let app = spawn(backend).await;
    app.signup("test@test.com", "password123").await;
    app.signup("other@test.com", "password123").await;
    let a = session_of(&app, "test@test.com", "password123").await;
    let b = session_of(&app, "test@test.com", "password123").await;
    let other = session_of(&app, "other@test.com", "password123").await;
    let res = with_token(
        &app,
        &a,
        reqwest::Method::POST,
        "/api/users/signout",
        json!({"everywhere": true}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({}));
    assert_eq!(who(&app, &a).await, Value::Null);
    assert_eq!(who(&app, &b).await, Value::Null);
    assert_eq!(who(&app, &other).await, "other@test.com");
    // A new sign-in is a new session, untouched.
    let c = session_of(&app, "test@test.com", "password123").await;
    assert_eq!(who(&app, &c).await, "test@test.com");
}

async fn a_password_change_ends_every_other_session(backend: TestBackend) {
    // More attempts on the account than the default limit allows (its own test below).
    let app = spawn_with(backend, |s| s.limits.per_account_per_minute = 20).await;
    let created: Value = app
        .signup("test@test.com", "password123")
        .await
        .json()
        .await
        .unwrap();
    let a = session_of(&app, "test@test.com", "password123").await;
    let b = session_of(&app, "test@test.com", "password123").await;
    let res = with_token(
        &app,
        &a,
        reqwest::Method::PUT,
        "/api/users/password",
        json!({"currentPassword": "password123", "newPassword": "new password 456"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = set_cookie(&res);
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let c = jwt_of(&cookie);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"id": created["id"], "email": "test@test.com"})
    );
    assert_eq!(who(&app, &a).await, Value::Null);
    assert_eq!(who(&app, &b).await, Value::Null);
    assert_eq!(who(&app, &c).await, "test@test.com");
    // The new password signs in; the old one no more.
    session_of(&app, "test@test.com", "new password 456").await;
    let old = app
        .post(
            "/api/users/signin",
            json!({"email": "test@test.com", "password": "password123"}),
        )
        .await;
    assert_eq!(old.status(), StatusCode::BAD_REQUEST);
}

async fn a_password_change_validates_its_fields(backend: TestBackend) {
    let app = spawn(backend).await;
    app.signup("test@test.com", "password123").await;
    let a = session_of(&app, "test@test.com", "password123").await;
    let put = |body: Value| with_token(&app, &a, reqwest::Method::PUT, "/api/users/password", body);

    let res = put(json!({"currentPassword": "password123", "newPassword": "short"})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.headers().get(SET_COOKIE).is_none());
    let errs = errors(res).await;
    assert_eq!(fields(&errs), ["newPassword"]);
    assert_eq!(
        errs[0]["message"],
        "Password must be between 8 and 128 characters"
    );

    let long = "x".repeat(129);
    let res = put(json!({"currentPassword": "password123", "newPassword": long})).await;
    assert_eq!(fields(&errors(res).await), ["newPassword"]);

    let res =
        put(json!({"currentPassword": "wrong password", "newPassword": "new password 456"})).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let errs = errors(res).await;
    assert_eq!(
        errs,
        [json!({"message": "Invalid credentials", "field": "currentPassword"})]
    );

    let res = put(json!({})).await;
    assert_eq!(
        fields(&errors(res).await),
        ["currentPassword", "newPassword"]
    );

    // Nothing changed, and the session still works.
    assert_eq!(who(&app, &a).await, "test@test.com");
    session_of(&app, "test@test.com", "password123").await;

    // Anonymous: 401.
    let res = TestServer::new_client()
        .put(app.server.url("/api/users/password"))
        .json(&json!({"currentPassword": "password123", "newPassword": "new password 456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn password_guesses_are_limited_like_sign_ins(backend: TestBackend) {
    let app = spawn(backend).await;
    app.signup("victim@test.com", "password123").await;
    let stolen = session_of(&app, "victim@test.com", "password123").await;
    // Sign-up and sign-in were two attempts on the account; three wrong guesses follow.
    let guess = json!({"currentPassword": "wrong password", "newPassword": "new password 456"});
    for _ in 0..3 {
        let res = with_token(
            &app,
            &stolen,
            reqwest::Method::PUT,
            "/api/users/password",
            guess.clone(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    for _ in 0..3 {
        let res = with_token(
            &app,
            &stolen,
            reqwest::Method::PUT,
            "/api/users/password",
            guess.clone(),
        )
        .await;
        let retry_after = assert_refused_with_429(res).await;
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    let metrics = metrics(&app).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("auth_rate_limited_total{") && l.contains("route=\"password\"")),
        "{metrics}"
    );
}

/// An auth service counting its limits in Redis under `prefix`.
async fn spawn_shared(redis_url: &str, prefix: &str) -> App {
    let shared = ticketing_auth::SharedSettings {
        redis_url: redis_url.to_owned(),
        prefix: prefix.to_owned(),
    };
    spawn_with(TestBackend::Sqlite, |s| s.limits.shared = Some(shared)).await
}

async fn metrics(app: &App) -> String {
    app.server
        .client
        .get(app.server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Two auth processes on one Redis (issue 31): 12 sign-ins to one account, alternating
/// between them, within the minute: exactly 5 get through (here: `Invalid credentials`,
/// the account is unknown), 7 are refused with 429 — not 5 per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_limit_in_redis() {
    let prefix = ticketing_kit::testing::unique_prefix();
    let url = ticketing_kit::testing::redis_url();
    let apps = [
        spawn_shared(&url, &prefix).await,
        spawn_shared(&url, &prefix).await,
    ];
    let wrong = json!({"email": "shared@test.com", "password": "wrong password"});
    let mut statuses = Vec::new();
    for i in 0..12 {
        let res = apps[i % 2].post("/api/users/signin", wrong.clone()).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = assert_refused_with_429(res).await;
            assert!((1..=12).contains(&retry_after), "{retry_after}");
            statuses.push(429);
        } else {
            statuses.push(res.status().as_u16());
        }
    }
    assert_eq!(
        statuses,
        [400, 400, 400, 400, 400, 429, 429, 429, 429, 429, 429, 429]
    );
    for app in &apps {
        let text = metrics(app).await;
        assert!(text.contains("auth_rate_limited_total{"), "{text}");
    }
}

/// Redis unreachable (a closed port): the service starts, and its limits count in the
/// process, each such check counted in `rate_limit_fallback_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_limits_count_locally() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_shared(&url, "unused").await;
    let wrong = json!({"email": "alone@test.com", "password": "wrong password"});
    for _ in 0..5 {
        let res = app.post("/api/users/signin", wrong.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    let res = app.post("/api/users/signin", wrong.clone()).await;
    assert_refused_with_429(res).await;
    let text = metrics(&app).await;
    let fallbacks: f64 = text
        .lines()
        .filter(|l| l.starts_with("rate_limit_fallback_total{") && l.contains("limit=\"account\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(fallbacks >= 6.0, "{text}");
}

backend_tests!(
    tokens_carry_a_random_sid,
    signout_ends_this_session_only,
    signout_everywhere_ends_every_session,
    a_password_change_ends_every_other_session,
    a_password_change_validates_its_fields,
    password_guesses_are_limited_like_sign_ins,
    wrong_passwords_for_one_account_are_refused_after_a_handful,
    the_default_address_limit_lets_a_test_suite_through,
    forwarded_for_names_the_client_only_behind_a_trusted_proxy,
    limits_can_be_switched_off,
    a_flood_of_hashes_is_refused_with_503_not_queued,
    signup_returns_201_and_sets_the_session_cookie,
    signup_rejects_an_invalid_email,
    signup_rejects_an_invalid_password,
    signup_names_every_missing_field,
    signup_refuses_a_taken_email_in_any_case,
    concurrent_signups_for_one_email_create_one_account,
    signin_with_unknown_email_or_wrong_password_says_the_same,
    signin_validates_its_fields,
    signin_with_valid_credentials_sets_the_cookie,
    signout_clears_the_cookie,
    currentuser_describes_the_signed_in_user,
    sessions_work_by_bearer_and_by_the_seed_cookie_name,
    foreign_expired_and_unsigned_tokens_are_anonymous,
    secure_cookies_when_configured,
    bad_input_gets_a_4xx_in_the_contract_format,
    health_and_openapi_are_served,
);
