//! Authorization data: registered clients, the grant behind every access token, used client
//! assertions, and the token signing key. Plain rows; what they mean is `auth`'s.

use diesel::prelude::*;

use super::backend::{on_backend, DbConnection};
use super::schema::{
    auth_grant, auth_request, client_assertion, oauth_client, refresh_token, server_key,
};
use super::{now_micros, Store, StoreError};

/// A registered OAuth client, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = oauth_client)]
pub struct ClientRow {
    pub client_id: String,
    pub kind: String,
    pub name: String,
    pub secret_sha256: Option<Vec<u8>>,
    pub jwks: Option<String>,
    pub jwks_url: Option<String>,
    /// JSON array.
    pub redirect_uris: String,
    /// Space-separated.
    pub scopes: String,
    /// µs since the epoch.
    pub created: i64,
}

/// What an access token grants, kept server-side under its `jti`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = auth_grant)]
pub struct GrantRow {
    pub jti: String,
    pub client_id: String,
    pub subject: String,
    pub fhir_user: Option<String>,
    pub patient: Option<String>,
    pub scope: String,
    /// Seconds since the epoch, as in the token.
    pub issued: i64,
    pub expires: i64,
    /// When it was revoked (seconds since the epoch).
    pub revoked: Option<i64>,
    /// The authorization request or refresh-token family it came from.
    pub origin: Option<String>,
}

/// An authorization request in progress (authorize → sign-in → approval → code → token).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, AsChangeset)]
#[diesel(table_name = auth_request, treat_none_as_null = true)]
pub struct AuthRequestRow {
    pub id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub provider: Option<String>,
    pub upstream_verifier: Option<String>,
    pub upstream_nonce: Option<String>,
    pub subject: Option<String>,
    pub fhir_user: Option<String>,
    pub patient: Option<String>,
    pub code_sha256: Option<Vec<u8>>,
    pub code_used: Option<i64>,
    pub expires: i64,
}

/// A refresh token, stored as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = refresh_token)]
pub struct RefreshRow {
    pub token_sha256: Vec<u8>,
    pub client_id: String,
    pub subject: String,
    pub fhir_user: Option<String>,
    pub patient: Option<String>,
    pub scope: String,
    pub issued: i64,
    pub expires: i64,
    pub used: Option<i64>,
    pub revoked: Option<i64>,
    pub family: String,
}

impl Store {
    /// Registers `client`; `Ok(false)` when its id is taken.
    pub fn add_client(&self, client: &ClientRow) -> Result<bool, StoreError> {
        let inserted = on_backend!(&mut *self.conn()?, c => diesel::insert_into(oauth_client::table)
            .values(client)
            .on_conflict_do_nothing()
            .execute(c))?;
        Ok(inserted == 1)
    }

    pub fn client(&self, client_id: &str) -> Result<Option<ClientRow>, StoreError> {
        Ok(oauth_client::table
            .filter(oauth_client::client_id.eq(client_id))
            .first(&mut *self.conn()?)
            .optional()?)
    }

