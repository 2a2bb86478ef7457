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
