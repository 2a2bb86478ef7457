//! Settings, from the command line, `CARNET_*` environment variables and an optional TOML
//! file, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// Carnet: a FHIR R4 server for personal health records.
#[derive(Debug, Parser)]
#[command(name = "carnet", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start: the size of the serve variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the FHIR API (under /fhir) after migrating the database.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Load NDJSON files, Bundles and resources (files or directories) after migrating the
    /// database; resumes an interrupted load. Exit status 3 when resources were rejected.
    Import(ImportArgs),
    /// Print an access token signed by the server (whoever can read the database can do
    /// this: it is an operator's tool).
    Token(TokenArgs),
    /// Register, list and remove OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Public base URL of the FHIR API, the token's audience: the server's --base-url
    /// [default: http://127.0.0.1:8080/fhir]
    #[arg(long, env = "CARNET_BASE_URL")]
    pub base_url: Option<String>,

    /// SMART scopes, space-separated, e.g. 'system/*.cruds' or 'patient/*.rs'
    #[arg(long)]
    pub scope: String,

    /// Lifetime in seconds, at most 3600 [default: 3600]
    #[arg(long, default_value_t = 3600)]
    pub ttl: i64,

    /// The user the token speaks for, e.g. Practitioner/123 or Patient/456
    #[arg(long)]
    pub fhir_user: Option<String>,

    /// The patient in context (logical id), needed by patient/ scopes
    #[arg(long)]
    pub patient: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints the secret of a confidential client (shown once).
    Add(ClientAddArgs),
    /// List the registered clients.
    List(DatabaseArgs),
    /// Remove a client and revoke every token issued to it.
    Remove {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The client id
        client_id: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ClientAddArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The client id (letters, digits, - . _ ~)
    pub client_id: String,

    /// public (PKCE, no secret), confidential (a secret), asymmetric (signed assertions) or
    /// backend (client_credentials with signed assertions)
    #[arg(long)]
    pub kind: String,

    /// The scopes the client may ask for, space-separated (e.g. 'system/*.rs')
    #[arg(long)]
    pub scope: String,

    /// A redirect URI (exact match); repeat for several
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,

    /// The client's public keys: a JWKS document, or @FILE holding one
    #[arg(long)]
    pub jwks: Option<String>,

    /// Where to fetch the client's JWKS
    #[arg(long)]
    pub jwks_url: Option<String>,

    /// A name shown to people [default: the client id]
    #[arg(long)]
    pub name: Option<String>,
}

impl TokenArgs {
    /// The FHIR base URL the token is for.
    pub fn resolved_base_url(&self) -> Result<String, String> {
        let file = read_file(self.database.config.as_deref())?;
        Ok(self
            .base_url
            .clone()
            .or(file.base_url)
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| "http://127.0.0.1:8080/fhir".into()))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Public base URL of the FHIR API: references to it are local ones
    /// [default: http://127.0.0.1:8080/fhir]
    #[arg(long, env = "CARNET_BASE_URL")]
    pub base_url: Option<String>,

    /// Write every rejected resource here, one OperationOutcome per line (NDJSON)
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,

    /// Resources per database transaction (a Bundle is never split) [default: 2000]
    #[arg(long, env = "CARNET_IMPORT_BATCH_SIZE")]
    pub batch_size: Option<usize>,

    /// Transactions written at once, each on its own connection (PostgreSQL only; SQLite has
    /// one writer) [default: 2 on PostgreSQL]
    #[arg(long, env = "CARNET_IMPORT_WRITERS")]
    pub writers: Option<usize>,

    /// NDJSON files (one resource per line), JSON files (a Bundle or one resource), or
    /// directories of them (walked in sorted order)
    #[arg(required = true, value_name = "FILE_OR_DIR")]
    pub paths: Vec<PathBuf>,
}

/// Import settings with defaults applied.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub database: DatabaseConfig,
    pub base_url: String,
    pub rejects: Option<PathBuf>,
    pub batch_size: usize,
    /// As given; the backend decides the default.
    pub writers: Option<usize>,
    pub paths: Vec<PathBuf>,
}

