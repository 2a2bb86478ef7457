//! The search parameters in force: R4's and those of the active SearchParameter resources.
//! Loaded at start, again after a SearchParameter is written through this node, and when
//! [`SearchRegistry::refresh`] (polled by the server) sees that SearchParameters were written
//! through another node of a cluster. Their keys are registered at once, so new writes index
//! them; existing resources wait for `$reindex` (or the next start).

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::access::AccessScope;
use crate::fhir::search::{custom, index_entries, r4, ParamJson, SearchParams};
use crate::fhir::{json, served};
use crate::store::search::keys::ParamsStamp;
use crate::store::{Store, StoreError};

pub struct SearchRegistry {
    current: RwLock<Arc<SearchParams>>,
    /// Serialises reloads (and the snapshot a reindex starts from), so that the parameters
    /// and the store's keys in force always come from the same compilation.
    changing: Mutex<()>,
    /// The database state the parameters in force were compiled from
    /// ([`Store::search_params_stamp`]), read before compiling: a change racing with a reload
    /// changes the stamp again and causes another reload.
    stamp: Mutex<ParamsStamp>,
}

impl SearchRegistry {
    /// Compiles the parameters of the stored SearchParameters and registers their keys.
    /// Returns the registry and the types to reindex before new parameters are searchable.
    pub fn load(store: &Store) -> Result<(SearchRegistry, Vec<String>), StoreError> {
        let stamp = store.search_params_stamp()?;
        let (params, pending) = compile(store)?;
        let registry = SearchRegistry {
            current: RwLock::new(params),
            changing: Mutex::new(()),
            stamp: Mutex::new(stamp),
        };
        Ok((registry, pending))
    }

    /// The parameters in force; a request keeps the set it started with.
    pub fn current(&self) -> Arc<SearchParams> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the SearchParameter resources again and puts their parameters in force. Returns
    /// the types whose resources need a reindex.
    pub fn reload(&self, store: &Store) -> Result<Vec<String>, StoreError> {
        let _changing = self.changing();
        let stamp = store.search_params_stamp()?;
        self.reload_locked(store, stamp)
    }

    /// Reloads when SearchParameters were written, or keys reindexed, since the parameters in
    /// force were compiled (through any node): how nodes of a cluster learn each other's
    /// definitions. `None` when nothing changed, else the types whose resources need a
    /// reindex.
    pub fn refresh(&self, store: &Store) -> Result<Option<Vec<String>>, StoreError> {
        let _changing = self.changing();
        let stamp = store.search_params_stamp()?;
        if stamp == *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(None);
        }
        self.reload_locked(store, stamp).map(Some)
    }

    /// Compiles and puts in force what the store holds; `stamp` was read before, under the
    /// `changing` lock.
    fn reload_locked(&self, store: &Store, stamp: ParamsStamp) -> Result<Vec<String>, StoreError> {
        let (params, pending) = compile(store)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = params;
        *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
        Ok(pending)
    }

    fn changing(&self) -> MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SearchRegistry {
    /// Indexes the existing resources of `types` again with the parameters in force, in
    /// batches, with progress in the log and told to `progress` (the count so far, after each
    /// batch); their pending parameters then become searchable. Returns how many resources
    /// were reindexed.
    pub fn reindex(
        &self,
        store: &Store,
        types: &[String],
        base_url: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        // The parameters and the keys they registered, taken together.
        let (params, keys) = {
            let _changing = self.changing();
            (self.current(), store.pending_search_keys(types)?)
        };
        let extract = |body: &str| {
            let resource = json::parse_strict(body.as_bytes()).map_err(|e| e.diagnostics)?;
            index_entries(&params, &resource, base_url).map_err(|e| e.to_string())
        };
        let mut last_log = std::time::Instant::now();
        let mut report = |done: u64| {
            progress(done);
            if last_log.elapsed().as_secs() >= 5 {
                log::info!("reindexing {}: {done} resources so far", types.join(", "));
                last_log = std::time::Instant::now();
            }
        };
        let done = store.reindex(types, &extract, &mut report)?;
        // Keys redefined meanwhile stay pending (their definition no longer matches).
        store.mark_indexed(&keys)?;
        self.reload(store)?;
        log::info!(
            "reindexed {done} resources of {} in {:.1} s",
            types.join(", "),
            started.elapsed().as_secs_f64()
        );
        Ok(done)
    }
}

fn compile(store: &Store) -> Result<(Arc<SearchParams>, Vec<String>), StoreError> {
    let bodies = store.current_bodies(&AccessScope::everything(), "SearchParameter")?;
    let params = Arc::new(SearchParams::r4_with(custom_params(&bodies)));
    let pending = store.register_search_params(&params, served::served_types())?;
    Ok((params, pending))
}

/// The parameters of the stored definitions. They were checked when written; one that no
/// longer fits (its code now taken by another, its base no longer served) is left out, with a
/// warning for the operator.
fn custom_params(bodies: &[String]) -> Vec<ParamJson> {
    let mut params: Vec<ParamJson> = Vec::new();
    for body in bodies {
        let Ok(resource) = json::parse_strict(body.as_bytes()) else {
            continue;
        };
        let url = resource["url"].as_str().unwrap_or_default();
        match custom::definitions(&resource, r4()) {
            Ok(defined) => {
                for param in defined {
                    if params
                        .iter()
                        .any(|p| p.base == param.base && p.code == param.code)
                    {
                        log::warn!(
                            "SearchParameter {url}: {} already has a parameter {:?}; ignored",
                            param.base,
                            param.code
                        );
                    } else {
                        params.push(param);
                    }
                }
            }
            Err(issues) => {
                let reasons: Vec<String> = issues.into_iter().map(|i| i.diagnostics).collect();
                log::warn!("SearchParameter {url} ignored: {}", reasons.join("; "));
            }
        }
    }
    params
}
