//! The `ticketing` binary as a user runs it: started on a free port, stopped by SIGTERM.

#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Running {
    pub child: Child,
    pub base: String,
}

/// A free port on 127.0.0.1 (bound and released: another process could take it in
/// between, which is unlikely enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Running {
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> Running {
        Self::start_on(free_port(), args, envs).await
    }

    pub async fn start_on(port: u16, args: &[&str], envs: &[(&str, &str)]) -> Running {
        Self::start_logged(port, args, envs, None).await
    }

    /// Started on `port`, its output appended to `log` (nothing kept without one).
    pub async fn start_logged(
        port: u16,
        args: &[&str],
        envs: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Running {
        let output = || match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the log"),
            ),
            None => Stdio::null(),
        };
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticketing"));
        cmd.args(args)
            .args(["--listen", &listen])
            .env_remove("JWT_KEY")
            .env_remove("TICKETING_DATABASE_URL")
            .env_remove("NATS_URL")
            .env_remove("TICKETING_API_URL")
            .stdout(output())
            .stderr(output());
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
            if let Ok(res) = reqwest::get(running.url("/readyz")).await {
                if res.status().is_success() {
                    return running;
                }
            }
            assert!(Instant::now() < deadline, "ticketing did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Send SIGTERM (graceful shutdown) without waiting.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// `kill -9`, and reap it: its port is closed and its files are as the kill left
    /// them once this returns.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait for the process to exit, at most `limit`.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        panic!("ticketing did not stop within {limit:?}");
    }

    /// SIGTERM, then expect a clean exit.
    pub fn stop(mut self) {
        self.terminate();
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
        // Reaped, so that it is gone (its port closed) once the drop returns.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ticketing audit` of an embedded system's data directory, its databases read as they
/// are (`settle`: seconds the audit waits for events in flight).
pub fn audit(data: &str, settle: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ticketing"))
        .args(["audit", "--data-dir", data, "--settle-seconds", settle])
        .env_remove("TICKETING_DATABASE_URL")
        .output()
        .expect("run the audit")
}

/// A service's SQLite file in an embedded data directory, opened to plant divergences
/// (foreign keys off: a planted row may name what does not exist).
pub fn sqlite(dir: &std::path::Path, service: &str) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join(format!("{service}.db"))).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    conn
}
