//! The real `courier` binary with security on: the loopback rule, Kubernetes service-link
//! variables, TLS and tokens from `COURIER_*` variables, the operator CLI over `https://` with
//! `--token`/`COURIER_CLI_TOKEN`, the audit trail, and a real SIGHUP rotating the certificate
//! and the tokens.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::auth::write_tokens;
use crate::certs::{TestCa, tls_endpoint};
use crate::harness::*;
use crate::process::{courier_command, free_port};

/// `courier ARGS` with only the given `COURIER_*` variables (the test's own are removed).
fn courier(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = courier_command();
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    courier(args, env).output().expect("run the courier binary")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_open_server_refuses_a_non_loopback_listen() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/courier.db", dir.path().display());
    let listen = format!("0.0.0.0:{}", free_port().port());
    let output = run(
        &["serve", "--listen", &listen, "--database-url", &database],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("auth.tokens_file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unknown_courier_variables_are_still_refused() {
    let output = run(&["migrate"], &[("COURIER_LISTEN_PORT_NUMBER", "1")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("listen_port_number"),
        "{}",
        stderr(&output)
    );
}

/// `courier serve`, killed when dropped; its log goes to a file.
struct Served {
    child: Child,
    log: std::path::PathBuf,
}

impl Served {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let log = dir.join("courier.log");
        let child = courier(&["serve"], env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start courier serve");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hang_up(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_unauthenticated_non_loopback_server_starts_only_when_allowed_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/courier.db", dir.path().display());
    let port = free_port().port();
    let listen = format!("0.0.0.0:{port}");
    let mut served = Served::start(
        dir.path(),
        &[
            ("COURIER_LISTEN", &listen),
            ("COURIER_DATABASE_URL", &database),
            ("COURIER_METRICS_LISTEN", ""),
            ("COURIER_AUTH__ALLOW_UNAUTHENTICATED", "true"),
        ],
    );
    let started = Instant::now();
    while !served.log().contains("courier serving") {
        assert!(
            served.child.try_wait().unwrap().is_none(),
            "exited: {}",
            served.log()
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            served.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        served.log().contains("AUTHENTICATION IS OFF"),
        "{}",
        served.log()
    );
}

/// Runs an operator command against `addr` and returns its output.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let command = tokio::process::Command::from(courier(args, env)).output();
    tokio::time::timeout(Duration::from_secs(60), command)
        .await
        .expect("the command ends within 60 s")
        .expect("run the courier binary")
}

#[tokio::test]
async fn the_binary_serves_tls_and_tokens_audits_admin_calls_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}/courier.db", dir.path().display());
    let old_ca = TestCa::new(dir.path(), "old");
    let new_ca = TestCa::new(dir.path(), "new");
    let files = old_ca.server("server");
    let tokens = dir.path().join("tokens.toml");
    write_tokens(&tokens, &[("ops", "first-secret", &["admin"])]);
    let addr = free_port();
    let listen = addr.to_string();
    let served = Served::start(
        dir.path(),
        &[
            ("COURIER_LISTEN", &listen),
            ("COURIER_DATABASE_URL", &database),
            ("COURIER_METRICS_LISTEN", ""),
            ("COURIER_TLS__CERT_FILE", files.cert.to_str().unwrap()),
            ("COURIER_TLS__KEY_FILE", files.key.to_str().unwrap()),
            ("COURIER_AUTH__TOKENS_FILE", tokens.to_str().unwrap()),
            // What Kubernetes puts into a pod beside a Service named `courier`.
            ("COURIER_SERVICE_HOST", "10.0.0.1"),
            ("COURIER_SERVICE_PORT", "50051"),
            ("COURIER_SERVICE_PORT_GRPC", "50051"),
            ("COURIER_PORT", "tcp://10.0.0.1:50051"),
            ("COURIER_PORT_50051_TCP", "tcp://10.0.0.1:50051"),
            ("COURIER_PORT_50051_TCP_ADDR", "10.0.0.1"),
            ("COURIER_PORT_50051_TCP_PORT", "50051"),
            ("COURIER_PORT_50051_TCP_PROTO", "tcp"),
            ("COURIER_CLI_TOKEN", "not-for-the-server"),
        ],
    );
    let channel = tls_endpoint(addr, old_ca.trusting()).connect_lazy();
    wait_until_serving(channel, Duration::from_secs(30)).await;
    let log = served.log();
    assert_eq!(
        log.matches("ignoring Kubernetes service-link variables")
            .count(),
        1,
        "one warning line: {log}"
    );

    let https = format!("https://{addr}");
    let old_ca_file = old_ca.ca_file.to_str().unwrap();
    let create = [
        "subscriptions",
        "create",
        "billing",
        "--topic",
        "orders",
        "--addr",
        &https,
        "--ca-file",
        old_ca_file,
    ];
    let output = cli(&create, &[("COURIER_CLI_TOKEN", "first-secret")]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let output = cli(&create, &[]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("UNAUTHENTICATED"),
        "{}",
        stderr(&output)
    );

    let log = served.log();
    let audit = log
        .lines()
        .find(|line| line.contains("courier::audit") && line.contains("subscription created"))
        .unwrap_or_else(|| panic!("an audit line for CreateSubscription: {log}"));
    assert!(audit.contains("principal=ops"), "{audit}");
    assert!(audit.contains("CreateSubscription"), "{audit}");
    assert!(!log.contains("first-secret"), "the token is never logged");

    // Rotate both the certificate (another CA) and the tokens, then SIGHUP.
    let rotated = new_ca.server("rotated");
    std::fs::copy(&rotated.cert, &files.cert).unwrap();
    std::fs::copy(&rotated.key, &files.key).unwrap();
    write_tokens(&tokens, &[("ops", "second-secret", &["admin"])]);
    served.hang_up();
    let stats = |ca: &Path, token: &str| {
        let args = [
            "stats".to_owned(),
            "--addr".into(),
            https.clone(),
            "--ca-file".into(),
            ca.display().to_string(),
            "--token".into(),
            token.to_owned(),
        ];
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&args, &[]).await
        }
    };
    eventually(
        Duration::from_secs(20),
        "the rotated files serve",
        || async {
            stats(&new_ca.ca_file, "second-secret")
                .await
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    let output = stats(&new_ca.ca_file, "first-secret").await;
    assert!(
        stderr(&output).contains("UNAUTHENTICATED"),
        "{}",
        stderr(&output)
    );
    let output = stats(&old_ca.ca_file, "second-secret").await;
    assert!(
        !output.status.success(),
        "the old certificate is no longer served"
    );
    assert!(served.log().contains("SIGHUP"), "{}", served.log());
}
