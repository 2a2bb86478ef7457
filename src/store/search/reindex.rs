//! Reindexing: the index rows of existing resources written again from their current bodies,
//! when their type gained search parameters (the first start after the search tables were
//! added, a release with new parameters, a SearchParameter added at run time). The caller
//! then marks the keys that were pending searchable ([`Store::mark_indexed`]).

use diesel::prelude::*;

use super::index::{self, IndexRows};
use crate::fhir::search::IndexEntry;
use crate::store::schema::{resource, resource_version};
use crate::store::{Store, StoreError};

/// Resources per transaction.
const BATCH: i64 = 500;

impl Store {
    /// Rewrites the index rows of every live resource of `types`, in batches, each batch in one
    /// write transaction; `extract` gives a body's search values. A resource changed by a
    /// writer meanwhile is left alone (that writer indexed it). `progress` hears the count
    /// done so far. Returns how many resources were reindexed.
    pub fn reindex<'p>(
        &self,
        types: &[String],
        extract: &dyn Fn(&str) -> Result<Vec<IndexEntry<'p>>, String>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, StoreError> {
        let ids = self.search_ids()?;
        let mut after = 0_i64;
        let mut done = 0_u64;
        loop {
            let batch: Vec<(i64, i64, String, Option<String>)> = resource::table
                .inner_join(
                    resource_version::table.on(resource_version::res_key
                        .eq(resource::res_key)
                        .and(resource_version::version.eq(resource::version))),
                )
                .filter(resource::res_type.eq_any(types))
                .filter(resource::deleted.eq(false))
                .filter(resource::res_key.gt(after))
                .order(resource::res_key)
                .limit(BATCH)
                .select((
                    resource::res_key,
                    resource::version,
                    resource::res_type,
                    resource_version::body,
                ))
                .load(&mut *self.conn()?)?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.0;
            let mut rows = Vec::with_capacity(batch.len());
            for (key, version, res_type, body) in &batch {
                let entries = extract(body.as_deref().unwrap_or_default()).map_err(|e| {
                    StoreError::Internal(format!("reindexing {res_type} (key {key}): {e}"))
                })?;
                rows.push((*key, *version, IndexRows::new(&ids, res_type, &entries)));
            }
            let written = self.write_with(|conn| {
                conn.transaction(|conn| {
                    let mut written = 0;
                    for (key, version, rows) in &rows {
                        // Locks the row, and only while it is still at the version read.
                        let current = diesel::update(resource::table)
                            .filter(resource::res_key.eq(key))
                            .filter(resource::version.eq(version))
                            .set(resource::version.eq(resource::version))
                            .execute(conn)?;
                        if current == 1 {
                            index::remove(conn, *key)?;
                            index::insert(conn, *key, rows)?;
                            written += 1;
                        }
                    }
                    Ok::<_, StoreError>(written)
                })
            })?;
            done += written;
            progress(done);
        }
        Ok(done)
    }
}
