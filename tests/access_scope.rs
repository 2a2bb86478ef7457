//! The store applies the caller's access scope in SQL: reads, vreads, history and writes.

mod common;

use carnet::access::AccessScope;
use carnet::store::search::SearchRequest;
use carnet::store::{DatabaseUrl, Prepared, Prior, Store, WriteMethod, WriteTarget};
use common::{Backend, TestDatabase};

fn write(
    store: &Store,
    scope: &AccessScope,
    res_type: &str,
    id: &str,
    patients: &[&str],
) -> Result<i64, String> {
    let target = WriteTarget {
        res_type,
        res_id: id,
        method: WriteMethod::Put,
        if_match: None,
        must_be_new: false,
        needs_current_body: false,
    };
    let patients: Vec<String> = patients.iter().map(|p| p.to_string()).collect();
    let mut prepare = |_: Prior<'_>, version: i64, _: i64| {
        Ok::<_, String>(Prepared {
            unique: None,
            patients: patients.clone(),
            index: Default::default(),
            body: format!(r#"{{"resourceType":"{res_type}","id":"{id}","v":{version}}}"#),
        })
    };
    store
        .write(scope, &target, &mut prepare)
        .map(|w| w.version)
        .map_err(|e| format!("{e:?}"))
}

/// Writes a real resource, indexed as the server would, into the given compartments (chosen
/// by the test, so that a resource can point at a patient outside its own compartments).
fn write_indexed(store: &Store, resource: serde_json::Value, patients: &[&str]) {
    let res_type = resource["resourceType"].as_str().unwrap().to_string();
    let id = resource["id"].as_str().unwrap().to_string();
    let target = WriteTarget {
        res_type: &res_type,
        res_id: &id,
        method: WriteMethod::Put,
        if_match: None,
        must_be_new: false,
        needs_current_body: false,
    };
    let patients: Vec<String> = patients.iter().map(|p| p.to_string()).collect();
    let entries = carnet::fhir::search::index_entries(
        carnet::fhir::search::r4(),
        &resource,
        "http://localhost/fhir",
    )
    .unwrap();
    let index = std::sync::Arc::new(store.index_rows(&res_type, &entries).unwrap());
    let mut prepare = |_: Prior<'_>, _: i64, _: i64| {
        Ok::<_, String>(Prepared {
            unique: None,
            patients: patients.clone(),
            index: index.clone(),
            body: resource.to_string(),
        })
    };
    store
        .write(&AccessScope::everything(), &target, &mut prepare)
        .unwrap();
}

fn search(
    store: &Store,
    scope: &AccessScope,
    res_type: &str,
    query: &str,
) -> (Vec<String>, Option<i64>) {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    let parsed = carnet::fhir::search::query::parse(
        carnet::fhir::search::r4(),
        &[res_type],
        &pairs,
        "http://localhost/fhir",
        false,
    )
    .unwrap();
    let request = SearchRequest {
        query: &parsed,
        compartment: None,
        count: 100,
        cursor: None,
        max_included: 100,
    };
    let page = store.search(scope, &request).unwrap();
    let mut ids: Vec<String> = page
        .matches
        .iter()
        .map(|f| f.res_id.clone())
        .chain(page.included.iter().map(|f| format!("+{}", f.res_id)))
        .collect();
    ids.sort();
    (ids, page.total)
}

fn search_is_scoped_in_sql(backend: Backend) {
    let db = TestDatabase::new(backend);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 2).unwrap();
    store.migrate().unwrap();
    store
        .register_search_params(
            carnet::fhir::search::r4(),
            carnet::fhir::served::served_types(),
        )
        .unwrap();
    let patient = |id: &str, name: &str| serde_json::json!({"resourceType": "Patient", "id": id, "name": [{"family": name}]});
    let obs = |id: &str, subject: &str| {
        serde_json::json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": format!("Patient/{subject}")}})
    };
    write_indexed(&store, patient("a", "alice"), &["a"]);
    write_indexed(&store, patient("b", "bob"), &["b"]);
    write_indexed(&store, obs("oa", "a"), &["a"]);
    write_indexed(&store, obs("ob", "b"), &["b"]);
    // Visible to a, but pointing at b, whom a's scope cannot see.
    write_indexed(&store, obs("oc", "b"), &["a"]);

    let all = AccessScope::everything();
    let only_a = AccessScope::patients(vec!["a".into()]);
    let code = "code=http://loinc.org|29463-7&_total=accurate";
    assert_eq!(
        search(&store, &all, "Observation", code),
        (vec!["oa".into(), "ob".into(), "oc".into()], Some(3))
    );
    assert_eq!(
        search(&store, &only_a, "Observation", code),
        (vec!["oa".into(), "oc".into()], Some(2))
    );
    // Chains, reverse chains and includes never reach past the scope.
    assert_eq!(
        search(&store, &all, "Observation", "subject.name=bob").0,
        ["ob", "oc"]
    );
    assert!(search(&store, &only_a, "Observation", "subject.name=bob")
        .0
        .is_empty());
    assert_eq!(
        search(
            &store,
            &all,
            "Patient",
            "_has:Observation:subject:code=29463-7"
        )
        .0,
        ["a", "b"]
    );
    assert_eq!(
        search(
            &store,
            &only_a,
            "Patient",
            "_has:Observation:subject:code=29463-7"
        )
        .0,
        ["a"]
    );
    assert_eq!(
        search(
            &store,
            &only_a,
            "Observation",
            "_id=oc&_include=Observation:subject"
        )
        .0,
        ["oc"]
    );
    assert_eq!(
        search(
            &store,
            &all,
            "Observation",
            "_id=oc&_include=Observation:subject"
        )
        .0,
        ["+b", "oc"]
    );
    assert_eq!(
        search(
            &store,
            &only_a,
            "Patient",
            "_revinclude=Observation:subject"
        )
        .0,
        ["+oa", "a"]
    );
}