impl ImportArgs {
    pub fn resolve(&self) -> Result<ImportConfig, String> {
        let file = read_file(self.database.config.as_deref())?;
        Ok(ImportConfig {
            database: resolve_database(&self.database, &file),
            base_url: self
                .base_url
                .clone()
                .or(file.base_url.clone())
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "http://127.0.0.1:8080/fhir".into()),
            rejects: self.rejects.clone(),
            batch_size: self.batch_size.unwrap_or(2000).max(1),
            writers: self.writers,
            paths: self.paths.clone(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database: a file path, sqlite:PATH, or postgres://user@host:port/db
    /// [default: sqlite:carnet.db]
    #[arg(long, env = "CARNET_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Most database connections held open [default: 16]
    #[arg(long, env = "CARNET_POOL_SIZE")]
    pub pool_size: Option<u32>,

    /// SQLite: MiB of page cache shared by the pool's connections (each gets an equal share,
    /// 2 to 32 MiB) [default: 64]
    #[arg(long, env = "CARNET_SQLITE_CACHE_SIZE")]
    pub sqlite_cache_size: Option<u64>,

    /// TOML file with any of these settings (command line and environment win)
    #[arg(long, env = "CARNET_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Address and port to listen on (port 0 picks a free one) [default: 127.0.0.1:8080]
    #[arg(long, env = "CARNET_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Public base URL of the FHIR API, used in links and Location headers
    /// [default: http(s)://LISTEN/fhir]
    #[arg(long, env = "CARNET_BASE_URL")]
    pub base_url: Option<String>,

    /// PEM certificate chain; with --tls-key, serve HTTPS
    #[arg(long, env = "CARNET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert
    #[arg(long, env = "CARNET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Largest request body in bytes, after decompression [default: 33554432 (32 MiB)]
    #[arg(long, env = "CARNET_MAX_BODY_SIZE")]
    pub max_body_size: Option<usize>,

    /// Most entries in one transaction or batch Bundle (more: 413) [default: 10000]
    #[arg(long, env = "CARNET_MAX_BUNDLE_ENTRIES")]
    pub max_bundle_entries: Option<usize>,

    /// HTTP worker threads [default: the number of CPUs on SQLite, twice that on PostgreSQL,
    /// where a read by id waits on the network]
    #[arg(long, env = "CARNET_WORKERS")]
    pub workers: Option<usize>,

    /// Directory of bulk export ($export) files, one subdirectory per job
    /// [default: carnet-export next to the SQLite database, else in the working directory]
    #[arg(long, env = "CARNET_EXPORT_DIR")]
    pub export_dir: Option<PathBuf>,

    /// Bulk export: an NDJSON file reaching this many bytes is closed and the type continues
    /// in a new file [default: 268435456 (256 MiB)]
    #[arg(long, env = "CARNET_EXPORT_MAX_FILE_SIZE")]
    pub export_max_file_size: Option<u64>,

    /// Bulk export: hours a finished job and its files are kept [default: 24]
    #[arg(long, env = "CARNET_EXPORT_RETENTION_HOURS")]
    pub export_retention_hours: Option<u64>,

    /// Bulk export: resources read per statement [default: 1000]
    #[arg(long, env = "CARNET_EXPORT_BATCH_SIZE", hide = true)]
    pub export_batch_size: Option<usize>,

    /// Test only: milliseconds the export worker pauses after each batch [default: 0]
    #[arg(long, env = "CARNET_EXPORT_THROTTLE_MS", hide = true)]
    pub export_throttle_ms: Option<u64>,

    /// Serve without authorization: anyone who reaches the port reads and writes everything.
    /// For local experiments only: refused on a non-loopback address
    #[arg(long, env = "CARNET_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
}

/// The config file: the same settings, snake_case keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    pool_size: Option<u32>,
    sqlite_cache_size: Option<u64>,
    listen: Option<SocketAddr>,
    base_url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_body_size: Option<usize>,
    max_bundle_entries: Option<usize>,
    workers: Option<usize>,
    export_dir: Option<PathBuf>,
    export_max_file_size: Option<u64>,
    export_retention_hours: Option<u64>,
    export_batch_size: Option<usize>,
    insecure_no_auth: Option<bool>,
    /// `[[identity_provider]]` tables: who may sign in, and through which upstream provider.
    #[serde(default)]
    identity_provider: Vec<IdentityProvider>,
}

/// An upstream OpenID provider people sign in with (`[[identity_provider]]` in the TOML file).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityProvider {
    /// A short name, in URLs and on the sign-in page's buttons' ids.
    pub id: String,
    /// What people see on the sign-in page.
    pub name: String,
    /// `professional` (a Practitioner) or `patient` (a Patient).
    pub signs_in: String,
    pub issuer: String,
    /// Where the discovery document is [default: ISSUER/.well-known/openid-configuration];
    /// Pro Santé Connect publishes `.../.well-known/wallet-openid-configuration`.
    pub discovery_url: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// [default: ["openid"]]
    #[serde(default)]
    pub scopes: Vec<String>,
    pub acr_values: Option<String>,
    /// The claim holding the person's national identifier (`SubjectNameID` for Pro Santé
    /// Connect), and the FHIR identifier system it is a value of.
    pub identifier_claim: String,
    pub identifier_system: String,
    /// The claim naming the profession (a code, or `code^system`), kept on a Practitioner
    /// created at first sign-in.
    pub profession_claim: Option<String>,
    /// Create the Practitioner of a professional's first sign-in from their claims.
    #[serde(default)]
    pub auto_provision: bool,
}

/// Database settings with defaults applied.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub database_url: String,
    pub pool_size: u32,
    /// SQLite page cache of the whole pool, in KiB.
    pub sqlite_cache_kib: u64,
}

