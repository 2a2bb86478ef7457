//! The `carnet` command: `serve`, `migrate` and `import`.

use std::process::ExitCode;

use clap::Parser;

use carnet::config::{Cli, Command};

/// mimalloc rather than the system allocator: values are built on one thread (the import's
/// reader, a request's parser) and freed on another, which glibc's per-thread arenas handle
/// with locks and consolidation (a quarter of an import's time); mimalloc frees them cheaply.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use carnet::store::{Backend, DatabaseUrl, Store};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(
        env_logger::Env::new().filter_or("CARNET_LOG", "warn,carnet=info"),
    )
    .init();
    if let Command::Import(args) = &cli.command {
        return import(args);
    }
    let result = match cli.command {
        Command::Serve(args) => args.resolve().and_then(|config| {
            actix_web::rt::System::new().block_on(async move {
                let started = carnet::server::start(&config)?;
                started
                    .server
                    .await
                    .map_err(|e| format!("the server stopped: {e}"))
            })
        }),
        Command::Migrate(args) => args.resolve().and_then(|config| {
            let url = DatabaseUrl::parse(&config.database_url).map_err(|e| e.to_string())?;
            let store = Store::open(&url, 1).map_err(|e| e.to_string())?;
            let applied = store.migrate().map_err(|e| e.to_string())?;
            println!("{url}: {applied} migration(s) applied, schema up to date");
            Ok(())
        }),
        Command::Token(args) => token(&args),
        Command::Client(command) => client(&command),
        Command::Import(_) => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("carnet: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Opens and migrates the database of `args`, with one connection: a second one would be
/// opened in the pool's background while the command exits (libpq crashes in that race).
fn open_store(args: &carnet::config::DatabaseArgs) -> Result<Store, String> {
    let config = args.resolve()?;
    let url = DatabaseUrl::parse(&config.database_url).map_err(|e| e.to_string())?;
    let store = Store::open(&url, 1).map_err(|e| e.to_string())?;
    store.migrate().map_err(|e| e.to_string())?;
    Ok(store)
}

/// `carnet token`: one access token on standard output.
fn token(args: &carnet::config::TokenArgs) -> Result<(), String> {
    use carnet::access::Scopes;
    let scopes = Scopes::parse(&args.scope);
    if scopes.resources.is_empty() {
        return Err(format!(
            "--scope '{}' holds no resource scope this server knows; for instance \
             'system/*.cruds', 'user/*.rs' or 'patient/*.rs'",
            args.scope
        ));
    }
    if !(1..=carnet::auth::tokens::MAX_ACCESS_TOKEN_SECONDS).contains(&args.ttl) {
        return Err(format!(
            "--ttl {}: an access token lives from 1 to {} seconds",
            args.ttl,
            carnet::auth::tokens::MAX_ACCESS_TOKEN_SECONDS
        ));
    }
    if let Some(user) = &args.fhir_user {
        let valid = user.split_once('/').is_some_and(|(t, id)| {
            [
                "Patient",
                "Practitioner",
                "PractitionerRole",
                "RelatedPerson",
                "Person",
            ]
            .contains(&t)
                && !id.is_empty()
        });
        if !valid {
            return Err(format!(
                "--fhir-user '{user}': give Practitioner/ID, Patient/ID, RelatedPerson/ID, \
                 PractitionerRole/ID or Person/ID"
            ));
        }
    }
    let base_url = args.resolved_base_url()?;
    let store = open_store(&args.database)?;
    let authority = carnet::auth::Authority::load(&store, &base_url)?;
    let issued = authority
        .issue(
            &store,
            &carnet::auth::NewGrant {
                client_id: "carnet-cli".into(),
                subject: args.fhir_user.clone().unwrap_or_else(|| "operator".into()),
                fhir_user: args.fhir_user.clone(),
                patient: args.patient.clone(),
                scopes,
                lifetime_seconds: args.ttl,
                origin: None,
            },
        )
        .map_err(|e| e.to_string())?;
    println!("{}", issued.access_token);
    Ok(())
}

/// `carnet client add|list|remove`.
fn client(command: &carnet::config::ClientCommand) -> Result<(), String> {
    use carnet::auth::clients;
    use carnet::config::ClientCommand;
    match command {
        ClientCommand::Add(args) => {
            let kind = clients::ClientKind::parse(&args.kind).ok_or_else(|| {
                format!(
                    "--kind '{}': use public, confidential, asymmetric or backend",
                    args.kind
                )
            })?;
            let jwks = match &args.jwks {
                Some(text) => Some(match text.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read --jwks {path}: {e}"))?,
                    None => text.clone(),
                }),
                None => None,
            };
            let store = open_store(&args.database)?;
            let secret = clients::register(
                &store,
                &clients::NewClient {
                    client_id: args.client_id.clone(),
                    kind,
                    name: args.name.clone().unwrap_or_else(|| args.client_id.clone()),
                    redirect_uris: args.redirect_uris.clone(),
                    scopes: args.scope.clone(),
                    jwks,
                    jwks_url: args.jwks_url.clone(),
                },
            )?;
            match secret {
                Some(secret) => println!(
                    "registered {} ({}); its secret (shown once): {secret}",
                    args.client_id, args.kind
                ),
                None => println!("registered {} ({})", args.client_id, args.kind),
            }
            Ok(())
        }
        ClientCommand::List(database) => {
            let store = open_store(database)?;
            for row in store.clients().map_err(|e| e.to_string())? {
                println!("{}", clients::describe(&row));
            }
            Ok(())
        }
        ClientCommand::Remove {
            database,
            client_id,
        } => {
            let store = open_store(database)?;
            if store.remove_client(client_id).map_err(|e| e.to_string())? {
                println!("removed {client_id}; its tokens are revoked");
                Ok(())
            } else {
                Err(format!("no client '{client_id}' is registered"))
            }
        }
    }
}

/// `carnet import`: 0 when everything was loaded, 3 when resources were rejected (the rest
/// is loaded), 1 when the load could not go on (run it again to resume).
fn import(args: &carnet::config::ImportArgs) -> ExitCode {
    use std::io::IsTerminal;

    // Errors: the exit status (1: the load could not go on, 2: wrong usage) and the message.
    let run = || -> Result<carnet::import::Summary, (u8, String)> {
        let failed = |e: String| (1, e);
        let config = args.resolve().map_err(failed)?;
        let url =
            DatabaseUrl::parse(&config.database.database_url).map_err(|e| failed(e.to_string()))?;
        let writers = match (url.backend(), config.writers) {
            (Backend::Postgres, writers) => writers.unwrap_or(2).max(1),
            (Backend::Sqlite, Some(n)) if n > 1 => {
                return Err((
                    2,
                    format!(
                        "--writers {n}: SQLite has one writer at a time; leave --writers out \
                         (or give 1) for an SQLite database"
                    ),
                ))
            }
            (Backend::Sqlite, _) => 1,
        };
        // The writers' connections, and one for what runs beside them.
        let store =
            Store::open_with_cache(&url, writers as u32 + 1, config.database.sqlite_cache_kib)
                .map_err(|e| failed(e.to_string()))?;
        let applied = store.migrate().map_err(|e| failed(e.to_string()))?;
        if applied > 0 {
            log::info!("applied {applied} migration(s) to {url}");
        }
        let (search, _pending) = carnet::interaction::search_params::SearchRegistry::load(&store)
            .map_err(|e| failed(e.to_string()))?;
        let services = carnet::interaction::Services {
            store,
            search,
            definitions: carnet::fhir::definitions::r4(),
            base_url: config.base_url.clone(),
            // An operator's own files: a Synthea patient may hold thousands of entries.
            max_bundle_entries: usize::MAX,
        };
        let options = carnet::import::ImportOptions {
            paths: config.paths.clone(),
            rejects: config.rejects.clone(),
            batch_size: config.batch_size,
            progress_bar: std::io::stderr().is_terminal(),
            writers,
        };
        carnet::import::run(&services, &options).map_err(failed)
    };
    match run() {
        Ok(summary) => {
            print!("{summary}");
            if summary.rejected > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err((status, message)) => {
            eprintln!("carnet: {message}");
            ExitCode::from(status)
        }
    }
}