#[test]
fn search_is_scoped_in_sql_on_sqlite() {
    search_is_scoped_in_sql(Backend::Sqlite);
}

#[test]
fn search_is_scoped_in_sql_on_postgres() {
    search_is_scoped_in_sql(Backend::Postgres);
}

fn scope_is_enforced_in_sql(backend: Backend) {
    let db = TestDatabase::new(backend);
    let store = Store::open(&DatabaseUrl::parse(&db.url).unwrap(), 2).unwrap();
    store.migrate().unwrap();
    store
        .register_search_params(
            carnet::fhir::search::r4(),
            carnet::fhir::served::served_types(),
        )
        .unwrap();
    let all = AccessScope::everything();
    write(&store, &all, "Patient", "a", &["a"]).unwrap();
    write(&store, &all, "Patient", "b", &["b"]).unwrap();
    write(&store, &all, "Observation", "oa", &["a"]).unwrap();
    write(&store, &all, "Observation", "ob", &["b"]).unwrap();
    write(&store, &all, "Observation", "oab", &["a", "b"]).unwrap();
    write(&store, &all, "Organization", "org", &[]).unwrap();

    let only_a = AccessScope::patients(vec!["a".into()]);
    assert!(store.read(&only_a, "Observation", "oa").unwrap().is_some());
    assert!(store.read(&only_a, "Observation", "oab").unwrap().is_some());
    assert!(
        store.read(&only_a, "Observation", "ob").unwrap().is_none(),
        "another patient's data reads as missing"
    );
    assert!(store
        .read(&only_a, "Organization", "org")
        .unwrap()
        .is_none());
    assert!(store
        .vread(&only_a, "Observation", "ob", 1)
        .unwrap()
        .is_none());
    assert!(store.read(&all, "Observation", "ob").unwrap().is_some());

    let query = carnet::store::HistoryQuery {
        count: 100,
        ..Default::default()
    };
    let ids: Vec<String> = store
        .history(&only_a, &query)
        .unwrap()
        .unwrap()
        .entries
        .into_iter()
        .map(|v| v.res_id)
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["a", "oa", "oab"]);
    let instance = carnet::store::HistoryQuery {
        res_type: Some("Observation"),
        res_id: Some("ob"),
        count: 10,
        ..Default::default()
    };
    assert!(store.history(&only_a, &instance).unwrap().is_none());

    // Writes must land inside the scope, and cannot touch what the scope hides.
    assert!(write(&store, &only_a, "Observation", "new-a", &["a"]).is_ok());
    assert!(write(&store, &only_a, "Observation", "new-b", &["b"])
        .unwrap_err()
        .contains("Forbidden"));
    assert!(write(&store, &only_a, "Observation", "mixed", &["a", "b"])
        .unwrap_err()
        .contains("Forbidden"));
    assert!(
        write(&store, &only_a, "Observation", "ob", &["a"])
            .unwrap_err()
            .contains("Forbidden"),
        "cannot pull B's resource into A"
    );
    assert!(
        store.read(&all, "Observation", "new-b").unwrap().is_none(),
        "a refused write stores nothing"
    );
    assert_eq!(
        store.delete(&only_a, "Observation", "ob", None).unwrap(),
        carnet::store::Deletion::NotFound
    );
    assert!(
        !store
            .read(&all, "Observation", "ob")
            .unwrap()
            .unwrap()
            .deleted
    );
}

#[test]
fn scope_is_enforced_in_sql_on_sqlite() {
    scope_is_enforced_in_sql(Backend::Sqlite);
}

#[test]
fn scope_is_enforced_in_sql_on_postgres() {
    scope_is_enforced_in_sql(Backend::Postgres);
}
