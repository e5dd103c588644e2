//! A cluster of `scripts/cluster` for a test: its own state directory, databases,
//! stream, keys and block of ports; `down` when dropped (and by the script itself should
//! the test process die first).

#![allow(dead_code)] // Each test file uses its own part.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ticketing_kit::testing::{nats_url, postgres_base_url, redis_url, unique_prefix};

pub struct Cluster {
    _dir: tempfile::TempDir,
    pub state: PathBuf,
    base: u16,
    pub gateway: String,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Start one on a free block of ports from `ports_from` (each test file its own
    /// range, so that test binaries running at once do not race for a block), with
    /// `settings` added to the environment (replicas, service flags).
    pub async fn up(ports_from: u16, settings: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("cluster");
        let name = unique_prefix();
        let (base, gateway) = free_block(ports_from);
        let mut env: Vec<(String, String)> = [
            ("TICKETING_BIN", env!("CARGO_BIN_EXE_ticketing").to_owned()),
            ("CLUSTER_STATE_DIR", state.display().to_string()),
            ("CLUSTER_NAME", name.clone()),
            ("CLUSTER_BASE_PORT", base.to_string()),
            ("CLUSTER_GATEWAY_PORT", gateway.to_string()),
            ("CLUSTER_POSTGRES_URL", postgres_base_url()),
            ("CLUSTER_NATS_URL", nats_url()),
            ("CLUSTER_REDIS_URL", redis_url()),
            ("CLUSTER_READY_TIMEOUT", "180".to_owned()),
            ("CLUSTER_WATCH_PID", std::process::id().to_string()),
            ("JWT_KEY", format!("cluster-test-key-{name}")),
            ("TICKETING_COOKIE_SECURE", "false".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let cluster = Cluster {
            _dir: dir,
            state,
            base,
            gateway: format!("http://127.0.0.1:{gateway}"),
            env,
        };
        cluster.run("up").await;
        cluster
    }

    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster"))
            .args(verb.split_whitespace())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        cmd
    }

    /// `scripts/cluster <verb>`, which must succeed.
    pub async fn run(&self, verb: &str) {
        let out = tokio::process::Command::from(self.command(verb))
            .output()
            .await
            .expect("run scripts/cluster");
        assert!(
            out.status.success(),
            "scripts/cluster {verb} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL one instance (`webhooks-1`).
    pub fn kill9(&self, instance: &str) {
        let file = self.state.join("run").join(format!("{instance}.pid"));
        let pid = std::fs::read_to_string(&file).unwrap().trim().to_owned();
        let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(status.success(), "kill -9 {pid}");
    }

    /// Instance `n` (from 1) of the service in `slot` (see `scripts/cluster`).
    pub fn instance(&self, slot: u16, n: u16) -> String {
        format!("http://127.0.0.1:{}", self.base + 10 * slot + n - 1)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("down")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A block of 100 free ports from `from` on, below the ephemeral range: instance N of
/// slot S at base + 10·S + N − 1, the gateway at base + 99.
fn free_block(from: u16) -> (u16, u16) {
    let start = std::process::id() % 50;
    for n in 0..50u32 {
        let base = from + ((start + n) % 50) as u16 * 100;
        let gateway = base + 99;
        let wanted = (0..8u16)
            .flat_map(|slot| (0..2u16).map(move |i| base + 10 * slot + i))
            .chain([gateway]);
        if wanted
            .into_iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            return (base, gateway);
        }
    }
    panic!("no free block of ports");
}
