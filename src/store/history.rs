//! History of an instance, a type or the whole server, newest first, paged with a keyset
//! cursor so that pages stay consistent while new versions arrive.

use diesel::prelude::*;

use super::resources::{compartment_keys, version_columns, visible_key, Version};
use super::schema::resource_version;
use super::{Store, StoreError};
use crate::access::AccessScope;

/// The position after the last entry of a page: entries strictly older than it come next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub last_updated: i64,
    pub res_key: i64,
    pub version: i64,
}

impl HistoryCursor {
    /// The opaque text form used in paging links.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.last_updated, self.res_key, self.version)
    }

    pub fn decode(text: &str) -> Option<HistoryCursor> {
        let mut parts = text.split('.').map(|p| p.parse::<i64>().ok());
        let cursor = HistoryCursor {
            last_updated: parts.next()??,
            res_key: parts.next()??,
            version: parts.next()??,
        };
        parts.next().is_none().then_some(cursor)
    }
}

/// Which history to read.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery<'a> {
    /// `None` for the whole server.
    pub res_type: Option<&'a str>,
    /// With `res_type`, one instance.
    pub res_id: Option<&'a str>,
    /// `_since`: only versions written at or after this time (microseconds).
    pub since: Option<i64>,
    pub after: Option<HistoryCursor>,
    pub count: i64,
}

#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub entries: Vec<Version>,
    /// Where the next page starts, if there is one.
    pub next: Option<HistoryCursor>,
    /// Only counted for instance history, where it is cheap.
    pub total: Option<i64>,
}

impl Store {
    /// Reads one page of history; `None` when an instance was asked for and the caller cannot
    /// see it (or it never existed).
    pub fn history(
        &self,
        scope: &AccessScope,
        q: &HistoryQuery<'_>,
    ) -> Result<Option<HistoryPage>, StoreError> {
        let mut conn = self.conn()?;
        let mut query = resource_version::table
            .select((version_columns(), resource_version::res_key))
            .into_boxed();
        let instance_key = match (q.res_type, q.res_id) {
            (Some(res_type), Some(res_id)) => {
                let Some(key) = visible_key(&mut conn, scope, res_type, res_id)? else {
                    return Ok(None);
                };
                query = query.filter(resource_version::res_key.eq(key));
                Some(key)
            }
            (Some(res_type), None) => {
                query = query.filter(resource_version::res_type.eq(res_type));
                None
            }
            _ => None,
        };
        if instance_key.is_none() {
            if let Some(patients) = scope.patient_ids() {
                query = query.filter(resource_version::res_key.eq_any(compartment_keys(patients)));
            }
            if let Some(types) = scope.types() {
                query = query.filter(resource_version::res_type.eq_any(types));
            }
        }
        if let Some(since) = q.since {
            query = query.filter(resource_version::last_updated.ge(since));
        }
        if let Some(c) = q.after {
            query = query.filter(
                resource_version::last_updated.lt(c.last_updated).or(
                    resource_version::last_updated.eq(c.last_updated).and(
                        resource_version::res_key
                            .lt(c.res_key)
                            .or(resource_version::res_key
                                .eq(c.res_key)
                                .and(resource_version::version.lt(c.version))),
                    ),
                ),
            );
        }
        let mut rows = query
            .order((
                resource_version::last_updated.desc(),
                resource_version::res_key.desc(),
                resource_version::version.desc(),
            ))
            .limit(q.count + 1)
            .load::<(Version, i64)>(&mut conn)?;
        let next = if rows.len() as i64 > q.count {
            rows.truncate(q.count as usize);
            rows.last().map(|(v, key)| HistoryCursor {
                last_updated: v.last_updated,
                res_key: *key,
                version: v.version,
            })
        } else {
            None
        };
        let total = match instance_key {
            Some(key) => {
                let mut count = resource_version::table
                    .filter(resource_version::res_key.eq(key))
                    .count()
                    .into_boxed();
                if let Some(since) = q.since {
                    count = count.filter(resource_version::last_updated.ge(since));
                }
                Some(count.get_result::<i64>(&mut conn)?)
            }
            None => None,
        };
        Ok(Some(HistoryPage {
            entries: rows.into_iter().map(|(v, _)| v).collect(),
            next,
            total,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = HistoryCursor {
            last_updated: 1_700_000_000_000_000,
            res_key: 42,
            version: 3,
        };
        assert_eq!(HistoryCursor::decode(&c.encode()), Some(c));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "1..3"] {
            assert_eq!(HistoryCursor::decode(bad), None, "{bad}");
        }
    }
}
