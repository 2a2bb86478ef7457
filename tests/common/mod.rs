//! Test harness: a real `carnet` process on 127.0.0.1:0 over a fresh database, SQLite (a
//! temporary file) or PostgreSQL (a database cloned from a migrated template, as crates.io's
//! test-db does), and a small blocking HTTP client.

#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;

/// Generates one test per backend: `backend_tests! { fn name(server: &Server) { ... } }`.
#[macro_export]
macro_rules! backend_tests {
    ($(fn $name:ident($server:ident: &Server) $body:block)*) => {
        $(fn $name($server: &common::Server) $body)*
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::common::Server::start(super::common::Backend::Sqlite)); })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(&super::common::Server::start(super::common::Backend::Postgres)); })*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the test PostgreSQL cluster is (without a database name).
pub fn postgres_root() -> String {
    std::env::var("CARNET_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh database; dropped with the value.
pub struct TestDatabase {
    pub url: String,
    pg_name: Option<String>,
    dir: Option<PathBuf>,
}

impl TestDatabase {
    pub fn new(backend: Backend) -> TestDatabase {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("carnet-test-{unique}"));
                std::fs::create_dir_all(&dir).unwrap();
                TestDatabase {
                    url: format!("sqlite:{}", dir.join("carnet.db").display()),
                    pg_name: None,
                    dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let template = migrated_template();
                let name = format!("carnet_test_{unique}");
                admin_exec(&format!("CREATE DATABASE {name} TEMPLATE {template}"));
                TestDatabase {
                    url: format!("{}/{name}", postgres_root()),
                    pg_name: Some(name),
                    dir: None,
                }
            }
        }
    }
}

