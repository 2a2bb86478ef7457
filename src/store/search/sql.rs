//! SQL text with bound values, for the queries whose shape depends on the request. The text is
//! written once for both databases (standard SQL only); placeholders follow the backend.
//! Values from the request are always bound, never spliced; only integers the server owns
//! (parameter ids, limits) appear literally.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{BigInt, Double, Text};
use diesel::sqlite::Sqlite;

use crate::store::backend::{Backend, DbConnection};

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Int(i64),
    Float(f64),
    Text(String),
}

/// SQL text under construction and its bound values, in order.
#[derive(Debug, Clone)]
pub struct Sql {
    text: String,
    binds: Vec<Bind>,
    backend: Backend,
}

impl Sql {
    pub fn new(backend: Backend) -> Sql {
        Sql {
            text: String::with_capacity(512),
            binds: Vec::new(),
            backend,
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub fn bind(&mut self, value: Bind) -> &mut Sql {
        self.binds.push(value);
        match self.backend {
            Backend::Sqlite => self.text.push('?'),
            Backend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.binds.len().to_string());
            }
        }
        self
    }

    pub fn bind_text(&mut self, value: &str) -> &mut Sql {
        self.bind(Bind::Text(value.to_string()))
    }

    pub fn bind_int(&mut self, value: i64) -> &mut Sql {
        self.bind(Bind::Int(value))
    }

    pub fn bind_float(&mut self, value: f64) -> &mut Sql {
        self.bind(Bind::Float(value))
    }

    /// Written before a column, keeps it out of index selection on SQLite (its unary `+`), so
    /// that a correlated probe stays on the `(res_key, ...)` primary key instead of scanning a
    /// `(param_id, ...)` index over the parameter's whole range. PostgreSQL chooses by its
    /// statistics and gets no hint.
    pub fn probe_hint(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "+",
            Backend::Postgres => "",
        }
    }

    /// The resource row `alias` of each driver key `driver.res_key`. On SQLite a plain `CROSS
    /// JOIN` (which SQLite never reorders); on PostgreSQL a lateral lookup by primary key, so
    /// that the driver's keys are looked up one by one and a page stops early: with a join,
    /// PostgreSQL merged the driver with the whole `resource` primary key, reading it from its
    /// first row up to the driver's first key (98,000 rows for one `$everything` page).
    pub fn resource_of(&self, driver: &str, alias: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!(" CROSS JOIN resource {alias}"),
            Backend::Postgres => format!(
                " CROSS JOIN LATERAL (SELECT * FROM resource WHERE res_key = {driver}.res_key \
                 OFFSET 0) {alias}"
            ),
        }
    }

    /// Whether [`Sql::resource_of`] is a lateral lookup (PostgreSQL).
    pub fn lateral(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// `(?, ?, ...)` with one placeholder per value; `(NULL)`, which matches nothing, for none
    /// (an empty `IN ()` is an error on PostgreSQL).
    pub fn bind_list<'v>(&mut self, values: impl IntoIterator<Item = &'v str>) -> &mut Sql {
        self.push("(");
        let mut empty = true;
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind_text(v);
            empty = false;
        }
        if empty {
            self.push("NULL");
        }
        self.push(")")
    }

    /// Appends `(1, 2, 3)`: integers the server owns, written literally so that the planner
    /// sees them. An empty list becomes `(NULL)`, which matches nothing.
    pub fn int_list(&mut self, values: impl IntoIterator<Item = i64>) -> &mut Sql {
        let mut text = String::from("(");
        for v in values {
            if text.len() > 1 {
                text.push_str(", ");
            }
            text.push_str(&v.to_string());
        }
        if text.len() == 1 {
            text.push_str("NULL");
        }
        text.push(')');
        self.push(&text)
    }

    /// Runs the query and reads its rows.
    pub fn load<R>(&self, conn: &mut DbConnection) -> QueryResult<Vec<R>>
    where
        R: QueryableByName<Sqlite> + QueryableByName<Pg> + 'static,
    {
        log::debug!(target: "carnet::store::sql", "{} -- {:?}", self.text, self.binds);
        match conn {
            DbConnection::Sqlite(c) => bound::<Sqlite>(&self.text, &self.binds).load(c),
            DbConnection::Postgres(c) => bound::<Pg>(&self.text, &self.binds).load(c),
        }
    }
}

fn bound<'a, DB>(
    text: &str,
    binds: &'a [Bind],
) -> BoxedSqlQuery<'a, DB, diesel::query_builder::SqlQuery>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<BigInt>
        + diesel::sql_types::HasSqlType<Double>
        + diesel::sql_types::HasSqlType<Text>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
    f64: diesel::serialize::ToSql<Double, DB>,
    str: diesel::serialize::ToSql<Text, DB>,
{
    let mut query = diesel::sql_query(text).into_boxed::<DB>();
    for b in binds {
        query = match b {
            Bind::Int(v) => query.bind::<BigInt, _>(*v),
            Bind::Float(v) => query.bind::<Double, _>(*v),
            Bind::Text(v) => query.bind::<Text, _>(v.as_str()),
        };
    }
    query
}
