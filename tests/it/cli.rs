//! The binary's refusals: `serve` names what to set.

use std::process::Command;

fn serve(env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_handoff-bridge"));
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .current_dir(dir.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("HANDOFF_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_without_an_encryption_key_says_to_run_keygen() {
    let (ok, stderr) = serve(&[("HANDOFF_ADMIN_TOKEN", "a-long-enough-admin-token")]);
    assert!(!ok);
    assert!(stderr.contains("HANDOFF_ENCRYPTION_KEY"), "{stderr}");
    assert!(stderr.contains("handoff-bridge keygen"), "{stderr}");
}

#[test]
fn serve_without_an_admin_token_says_to_set_it() {
    let key = handoff_bridge::connection::crypto::EncryptionKey::generate_base64();
    let (ok, stderr) = serve(&[("HANDOFF_ENCRYPTION_KEY", &key)]);
    assert!(!ok);
    assert!(
        stderr.contains("HANDOFF_ADMIN_TOKEN is not set"),
        "{stderr}"
    );
}

#[test]
fn keygen_prints_a_usable_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff-bridge"))
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(handoff_bridge::connection::crypto::EncryptionKey::from_base64(key.trim()).is_ok());
}

#[test]
fn serve_exits_0_on_sigterm() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = handoff_bridge::connection::crypto::EncryptionKey::generate_base64();
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff-bridge"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("HANDOFF_ADMIN_TOKEN", "a-long-enough-admin-token")
        .env("HANDOFF_ENCRYPTION_KEY", &key)
        .env(
            "HANDOFF_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("b.db").display()),
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it listens (bounded), then ask it to stop the way an orchestrator does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve never listened");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit status {status:?}: {stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}
