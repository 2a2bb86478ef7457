//! PostgreSQL inserts of many rows as one statement over arrays: `INSERT ... SELECT * FROM
//! unnest($1::bigint[], $2::int[], ...)`. A multi-row `VALUES` list of 500 rows is a new
//! statement text for every row count, which PostgreSQL parses, analyses and plans each time
//! (measured: a quarter of the server's time in a bulk load, besides thousands of bound
//! parameters); the array form has one short text per table, a handful of parameters, and no
//! limit on the number of rows. SQLite keeps the multi-row `VALUES` (`resources`, `index`).

use diesel::pg::PgConnection;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Array, BigInt, Double, Integer, Nullable, Text};
use diesel::RunQueryDsl;

use super::search::index::IndexRows;

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    res_id: String,
}

/// Which of `ids` of `res_type` have a row. An unnamed statement, so it is planned for these
/// values every time: a prepared statement may fall back to a generic plan chosen while the
/// table was nearly empty, which keeps scanning it sequentially as it grows (measured: a
/// 50,000-resource load took 52 s instead of 9). Bulk transactions used to force custom
/// plans for everything (`plan_cache_mode`) instead, which also re-planned the foreign key
/// check of every inserted row: a tenth of the server's time.
pub(super) fn existing_ids(
    pg: &mut PgConnection,
    res_type: &str,
    ids: &[&str],
) -> Result<Vec<String>, DieselError> {
    let rows: Vec<Id> = diesel::sql_query(
        "SELECT res_id FROM resource WHERE res_type = $1 AND res_id = ANY($2::text[])",
    )
    .bind::<Text, _>(res_type)
    .bind::<Array<Text>, _>(ids)
    .load(pg)?;
    Ok(rows.into_iter().map(|r| r.res_id).collect())
}

/// `(res_key, res_type, res_id)` of a created row.
#[derive(diesel::QueryableByName)]
pub(super) struct CreatedKey {
    #[diesel(sql_type = BigInt)]
    pub res_key: i64,
    #[diesel(sql_type = Text)]
    pub res_type: String,
    #[diesel(sql_type = Text)]
    pub res_id: String,
}

/// Inserts `resource` rows at version 1, live, all updated at `now`; returns their keys.
pub(super) fn insert_resources(
    pg: &mut PgConnection,
    targets: &[(&str, &str)],
    patients: &[Option<&str>],
    now: i64,
) -> Result<Vec<CreatedKey>, DieselError> {
    let types: Vec<&str> = targets.iter().map(|(t, _)| *t).collect();
    let ids: Vec<&str> = targets.iter().map(|(_, i)| *i).collect();
    diesel::sql_query(
        "INSERT INTO resource (res_type, res_id, version, last_updated, deleted, patient) \
         SELECT t, i, 1, $3, false, p FROM unnest($1::text[], $2::text[], $4::text[]) AS u(t, i, p) \
         RETURNING res_key, res_type, res_id",
    )
    .bind::<Array<Text>, _>(&types)
    .bind::<Array<Text>, _>(&ids)
    .bind::<BigInt, _>(now)
    .bind::<Array<Nullable<Text>>, _>(patients)
    .load(pg)
}

/// Inserts the first versions of created resources: `(res_key, res_type, res_id, body)`.
pub(super) fn insert_versions(
    pg: &mut PgConnection,
    rows: &[(i64, &str, &str, &str)],
    now: i64,
    method: &str,
) -> Result<(), DieselError> {
    let keys: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.2).collect();
    let bodies: Vec<&str> = rows.iter().map(|r| r.3).collect();
    diesel::sql_query(
        "INSERT INTO resource_version (res_key, version, res_type, res_id, last_updated, method, body) \
         SELECT k, 1, t, i, $5, $6, b FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) \
         AS u(k, t, i, b)",
    )
    .bind::<Array<BigInt>, _>(&keys)
    .bind::<Array<Text>, _>(&types)
    .bind::<Array<Text>, _>(&ids)
    .bind::<Array<Text>, _>(&bodies)
    .bind::<BigInt, _>(now)
    .bind::<Text, _>(method)
    .execute(pg)?;
    Ok(())
}

