//! The `carnet` command: options, precedence of settings, migrations, TLS.

mod common;

use std::process::Command;

use common::{Backend, Server, TestDatabase};
use serde_json::json;

fn carnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_explains_every_option() {
    let out = carnet(&["serve", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--listen",
        "--database-url",
        "--base-url",
        "--tls-cert",
        "--tls-key",
        "--config",
        "--max-body-size",
        "CARNET_DATABASE_URL",
    ] {
        assert!(help.contains(option), "{option} missing from help:\n{help}");
    }
    let top = String::from_utf8(carnet(&["--help"]).stdout).unwrap();
    assert!(top.contains("serve") && top.contains("migrate"));
}

#[test]
fn migrate_is_idempotent_on_both_backends() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDatabase::new(backend);
        let first = carnet(&["migrate", "--database-url", &db.url]);
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        let second =
            String::from_utf8(carnet(&["migrate", "--database-url", &db.url]).stdout).unwrap();
        assert!(second.contains("0 migration(s) applied"), "{second}");
    }
}

#[test]
fn concurrent_migrations_on_postgres_serialise() {
    let name = format!("carnet_race_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/{name}", common::postgres_root());
    common::admin_exec(&format!("CREATE DATABASE {name}"));
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_carnet"))
                .args(["migrate", "--database-url", &url])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    common::admin_exec(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

#[test]
fn bad_settings_fail_with_a_message() {
    let out = carnet(&["migrate", "--database-url", "mysql://localhost/x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
    let out = carnet(&["serve", "--config", "/nonexistent/carnet.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
    let out = carnet(&["serve", "--tls-cert", "/x.pem"]);
    assert!(
        !out.status.success(),
        "a certificate without a key is refused"
    );
}

#[test]
fn settings_come_from_file_then_environment_then_command_line() {
    let db = TestDatabase::new(Backend::Sqlite);
    let dir = std::env::temp_dir().join(format!("carnet-cfg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("carnet.toml");
    std::fs::write(
        &file,
        "base_url = \"https://from-file.example/fhir\"\nmax_body_size = 1000\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();

    let server = Server::start_on(db, &["--config", config], &[]);
    let created = server.post("/Patient", &json!({"resourceType": "Patient"}));
    assert!(created
        .header("location")
        .unwrap()
        .starts_with("https://from-file.example/fhir/Patient/"));
    let big = json!({"resourceType": "Patient", "name": [{"text": "x".repeat(2000)}]});
    server.post("/Patient", &big).outcome(413);
    let db = Server::take_database(server);

    let server = Server::start_on(
        db,
        &["--config", config],
        &[("CARNET_BASE_URL", "https://from-env.example/fhir")],
    );
    let created = server.post("/Patient", &json!({"resourceType": "Patient"}));
    assert!(created
        .header("location")
        .unwrap()
        .starts_with("https://from-env.example/fhir/"));
    let db = Server::take_database(server);

    let server = Server::start_on(
        db,
        &[
            "--config",
            config,
            "--base-url",
            "https://from-cli.example/fhir/",
        ],
        &[("CARNET_BASE_URL", "https://from-env.example/fhir")],
    );
    let created = server.post("/Patient", &json!({"resourceType": "Patient"}));
    assert!(created
        .header("location")
        .unwrap()
        .starts_with("https://from-cli.example/fhir/Patient/"));
    assert_eq!(
        server.all_versions().len(),
        3,
        "the same SQLite file served all three runs"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serves_https_with_the_given_certificate() {
    let dir = std::env::temp_dir().join(format!("carnet-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed to make a test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = Server::start_with(
        Backend::Sqlite,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            cert.to_str().unwrap(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("https://{}/fhir/metadata", server.addr))
        .output()
        .expect("curl is needed for the TLS test");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/health", server.addr))
        .output()
        .unwrap();
    assert_ne!(
        String::from_utf8_lossy(&plain.stdout),
        "200",
        "plain HTTP is not served on a TLS port"
    );
    let _ = std::fs::remove_dir_all(dir);
}
