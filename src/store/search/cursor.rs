//! Keyset paging: a cursor is the position of a page's first or last row in the search's
//! sort order, so the next page starts exactly there even when rows are added or removed
//! meanwhile (an offset would skip or repeat them).
//!
//! A cursor holds the sort values of that row (a family name, a birth date), so it travels
//! sealed: ChaCha20-Poly1305 under a key every node of the database shares (`server_key`),
//! with the search it belongs to as associated data, so that it can be neither read nor
//! replayed on another search.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use diesel::prelude::*;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

use crate::store::backend::{on_backend, DbConnection};
use crate::store::schema::server_key;
use crate::store::StoreError;

use super::plan::SortType;

/// One sort key's value at the cursor's row.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    Int(i64),
    Float(f64),
    Text(String),
}

impl SortValue {
    pub fn sort_type(&self) -> SortType {
        match self {
            SortValue::Int(_) => SortType::Int,
            SortValue::Float(_) => SortType::Float,
            SortValue::Text(_) => SortType::Text,
        }
    }
}

/// Where a page starts: after (or, `backward`, before) the row with these sort values and key.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchCursor {
    pub backward: bool,
    pub keys: Vec<SortValue>,
    pub res_key: i64,
}

impl SearchCursor {
    /// The plain form (JSON); only ever sent sealed.
    fn encode(&self) -> String {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| match k {
                SortValue::Int(v) => json!({ "i": v }),
                // As text: exact, whatever the JSON number settings.
                SortValue::Float(v) => json!({ "f": format!("{v:e}") }),
                SortValue::Text(v) => json!({ "t": v }),
            })
            .collect();
        let value = json!([if self.backward { "b" } else { "a" }, keys, self.res_key]);
        value.to_string()
    }

    fn decode(bytes: &[u8]) -> Option<SearchCursor> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let [direction, keys, res_key] = value.as_array()?.as_slice() else {
            return None;
        };
        let backward = match direction.as_str()? {
            "a" => false,
            "b" => true,
            _ => return None,
        };
        let keys = keys
            .as_array()?
            .iter()
            .map(|k| {
                let object = k.as_object()?;
                if let Some(v) = object.get("i") {
                    return Some(SortValue::Int(v.as_i64()?));
                }
                if let Some(v) = object.get("f") {
                    return Some(SortValue::Float(v.as_str()?.parse().ok()?));
                }
                Some(SortValue::Text(object.get("t")?.as_str()?.to_string()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(SearchCursor {
            backward,
            keys,
            res_key: res_key.as_i64()?,
        })
    }
}

/// The key that seals cursors.
pub struct CursorKey(LessSafeKey);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    fn new(bytes: &[u8]) -> Option<CursorKey> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).ok()?;
        Some(CursorKey(LessSafeKey::new(key)))
    }

    /// This database's key, created by the first node that needs it.
    pub fn load_or_create(conn: &mut DbConnection) -> Result<CursorKey, StoreError> {
        let mut fresh = [0_u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| StoreError::Internal("no system randomness for the cursor key".into()))?;
        let row = (
            server_key::name.eq("cursor"),
            server_key::key.eq(&fresh[..]),
        );
        on_backend!(&mut *conn, c => diesel::insert_into(server_key::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(c))?;
        let stored: Vec<u8> = server_key::table
            .filter(server_key::name.eq("cursor"))
            .select(server_key::key)
            .first(conn)?;
        CursorKey::new(&stored)
            .ok_or_else(|| StoreError::Internal("the stored cursor key is not 32 bytes".into()))
    }

    /// The opaque text of a paging link, bound to `context` (the search it belongs to).
    pub fn seal(&self, cursor: &SearchCursor, context: &[u8]) -> String {
        let mut nonce = [0_u8; NONCE_LEN];
        // Without randomness, a fixed nonce would only weaken secrecy between cursors.
        let _ = SystemRandom::new().fill(&mut nonce);
        let mut data = cursor.encode().into_bytes();
        let sealed = self.0.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut data,
        );
        if sealed.is_err() {
            data.clear();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The cursor in `text`, if this key sealed it for this `context`.
    pub fn open(&self, text: &str, context: &[u8]) -> Option<SearchCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context), &mut sealed)
            .ok()?;
        SearchCursor::decode(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_sealed_bound_to_their_search_and_round_trip() {
        let key = CursorKey::new(&[7; 32]).unwrap();
        let cursor = SearchCursor {
            backward: true,
            keys: vec![
                SortValue::Int(i64::MIN + 1),
                SortValue::Float(0.1 + 0.2),
                SortValue::Text("Élodie \"x\"".into()),
            ],
            res_key: 42,
        };
        let text = key.seal(&cursor, b"Patient?name=x");
        assert_eq!(key.open(&text, b"Patient?name=x"), Some(cursor.clone()));
        // Unreadable: the sort value does not appear, not even base64-decoded.
        let raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("lodie"));
        assert_eq!(
            key.open(&text, b"Patient?name=y"),
            None,
            "bound to its search"
        );
        let other = CursorKey::new(&[8; 32]).unwrap();
        assert_eq!(
            other.open(&text, b"Patient?name=x"),
            None,
            "bound to its key"
        );
        assert_eq!(key.open("nope", b""), None);
        assert_eq!(key.open("", b""), None);
        // Two seals of one cursor differ (fresh nonce), both open.
        let again = key.seal(&cursor, b"Patient?name=x");
        assert_ne!(text, again);
        assert_eq!(key.open(&again, b"Patient?name=x"), Some(cursor));
    }
}
