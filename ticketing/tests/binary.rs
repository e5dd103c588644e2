//! The `ticketing` binary as a user runs it: embedded mode keeps users and sessions
//! across restarts; `--target auth --database-url` serves the same API on PostgreSQL.

mod process;

use std::process::Command;

use serde_json::{json, Value};
use ticketing_kit::testing::{postgres_base_url, unique_prefix, TestServer};

use process::Running;

#[tokio::test]
async fn embedded_restart_keeps_users_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let client = TestServer::new_client();

    let first = Running::start(&["--data-dir", data], &[]).await;
    let res = client
        .post(format!("{}/api/users/signup", first.base))
        .json(&json!({"email": "keep@test.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    first.stop();
    assert!(dir.path().join("jwt.key").exists());
    assert!(dir.path().join("auth.db").exists());

    let second = Running::start(&["--data-dir", data], &[]).await;
    let me: Value = client
        .get(format!("{}/api/users/currentuser", second.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["currentUser"]["email"], "keep@test.com",
        "session survives"
    );
    let res = client
        .post(format!("{}/api/users/signin", second.base))
        .json(&json!({"email": "keep@test.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "user survives");
    second.stop();
}

#[tokio::test]
async fn auth_target_serves_on_postgres() {
    let url = format!("{}/{}", postgres_base_url(), unique_prefix());
    let running = Running::start(
        &["--target", "auth", "--database-url", &url],
        &[("JWT_KEY", "binary-test-key")],
    )
    .await;
    let client = TestServer::new_client();
    let res = client
        .post(format!("{}/api/users/signup", running.base))
        .json(&json!({"email": "pg@test.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("; Secure"),
        "distributed mode defaults to Secure cookies"
    );
    running.stop();
}

#[tokio::test]
async fn distributed_mode_requires_a_jwt_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args([
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/x",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("JWT_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_KEY"));
}