/// Inserts `(patient, res_key)` compartment memberships.
pub(super) fn insert_compartments(
    pg: &mut PgConnection,
    rows: &[(&String, i64)],
) -> Result<(), DieselError> {
    if rows.is_empty() {
        return Ok(());
    }
    let patients: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let keys: Vec<i64> = rows.iter().map(|r| r.1).collect();
    diesel::sql_query(
        "INSERT INTO resource_compartment (patient, res_key) \
         SELECT * FROM unnest($1::text[], $2::bigint[])",
    )
    .bind::<Array<Text>, _>(&patients)
    .bind::<Array<BigInt>, _>(&keys)
    .execute(pg)?;
    Ok(())
}

/// The `(res_key, param_id, grp)` columns of one table's rows, and the rows themselves.
fn gather<'r, T>(
    resources: &[(i64, &'r IndexRows)],
    table: impl Fn(&'r IndexRows) -> &'r [T],
) -> (Vec<i64>, Vec<&'r T>) {
    let mut keys = Vec::new();
    let mut rows = Vec::new();
    for (key, index) in resources {
        for row in table(index) {
            keys.push(*key);
            rows.push(row);
        }
    }
    (keys, rows)
}

/// Inserts the search index rows of several resources `(res_key, rows)`: one statement per
/// table that has rows.
pub(super) fn insert_index(
    pg: &mut PgConnection,
    resources: &[(i64, &IndexRows)],
) -> Result<(), DieselError> {
    let (keys, rows) = gather(resources, |r| &r.string);
    if !keys.is_empty() {
        diesel::sql_query(
            "INSERT INTO search_string (res_key, param_id, grp, normalized, exact) \
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[], $5::text[])",
        )
        .bind::<Array<BigInt>, _>(&keys)
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
        .execute(pg)?;
    }
    let (keys, rows) = gather(resources, |r| &r.token);
    if !keys.is_empty() {
        diesel::sql_query(
            "INSERT INTO search_token (res_key, param_id, grp, system, code) \
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[], $5::text[])",
        )
        .bind::<Array<BigInt>, _>(&keys)
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
        .execute(pg)?;
    }
    let (keys, rows) = gather(resources, |r| &r.reference);
    if !keys.is_empty() {
        diesel::sql_query(
            "INSERT INTO search_reference (res_key, param_id, grp, target_type, target_id, url) \
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[], $5::text[], \
             $6::text[])",
        )
        .bind::<Array<BigInt>, _>(&keys)
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.4.as_str()).collect::<Vec<_>>())
        .execute(pg)?;
    }
    let (keys, rows) = gather(resources, |r| &r.date);
    if !keys.is_empty() {
        diesel::sql_query(
            "INSERT INTO search_date (res_key, param_id, grp, low, high) \
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::bigint[], $5::bigint[])",
        )
        .bind::<Array<BigInt>, _>(&keys)
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.3).collect::<Vec<_>>())
        .execute(pg)?;
    }
    let (keys, rows) = gather(resources, |r| &r.number);
    if !keys.is_empty() {
        diesel::sql_query(
            "INSERT INTO search_number (res_key, param_id, grp, low, high) \
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::float8[], $5::float8[])",
        )
        .bind::<Array<BigInt>, _>(&keys)
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(rows.iter().map(|r| r.2).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(rows.iter().map(|r| r.3).collect::<Vec<_>>())
        .execute(pg)?;
    }
    let (keys, rows) = gather(resources, |r| &r.quantity);
    if !keys.is_empty() {
        diesel::sql_query(
            "INSERT INTO search_quantity (res_key, param_id, grp, low, high, system, code, \
             canon_unit, canon_low, canon_high) \
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::float8[], $5::float8[], \
             $6::text[], $7::text[], $8::text[], $9::float8[], $10::float8[])",
        )
        .bind::<Array<BigInt>, _>(&keys)
        .bind::<Array<Integer>, _>(rows.iter().map(|q| q.param).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(rows.iter().map(|q| q.grp).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(rows.iter().map(|q| q.low).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(rows.iter().map(|q| q.high).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|q| q.system.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|q| q.code.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|q| q.canon_unit.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Double>, _>(rows.iter().map(|q| q.canon_low).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(rows.iter().map(|q| q.canon_high).collect::<Vec<_>>())
        .execute(pg)?;
    }
    let (keys, rows) = gather(resources, |r| &r.uri);
    if !keys.is_empty() {
        diesel::sql_query(
            "INSERT INTO search_uri (res_key, param_id, grp, uri) \
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::text[])",
        )
        .bind::<Array<BigInt>, _>(&keys)
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
        .execute(pg)?;
    }
    Ok(())
}
