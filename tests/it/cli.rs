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
