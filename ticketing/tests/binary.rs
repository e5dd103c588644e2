//! The `ticketing` binary as a user runs it: embedded mode keeps users and sessions
//! across restarts; `--target auth --database-url` serves the same API on PostgreSQL.

mod process;

use std::process::Command;

use ticketing_kit::testing::{credentials, postgres_base_url, unique_prefix, Api};

use process::Running;

#[tokio::test]
async fn embedded_restart_keeps_users_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();

    let first = Running::start(&["--data-dir", data], &[]).await;
    let user = Api::new(first.base.clone()).sign_up("keep@test.com").await;
    first.stop();
    assert!(dir.path().join("jwt.key").exists());
    assert!(dir.path().join("auth.db").exists());

    let second = Running::start(&["--data-dir", data], &[]).await;
    // The same browser: its cookie from the first run.
    let browser = Api::new(second.base.clone()).as_user(&user);
    let me = browser.get_json("/api/users/currentuser").await;
    assert_eq!(
        me["currentUser"]["email"], "keep@test.com",
        "session survives"
    );
    let res = browser
        .post_json("/api/users/signin", credentials("keep@test.com"))
        .await;
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
    let (_, headers) = Api::new(running.base.clone())
        .sign_up_with_headers("pg@test.com")
        .await;
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
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
