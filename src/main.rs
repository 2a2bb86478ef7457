//! The `carnet` command: `serve` and `migrate`.

use std::process::ExitCode;

use clap::Parser;

use carnet::config::{Cli, Command};
use carnet::store::{DatabaseUrl, Store};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(
        env_logger::Env::new().filter_or("CARNET_LOG", "warn,carnet=info"),
    )
    .init();
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("carnet: {message}");
            ExitCode::FAILURE
        }
    }
}
