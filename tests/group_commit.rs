//! SQLite group commit under failure: a writer that panics mid-write must neither hang the
//! others nor leave half of its work committed.

mod common;

use carnet::access::AccessScope;
use carnet::store::{DatabaseUrl, Prepared, Prior, Store, WriteMethod, WriteTarget};
use common::{Backend, TestDatabase};

fn write(store: &Store, id: &str, explode: bool) -> Result<i64, String> {
    let target = WriteTarget {
        res_type: "Patient",
        res_id: id,
        method: WriteMethod::Put,
        if_match: None,
        must_be_new: false,
        needs_current_body: false,
    };
    let mut prepare = |_: Prior<'_>, version: i64, _: i64| {
        if explode {
            panic!("boom in {id}");
        }
        Ok::<_, String>(Prepared {
            patients: vec![id.to_string()],
            index: Default::default(),
            unique: None,
            body: format!(r#"{{"resourceType":"Patient","id":"{id}","v":{version}}}"#),
        })
    };
    store
        .write(&AccessScope::everything(), &target, &mut prepare)
        .map(|w| w.version)
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn a_panicking_writer_loses_only_its_own_write_and_nothing_hangs() {
    let db = TestDatabase::new(Backend::Sqlite);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 8).unwrap();
    store.migrate().unwrap();
    store
        .register_search_params(
            carnet::fhir::search::r4(),
            carnet::fhir::served::served_types(),
        )
        .unwrap();
    let outcomes: Vec<(String, bool, Result<i64, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let store = &store;
                s.spawn(move || {
                    let id = format!("p{i}");
                    let explode = i % 7 == 3;
                    let result = write(store, &id, explode);
                    (id, explode, result)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut committed = 0;
    for (id, explode, result) in &outcomes {
        let stored = store
            .read(&AccessScope::everything(), "Patient", id)
            .unwrap();
        match result {
            Ok(_) => {
                assert!(!explode);
                assert!(stored.is_some(), "{id} acknowledged but not stored");
                committed += 1;
            }
            Err(e) => {
                assert!(stored.is_none(), "{id} refused ({e}) but stored");
                if *explode {
                    assert!(e.contains("Internal"), "{e}");
                }
            }
        }
    }
    // After the failures the store keeps working.
    assert_eq!(write(&store, "after", false), Ok(1));
    assert!(store
        .read(&AccessScope::everything(), "Patient", "after")
        .unwrap()
        .is_some());
    let expected = outcomes.iter().filter(|(_, explode, _)| !explode).count();
    assert_eq!(
        committed, expected,
        "a panicking writer only loses its own write"
    );
}
