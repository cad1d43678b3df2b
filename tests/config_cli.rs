//! The configuration as a user meets it: `check-config`, `config-schema`, and
//! startup refusals, through the real binary.

mod common;

use std::process::Command;

use common::GATEWAY;

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("c.json");
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn check_config_lists_every_problem_with_its_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = write(
        &dir,
        r#"{"proxy": {"adr": "x"}, "mcpServers": {"a": {"command": "x", "env": {"K": {"$env": "MCPGATE_TEST_SURELY_UNSET"}}}, "b": {"url": "not a url"}}}"#,
    );
    let out = Command::new(GATEWAY)
        .arg("check-config")
        .arg(&p)
        .env_remove("MCPGATE_TEST_SURELY_UNSET")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("proxy.adr: unknown field `adr`"), "{err}");
    assert!(
        err.contains(
            "mcpServers.a.env.K: environment variable MCPGATE_TEST_SURELY_UNSET is not set"
        ),
        "{err}"
    );
    assert!(
        err.contains("mcpServers.b.url: is not a valid URL"),
        "{err}"
    );
}

#[test]
fn check_config_accepts_the_shipped_examples() {
    for example in ["examples/mcpgate.json", "examples/claude-desktop.json"] {
        let out = Command::new(GATEWAY)
            .arg("check-config")
            .arg(example)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn serve_refuses_a_public_address_without_auth() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = write(
        &dir,
        r#"{"proxy": {"addr": "0.0.0.0:0"}, "mcpServers": {"a": {"command": "x"}}}"#,
    );
    let out = Command::new(GATEWAY)
        .args(["serve", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy.addr") && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn the_schema_command_prints_the_committed_schema() {
    let out = Command::new(GATEWAY)
        .arg("config-schema")
        .output()
        .expect("run");
    assert!(out.status.success());
    let committed = std::fs::read_to_string("config.schema.json").expect("committed schema");
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
    let schema: serde_json::Value = serde_json::from_str(&committed).expect("json");
    assert!(schema["properties"]["mcpServers"].is_object());
}

#[test]
fn hash_password_prints_an_argon2id_hash_of_stdin() {
    use std::io::Write;
    let mut child = Command::new(GATEWAY)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret pass\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(mcpgate::util::password::verify("s3cret pass", &hash));
    assert!(
        !mcpgate::util::password::verify("s3cret pass\n", &hash),
        "the newline is not part of it"
    );
}