impl TestDatabase {
    /// The same database for a second server (a node of a cluster, PostgreSQL only); the
    /// original still owns it and drops it.
    pub fn shared(&self) -> TestDatabase {
        assert!(
            self.pg_name.is_some(),
            "only PostgreSQL databases are shared by nodes"
        );
        TestDatabase {
            url: self.url.clone(),
            pg_name: None,
            dir: None,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            let _ = try_admin_exec(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn try_admin_exec(sql: &str) -> Result<(), String> {
    let mut conn =
        PgConnection::establish(&format!("{}/postgres", postgres_root())).map_err(|e| {
            format!(
                "PostgreSQL is not reachable at {} ({e}); start it or set CARNET_TEST_POSTGRES",
                postgres_root()
            )
        })?;
    diesel::sql_query(sql)
        .execute(&mut conn)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub fn admin_exec(sql: &str) {
    try_admin_exec(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The name of a template database holding the current migrations, created once per schema
/// version. Concurrent test processes race safely: each builds under a private name and
/// renames; the loser drops its copy.
fn migrated_template() -> String {
    let mut hasher = DefaultHasher::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files: Vec<PathBuf> = walk(&dir);
    files.sort();
    for file in files {
        file.strip_prefix(&dir).unwrap().hash(&mut hasher);
        std::fs::read(&file).unwrap().hash(&mut hasher);
    }
    let name = format!("carnet_template_{:016x}", hasher.finish());
    let exists = || {
        let mut conn = PgConnection::establish(&format!("{}/{name}", postgres_root()));
        conn.as_mut().is_ok()
    };
    if exists() {
        return name;
    }
    let building = format!("carnet_building_{}", uuid::Uuid::new_v4().simple());
    admin_exec(&format!("CREATE DATABASE {building}"));
    let status = Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args([
            "migrate",
            "--database-url",
            &format!("{}/{building}", postgres_root()),
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "carnet migrate failed on the template");
    if try_admin_exec(&format!("ALTER DATABASE {building} RENAME TO {name}")).is_err() {
        let _ = try_admin_exec(&format!("DROP DATABASE IF EXISTS {building}"));
    }
    name
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A running `carnet serve`, stopped when dropped. Requests carry an operator's token
/// (`system/*.cruds`, from `carnet token`) unless a test sets its own `Authorization`.
pub struct Server {
    child: Child,
    pub addr: String,
    pub base: String,
    pub database: TestDatabase,
    pub token: String,
    /// The server's public FHIR base URL, the audience of its tokens.
    pub issuer: String,
    stderr: std::sync::Mutex<mpsc::Receiver<String>>,
}

/// `carnet token` against `database_url` for the FHIR base `base`; extra arguments such as
/// `--patient ID` or `--fhir-user Practitioner/ID`.
pub fn cli_token(database_url: &str, base: &str, scope: &str, extra: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args([
            "token",
            "--database-url",
            database_url,
            "--base-url",
            base,
            "--scope",
            scope,
        ])
        .args(extra)
        .env("CARNET_LOG", "warn")
        .output()
        .expect("cannot run carnet token");
    assert!(
        output.status.success(),
        "carnet token failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

impl Server {
    pub fn start(backend: Backend) -> Server {
        Server::start_with(backend, &[])
    }

    /// Starts with extra command-line arguments.
    pub fn start_with(backend: Backend, args: &[&str]) -> Server {
        let database = TestDatabase::new(backend);
        Server::start_on(database, args, &[])
    }

    pub fn start_on(database: TestDatabase, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_carnet"));
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &database.url,
                "--pool-size",
                "4",
                "--workers",
                "2",
            ])
            .args(args)
            .env("CARNET_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("cannot start target carnet binary");
        let (tx, stderr) = mpsc::channel();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        let (line_tx, line_rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = line_tx.send(line);
            }
            for _ in lines {}
        });
        let line = match line_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let text = stderr
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default();
                panic!("carnet did not start: {text}");
            }
        };
        let url = line
            .strip_prefix("carnet listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let addr = url.split("://").nth(1).unwrap().to_string();
        let base = format!("{url}/fhir");
        // Tokens are for the server's public base URL (its issuer), which a test may set.
        let issuer = ureq::get(&format!("{url}/.well-known/smart-configuration"))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
            .and_then(|v| v["issuer"].as_str().map(str::to_string))
            .unwrap_or_else(|| base.clone());
        let token = cli_token(&database.url, &issuer, "system/*.cruds", &[]);
        Server {
            child,
            base,
            addr,
            database,
            token,
            issuer,
            stderr: std::sync::Mutex::new(stderr),
        }
    }

    /// A token of this server for `scope`, with extra `carnet token` arguments.
    pub fn token_for(&self, scope: &str, extra: &[&str]) -> String {
        cli_token(&self.database.url, &self.issuer, scope, extra)
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub fn request(&self, method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            url: self.url(path),
            headers: vec![("Authorization".into(), format!("Bearer {}", self.token))],
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path).send()
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path).json(body)
    }

    pub fn put(&self, path: &str, body: &Value) -> Response {
        self.request("PUT", path).json(body)
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path).send()
    }

    /// Every page of a Bundle answer (search, history, `$everything`), from `path`, following
    /// the `next` links.
    pub fn pages(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(self.url(path));
        while let Some(url) = next {
            let page = self.get(&url).ok_json();
            next = next_link(&page);
            out.push(page);
        }
        out
    }

    /// Every version the server holds, as `type/id/version` strings, via system history.
    pub fn all_versions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for page in self.pages("/_history?_count=1000") {
            for entry in page["entry"].as_array().into_iter().flatten() {
                let full = entry["fullUrl"].as_str().unwrap();
                let version = entry["response"]["etag"].as_str().unwrap();
                out.push(format!(
                    "{}@{version}",
                    full.rsplit_once("/fhir/").unwrap().1
                ));
            }
        }
        out
    }

    /// Stops the server and keeps its database for another run.
    pub fn take_database(mut server: Server) -> TestDatabase {
        let _ = server.child.kill();
        let _ = server.child.wait();
        let placeholder = TestDatabase {
            url: String::new(),
            pg_name: None,
            dir: None,
        };
        std::mem::replace(&mut server.database, placeholder)
    }

    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// Sets a header; an `Authorization` replaces the server's default token.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        if name.eq_ignore_ascii_case("authorization") {
            self.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        }
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The request without any `Authorization` header.
    pub fn anonymous(mut self) -> Request {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        self
    }

    /// The request with `token` as its bearer token.
    pub fn bearer(self, token: &str) -> Request {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn send(self) -> Response {
        self.send_bytes(None)
    }

    pub fn json(self, body: &Value) -> Response {
        let has_type = self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        let request = if has_type {
            self
        } else {
            self.header("Content-Type", "application/fhir+json")
        };
        request.send_bytes(Some(body.to_string().as_bytes()))
    }

    pub fn body(self, body: &[u8]) -> Response {
        self.send_bytes(Some(body))
    }

    fn send_bytes(self, body: Option<&[u8]>) -> Response {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(120))
            .build();
        let mut request = agent.request(&self.method, &self.url);
        for (k, v) in &self.headers {
            request = request.set(k, v);
        }
        let result = match body {
            Some(bytes) => request.send_bytes(bytes),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{} {}: {e}", self.method, self.url),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .map(|name| {
                let value = response.header(&name).unwrap_or_default().to_string();
                (name.to_ascii_lowercase(), value)
            })
            .collect();
        let mut body = Vec::new();
        response
            .into_reader()
            .take(200 * 1024 * 1024)
            .read_to_end(&mut body)
            .unwrap();
        Response {
            status,
            headers,
            body,
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The JSON body, asserting a 2xx status.
    pub fn ok_json(&self) -> Value {
        assert!(
            (200..300).contains(&self.status),
            "expected success, got {}: {}",
            self.status,
            self.text()
        );
        self.json()
    }

    /// Asserts the status and that the body is an OperationOutcome with an error issue;
    /// returns the issues.
    pub fn outcome(&self, status: u16) -> Vec<Value> {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["resourceType"], "OperationOutcome", "{}", self.text());
        let issues = body["issue"].as_array().unwrap().clone();
        assert!(
            issues
                .iter()
                .any(|i| i["severity"] == "error" || i["severity"] == "fatal"),
            "{}",
            self.text()
        );
        issues
    }

    /// Asserts an error OperationOutcome whose issues name `expression`.
    pub fn outcome_at(&self, status: u16, expression: &str) {
        let issues = self.outcome(status);
        assert!(
            issues.iter().any(|i| i["expression"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x == expression))),
            "no issue at {expression}: {}",
            self.text()
        );
    }
}

/// The `next` link of a Bundle page, if any.
fn next_link(page: &Value) -> Option<String> {
    page["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_string())
}
