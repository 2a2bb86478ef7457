//! Keyset paging: a cursor is the position of a page's first or last row in the search's
//! sort order, so the next page starts exactly there even when rows are added or removed
//! meanwhile (an offset would skip or repeat them).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

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
    /// The opaque text of a paging link.
    pub fn encode(&self) -> String {
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
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    /// `None` for anything [`SearchCursor::encode`] did not produce.
    pub fn decode(text: &str) -> Option<SearchCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = SearchCursor {
            backward: true,
            keys: vec![
                SortValue::Int(i64::MIN + 1),
                SortValue::Float(0.1 + 0.2),
                SortValue::Text("Élodie \"x\"".into()),
            ],
            res_key: 42,
        };
        assert_eq!(SearchCursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(SearchCursor::decode("nope"), None);
        assert_eq!(
            SearchCursor::decode(&URL_SAFE_NO_PAD.encode("[\"a\",[],\"x\"]")),
            None
        );
    }
}