    pub fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        Ok(oauth_client::table
            .order(oauth_client::client_id)
            .load(&mut *self.conn()?)?)
    }

    /// Removes a client and revokes every token issued to it; `Ok(false)` when unknown.
    pub fn remove_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let now = chrono::Utc::now().timestamp();
        self.conn()?.transaction(|conn| {
            diesel::update(
                auth_grant::table
                    .filter(auth_grant::client_id.eq(client_id))
                    .filter(auth_grant::revoked.is_null()),
            )
            .set(auth_grant::revoked.eq(now))
            .execute(conn)?;
            let removed =
                diesel::delete(oauth_client::table.filter(oauth_client::client_id.eq(client_id)))
                    .execute(conn)?;
            Ok(removed == 1)
        })
    }

    /// Records the grant of a token about to be handed out. Issuing tokens is a stream of
    /// small writes: on SQLite they share the group-commit transaction; on PostgreSQL the
    /// commit does not wait for its WAL flush (`synchronous_commit = off`). A crash may then
    /// lose the grants of the last moments: their tokens are refused as unknown (401) and their
    /// clients ask again; nothing is ever granted that was not.
    pub fn record_grant(&self, grant: &GrantRow) -> Result<(), StoreError> {
        let insert = diesel::insert_into(auth_grant::table).values(grant);
        self.write_with(|conn| {
            match conn {
                DbConnection::Sqlite(c) => {
                    insert.execute(c)?;
                }
                DbConnection::Postgres(c) => {
                    c.transaction(|c| {
                        diesel::sql_query("SET LOCAL synchronous_commit = off").execute(c)?;
                        insert.execute(c)
                    })?;
                }
            }
            Ok(())
        })
    }

    /// The grant of the token `jti`: one primary-key lookup, made on every request so that a
    /// revocation reaches every node at once.
    pub fn grant(&self, jti: &str) -> Result<Option<GrantRow>, StoreError> {
        Ok(auth_grant::table
            .filter(auth_grant::jti.eq(jti))
            .first(&mut *self.conn()?)
            .optional()?)
    }

    /// Revokes the token `jti` if `client_id` (when given) owns it; `Ok(false)` otherwise.
    pub fn revoke_grant(&self, jti: &str, client_id: Option<&str>) -> Result<bool, StoreError> {
        let now = chrono::Utc::now().timestamp();
        let target = auth_grant::table
            .filter(auth_grant::jti.eq(jti))
            .filter(auth_grant::revoked.is_null());
        let changed = match client_id {
            Some(client_id) => diesel::update(target.filter(auth_grant::client_id.eq(client_id)))
                .set(auth_grant::revoked.eq(now))
                .execute(&mut *self.conn()?)?,
            None => diesel::update(target)
                .set(auth_grant::revoked.eq(now))
                .execute(&mut *self.conn()?)?,
        };
        Ok(changed == 1)
    }

    /// Records the `jti` of a client assertion; `Ok(false)` when that client used it already
    /// (a replay). Assertions past their expiry are forgotten on the way.
    pub fn use_client_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires: i64,
    ) -> Result<bool, StoreError> {
        let now = chrono::Utc::now().timestamp();
        self.write_with(|conn| {
            conn.transaction(|conn| {
                diesel::delete(client_assertion::table.filter(client_assertion::expires.lt(now)))
                    .execute(conn)?;
                let inserted = on_backend!(conn, c => diesel::insert_into(client_assertion::table)
                    .values((
                        client_assertion::client_id.eq(client_id),
                        client_assertion::jti.eq(jti),
                        client_assertion::expires.eq(expires),
                    ))
                    .on_conflict_do_nothing()
                    .execute(c))?;
                Ok::<_, StoreError>(inserted == 1)
            })
        })
    }

    /// Records a new authorization request, or saves the changes to one.
    pub fn save_auth_request(&self, request: &AuthRequestRow) -> Result<(), StoreError> {
        on_backend!(&mut *self.conn()?, c => diesel::insert_into(auth_request::table)
            .values(request)
            .on_conflict(auth_request::id)
            .do_update()
            .set(request)
            .execute(c))?;
        Ok(())
    }

    /// The unexpired authorization request `id`.
    pub fn auth_request(&self, id: &str) -> Result<Option<AuthRequestRow>, StoreError> {
        Ok(auth_request::table
            .filter(auth_request::id.eq(id))
            .filter(auth_request::expires.gt(now_seconds()))
            .first(&mut *self.conn()?)
            .optional()?)
    }

    /// Takes the one-time code `code_sha256`: the request it belongs to, and whether it had
    /// been taken before (a replay). Marks it used in the same statement, so that two racing
    /// exchanges cannot both succeed.
    pub fn take_code(
        &self,
        code_sha256: &[u8],
    ) -> Result<Option<(AuthRequestRow, bool)>, StoreError> {
        let now = now_seconds();
        self.conn()?.transaction(|conn| {
            let row: Option<AuthRequestRow> = auth_request::table
                .filter(auth_request::code_sha256.eq(code_sha256))
                .first(conn)
                .optional()?;
            let Some(row) = row else { return Ok(None) };
            let changed = diesel::update(
                auth_request::table
                    .filter(auth_request::id.eq(&row.id))
                    .filter(auth_request::code_used.is_null()),
            )
            .set(auth_request::code_used.eq(now))
            .execute(conn)?;
            Ok(Some((row, changed == 0)))
        })
    }

    /// Revokes every access token that came from `origin` (a replayed code, a refresh token
    /// family).
    pub fn revoke_origin(&self, origin: &str) -> Result<(), StoreError> {
        let now = now_seconds();
        diesel::update(
            auth_grant::table
                .filter(auth_grant::origin.eq(origin))
                .filter(auth_grant::revoked.is_null()),
        )
        .set(auth_grant::revoked.eq(now))
        .execute(&mut *self.conn()?)?;
        Ok(())
    }

    pub fn record_refresh(&self, row: &RefreshRow) -> Result<(), StoreError> {
        on_backend!(&mut *self.conn()?, c => diesel::insert_into(refresh_token::table)
            .values(row)
            .execute(c))?;
        Ok(())
    }

    /// Takes the refresh token `token_sha256`: its row, and whether it had been used or
    /// revoked before (then its whole family, and the access tokens it gave, are revoked).
    pub fn take_refresh(
        &self,
        token_sha256: &[u8],
    ) -> Result<Option<(RefreshRow, bool)>, StoreError> {
        let now = now_seconds();
        let taken = self.conn()?.transaction(|conn| {
            let row: Option<RefreshRow> = refresh_token::table
                .filter(refresh_token::token_sha256.eq(token_sha256))
                .first(conn)
                .optional()?;
            let Some(row) = row else {
                return Ok::<_, StoreError>(None);
            };
            let changed = diesel::update(
                refresh_token::table
                    .filter(refresh_token::token_sha256.eq(token_sha256))
                    .filter(refresh_token::used.is_null())
                    .filter(refresh_token::revoked.is_null()),
            )
            .set(refresh_token::used.eq(now))
            .execute(conn)?;
            Ok(Some((row, changed == 0)))
        })?;
        if let Some((row, true)) = &taken {
            self.revoke_family(&row.family)?;
        }
        Ok(taken)
    }

    /// Revokes the refresh token `token_sha256`, if it is one, with its family.
    pub fn revoke_refresh(&self, token_sha256: &[u8]) -> Result<(), StoreError> {
        let family: Option<String> = refresh_token::table
            .filter(refresh_token::token_sha256.eq(token_sha256))
            .select(refresh_token::family)
            .first(&mut *self.conn()?)
            .optional()?;
        match family {
            Some(family) => self.revoke_family(&family),
            None => Ok(()),
        }
    }

    /// Revokes a refresh-token family and the access tokens it gave.
    pub fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        let now = now_seconds();
        diesel::update(
            refresh_token::table
                .filter(refresh_token::family.eq(family))
                .filter(refresh_token::revoked.is_null()),
        )
        .set(refresh_token::revoked.eq(now))
        .execute(&mut *self.conn()?)?;
        self.revoke_origin(family)
    }

    /// The apps `subject` authorised and may still use (live refresh tokens), newest first:
    /// (client id, scope, issued).
    pub fn authorised_apps(&self, subject: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(refresh_token::table
            .filter(refresh_token::subject.eq(subject))
            .filter(refresh_token::used.is_null())
            .filter(refresh_token::revoked.is_null())
            .filter(refresh_token::expires.gt(now_seconds()))
            .order(refresh_token::issued.desc())
            .select((
                refresh_token::client_id,
                refresh_token::scope,
                refresh_token::issued,
            ))
            .load(&mut *self.conn()?)?)
    }

    /// Withdraws what `subject` granted `client_id`: its refresh tokens and access tokens.
    pub fn revoke_app(&self, subject: &str, client_id: &str) -> Result<(), StoreError> {
        let now = now_seconds();
        let mut conn = self.conn()?;
        diesel::update(
            refresh_token::table
                .filter(refresh_token::subject.eq(subject))
                .filter(refresh_token::client_id.eq(client_id))
                .filter(refresh_token::revoked.is_null()),
        )
        .set(refresh_token::revoked.eq(now))
        .execute(&mut *conn)?;
        diesel::update(
            auth_grant::table
                .filter(auth_grant::subject.eq(subject))
                .filter(auth_grant::client_id.eq(client_id))
                .filter(auth_grant::revoked.is_null()),
        )
        .set(auth_grant::revoked.eq(now))
        .execute(&mut *conn)?;
        Ok(())
    }

    /// The key stored under `name`, or `fresh()` stored there first. Every node of a cluster
    /// ends up with the key of whichever node stored first.
    pub fn server_key_or_insert(
        &self,
        name: &str,
        fresh: impl FnOnce() -> Result<Vec<u8>, StoreError>,
    ) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.conn()?;
        let stored: Option<Vec<u8>> = server_key::table
            .filter(server_key::name.eq(name))
            .select(server_key::key)
            .first(&mut *conn)
            .optional()?;
        if let Some(key) = stored {
            return Ok(key);
        }
        let key = fresh()?;
        on_backend!(&mut *conn, c => diesel::insert_into(server_key::table)
            .values((server_key::name.eq(name), server_key::key.eq(&key)))
            .on_conflict_do_nothing()
            .execute(c))?;
        Ok(server_key::table
            .filter(server_key::name.eq(name))
            .select(server_key::key)
            .first(&mut *conn)?)
    }
}

/// Seconds since the epoch, the unit of token times.
pub fn now_seconds() -> i64 {
    now_micros() / 1_000_000
}