/// Server settings with defaults applied.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database: DatabaseConfig,
    pub listen: SocketAddr,
    pub base_url: Option<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_body_size: usize,
    pub max_bundle_entries: usize,
    /// `None`: chosen from the backend at start.
    pub workers: Option<usize>,
    /// `None`: chosen from the database location at start.
    pub export_dir: Option<PathBuf>,
    pub export_max_file_size: u64,
    pub export_retention: std::time::Duration,
    pub export_batch_size: usize,
    pub export_throttle: std::time::Duration,
    /// `--insecure-no-auth`: every request may touch everything.
    pub insecure_no_auth: bool,
    pub identity_providers: Vec<IdentityProvider>,
}

fn check_providers(providers: Vec<IdentityProvider>) -> Result<Vec<IdentityProvider>, String> {
    for (i, p) in providers.iter().enumerate() {
        if p.id.is_empty() || !p.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "identity_provider id '{}': use letters, digits and -",
                p.id
            ));
        }
        if providers[..i].iter().any(|q| q.id == p.id) {
            return Err(format!("identity_provider id '{}' is given twice", p.id));
        }
        if !["professional", "patient"].contains(&p.signs_in.as_str()) {
            return Err(format!(
                "identity_provider '{}': signs_in must be professional or patient, not '{}'",
                p.id, p.signs_in
            ));
        }
    }
    Ok(providers)
}

fn read_file(path: Option<&Path>) -> Result<FileConfig, String> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("invalid config file {}: {e}", path.display()))
}

impl DatabaseArgs {
    pub fn resolve(&self) -> Result<DatabaseConfig, String> {
        let file = read_file(self.config.as_deref())?;
        Ok(resolve_database(self, &file))
    }
}

fn resolve_database(args: &DatabaseArgs, file: &FileConfig) -> DatabaseConfig {
    DatabaseConfig {
        database_url: args
            .database_url
            .clone()
            .or_else(|| file.database_url.clone())
            .unwrap_or_else(|| "sqlite:carnet.db".into()),
        pool_size: args.pool_size.or(file.pool_size).unwrap_or(16),
        sqlite_cache_kib: args
            .sqlite_cache_size
            .or(file.sqlite_cache_size)
            .map_or(crate::store::backend::DEFAULT_SQLITE_CACHE_KIB, |mib| {
                mib.saturating_mul(1024)
            }),
    }
}

impl ServeArgs {
    pub fn resolve(&self) -> Result<ServeConfig, String> {
        let file = read_file(self.database.config.as_deref())?;
        let tls = match (
            self.tls_cert.clone().or(file.tls_cert.clone()),
            self.tls_key.clone().or(file.tls_key.clone()),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("TLS needs both a certificate (tls_cert) and a key (tls_key)".into()),
        };
        let workers = self.workers.or(file.workers);
        Ok(ServeConfig {
            database: resolve_database(&self.database, &file),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            base_url: self
                .base_url
                .clone()
                .or(file.base_url.clone())
                .map(|u| u.trim_end_matches('/').to_string()),
            tls,
            max_body_size: self
                .max_body_size
                .or(file.max_body_size)
                .unwrap_or(32 * 1024 * 1024),
            max_bundle_entries: self
                .max_bundle_entries
                .or(file.max_bundle_entries)
                .unwrap_or(10_000)
                .max(1),
            workers: workers.map(|w| w.max(1)),
            export_dir: self.export_dir.clone().or(file.export_dir.clone()),
            export_max_file_size: self
                .export_max_file_size
                .or(file.export_max_file_size)
                .unwrap_or(256 * 1024 * 1024)
                .max(1),
            export_retention: std::time::Duration::from_secs(
                self.export_retention_hours
                    .or(file.export_retention_hours)
                    .unwrap_or(24)
                    .saturating_mul(3600),
            ),
            export_batch_size: self
                .export_batch_size
                .or(file.export_batch_size)
                .unwrap_or(1000)
                .clamp(1, 10_000),
            export_throttle: std::time::Duration::from_millis(self.export_throttle_ms.unwrap_or(0)),
            insecure_no_auth: self.insecure_no_auth || file.insecure_no_auth.unwrap_or(false),
            identity_providers: check_providers(file.identity_provider)?,
        })
    }
}
