//! Starting the server: open and migrate the store, bind the socket (TLS when configured),
//! and hand requests to the `http` layer.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use actix_web::middleware::{NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};

use crate::config::ServeConfig;
use crate::export::{self, Exporter};
use crate::fhir::definitions;
use crate::http::{self, AppState};
use crate::interaction::search_params::SearchRegistry;
use crate::interaction::Services;
use crate::store::{Backend, DatabaseUrl, Store};

/// How often a node checks whether other nodes changed the search parameters (a cheap query
/// on two small indexes).
const SEARCH_PARAMS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// A server that is bound and about to serve.
pub struct Started {
    pub server: actix_web::dev::Server,
    pub addr: SocketAddr,
    pub base_url: String,
}

/// Opens and migrates the database, then binds. Errors are messages for the operator.
pub fn start(config: &ServeConfig) -> Result<Started, String> {
    let url = DatabaseUrl::parse(&config.database.database_url).map_err(|e| e.to_string())?;
    let store = Store::open_with_cache(
        &url,
        config.database.pool_size,
        config.database.sqlite_cache_kib,
    )
    .map_err(|e| e.to_string())?;
    let applied = store.migrate().map_err(|e| e.to_string())?;
    if applied > 0 {
        log::info!("applied {applied} migration(s) to {url}");
    }
    if config.insecure_no_auth && !config.listen.ip().is_loopback() {
        return Err(format!(
            "--insecure-no-auth serves every record to anyone: it is refused on {}, which is \
             not a loopback address; listen on 127.0.0.1 or switch authorization on",
            config.listen
        ));
    }
    let (search, pending) = SearchRegistry::load(&store).map_err(|e| e.to_string())?;
    let definitions = definitions::r4();
    let tls = match &config.tls {
        Some((cert, key)) => Some(load_tls(cert, key)?),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base_url = config
        .base_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}/fhir"));
    if !pending.is_empty() {
        search
            .reindex(&store, &pending, &base_url, &mut |_| {})
            .map_err(|e| format!("reindexing failed: {e}"))?;
    }
    let export_dir = config.export_dir.clone().unwrap_or_else(|| {
        url.sqlite_file()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .join("carnet-export")
    });
    let authority = crate::auth::Authority::load(&store, &base_url)?;
    for provider in &config.identity_providers {
        crate::auth::upstream::check_issuer(provider)?;
    }
    let providers = crate::auth::upstream::Providers::new(
        config.identity_providers.clone(),
        authority.urls().callback.clone(),
    );
    if config.insecure_no_auth {
        log::warn!(
            "--insecure-no-auth: authorization is OFF; anyone who reaches {addr} reads and \
             writes every record"
        );
    }
    let exporter = Exporter::new(export::Settings {
        dir: export_dir,
        batch_size: config.export_batch_size,
        max_file_bytes: config.export_max_file_size,
        retention: config.export_retention,
        throttle: config.export_throttle,
    });
    let state = web::Data::new(AppState {
        services: Services {
            store,
            search,
            definitions,
            base_url: base_url.clone(),
            max_bundle_entries: config.max_bundle_entries,
        },
        max_body_bytes: config.max_body_size,
        export: exporter,
        authority,
        require_auth: !config.insecure_no_auth,
        providers,
    });
    // Unfinished export jobs (a restart) resume as soon as the worker starts.
    state
        .export
        .spawn(state.clone().into_inner())
        .map_err(|e| format!("cannot start the export worker: {e}"))?;
    // Definitions written (or reindexed) through other nodes come into force here too.
    let watched = state.clone().into_inner();
    std::thread::Builder::new()
        .name("carnet-search-params".into())
        .spawn(move || loop {
            std::thread::sleep(SEARCH_PARAMS_POLL);
            match watched.search.refresh(&watched.store) {
                Ok(Some(pending)) if !pending.is_empty() => log::info!(
                    "search parameters changed through another node; searchable on {} after \
                     POST [base]/$reindex",
                    pending.join(", ")
                ),
                Ok(Some(_)) => log::info!("search parameters changed through another node"),
                Ok(None) => {}
                Err(e) => log::warn!("checking for search parameter changes: {e}"),
            }
        })
        .map_err(|e| format!("cannot start the search parameter watcher: {e}"))?;
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = config.workers.unwrap_or(match url.backend() {
        Backend::Sqlite => cpus,
        // Reads by id run on the workers; with a networked database more of them keep the
        // cores busy while others wait on a round trip (measured in docs/benchmarks.md).
        Backend::Postgres => 2 * cpus,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            // Clients append slashes (`POST /fhir/`, `GET /fhir/Patient/`): the same resource.
            .wrap(NormalizePath::new(TrailingSlash::Trim))
            .wrap(actix_web::middleware::from_fn(http::cors))
            .configure(http::configure)
    })
    .workers(workers);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls),
        None => server.listen(listener),
    }
    .map_err(|e| format!("cannot serve on {addr}: {e}"))?;
    let server = server.run();
    println!("carnet listening on {scheme}://{addr}");
    let _ = std::io::stdout().flush();
    log::info!("FHIR base {base_url}, database {url}");
    Ok(Started {
        server,
        addr,
        base_url,
    })
}

fn load_tls(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
    rustls::ServerConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the TLS certificate and key do not form a usable pair: {e}"))
}
