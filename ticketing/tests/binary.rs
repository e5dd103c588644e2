//! The `ticketing` binary as a user runs it: embedded mode keeps users and sessions
//! across restarts; `--target auth --database-url` serves the same API on PostgreSQL.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ticketing_kit::testing::{postgres_base_url, unique_prefix, TestServer};

struct Running {
    child: Child,
    base: String,
}

impl Running {
    async fn start(args: &[&str], envs: &[(&str, &str)]) -> Running {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticketing"));
        cmd.args(args)
            .args(["--listen", &listen])
            .env_remove("JWT_KEY")
            .env_remove("TICKETING_DATABASE_URL")
            .env_remove("NATS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start ticketing");
        let running = Running {
            child,
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(res) = reqwest::get(format!("{}/readyz", running.base)).await {
                if res.status().is_success() {
                    return running;
                }
            }
            assert!(Instant::now() < deadline, "ticketing did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(mut self) {
        // SIGTERM: graceful shutdown.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "exit status {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("ticketing did not stop on SIGTERM");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

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
