//! FHIR search through HTTP, on SQLite and PostgreSQL: every parameter type, modifier and
//! prefix, chains, `_has`, includes, sorting, paging, totals, summaries, the search forms
//! (GET, POST, system, compartment), errors, and index upkeep on update and delete.

mod common;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::Server;

const INS: &str = "urn:oid:1.2.250.1.213.1.4.8";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

fn quantity(value: f64, code: &str) -> Value {
    json!({"value": value, "unit": code, "system": UCUM, "code": code})
}

fn observation(id: &str, patient: Option<&str>, code: &str, extra: Value) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
    });
    if let Some(p) = patient {
        o["subject"] = json!({"reference": format!("Patient/{p}")});
    }
    for (k, v) in extra.as_object().unwrap() {
        o[k] = v.clone();
    }
    o
}

/// Three patients, a practitioner, seven observations, a condition.
fn load(server: &Server) {
    let resources = vec![
        json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House", "given": ["Gregory"]}]}),
        json!({"resourceType": "Patient", "id": "pA", "active": true, "gender": "female", "birthDate": "1980-05-04",
               "identifier": [{"system": INS, "value": "1800512345678"}],
               "name": [{"family": "Dupont-Lefèvre", "given": ["Élodie"]}],
               "telecom": [{"system": "email", "value": "elodie@example.org"}],
               "address": [{"city": "Paris", "postalCode": "75011"}],
               "generalPractitioner": [{"reference": "Practitioner/dr1"}]}),
        json!({"resourceType": "Patient", "id": "pB", "active": false, "gender": "male", "birthDate": "1975-01-20",
               "identifier": [{"system": INS, "value": "1750112345678"}],
               "name": [{"family": "Martin", "given": ["Jean"]}],
               "address": [{"city": "Lyon"}]}),
        json!({"resourceType": "Patient", "id": "pC", "gender": "female", "birthDate": "2001",
               "identifier": [{"system": "urn:oid:1.2.3", "value": "42"}],
               "name": [{"family": "Durand", "given": ["Zoë"]}]}),
        observation(
            "o1",
            Some("pA"),
            "29463-7",
            json!({"effectiveDateTime": "2026-01-02T08:00:00+01:00", "valueQuantity": quantity(72.5, "kg"),
               "meta": {"profile": ["http://example.org/fhir/StructureDefinition/weight"]}}),
        ),
        observation(
            "o2",
            Some("pA"),
            "29463-7",
            json!({"effectiveDateTime": "2025-06-15", "valueQuantity": quantity(70.0, "kg")}),
        ),
        observation(
            "o3",
            Some("pB"),
            "29463-7",
            json!({"effectiveDateTime": "2026-02", "valueQuantity": quantity(90.0, "kg")}),
        ),
        observation(
            "o4",
            Some("pA"),
            "85354-9",
            json!({
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}], "text": "Blood pressure panel"},
            "effectivePeriod": {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T10:05:00Z"},
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": quantity(120.0, "mm[Hg]")},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": quantity(80.0, "mm[Hg]")}
            ]}),
        ),
        observation(
            "o5",
            Some("pB"),
            "15074-8",
            json!({"effectiveDateTime": "2026-03-05", "valueQuantity": quantity(5.4, "mmol/L")}),
        ),
        observation(
            "o6",
            Some("pC"),
            "8867-4",
            json!({"status": "preliminary", "effectiveDateTime": "2026", "valueQuantity": quantity(60.0, "/min")}),
        ),
        observation("o7", None, "72133-2", json!({"status": "final"})),
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/pA"},
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}], "text": "Hypertension"},
               "onsetDateTime": "2020-04"}),
    ];
    for r in resources {
        let path = format!(
            "/{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let response = server.put(&path, &r);
        assert!(response.status == 201, "{path}: {}", response.text());
    }
}

/// The ids of the `match` entries of a search, in order.
fn ids(server: &Server, query: &str) -> Vec<String> {
    let response = server.get(query);
    assert_eq!(response.status, 200, "{query}: {}", response.text());
    entries(&response.json(), "match")
}

fn entries(bundle: &Value, mode: &str) -> Vec<String> {
    assert_eq!(bundle["type"], "searchset", "{bundle}");
    bundle["entry"]
        .as_array()
        .map(|e| e.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// The set of ids a search matches.
fn set(server: &Server, query: &str) -> BTreeSet<String> {
    ids(server, query).into_iter().collect()
}

fn of(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_string())
}

backend_tests! {
    fn string_parameters(server: &Server) {
        load(server);
        assert_eq!(set(server, "/Patient?name=elo"), of(&["pA"]));
        assert_eq!(set(server, "/Patient?name=DUPONT"), of(&["pA"]));
        assert_eq!(set(server, "/Patient?family=dupont-lefe"), of(&["pA"]));
        assert_eq!(set(server, "/Patient?given=zoe"), of(&["pC"]));
        assert_eq!(set(server, "/Patient?family:exact=Dupont-Lef%C3%A8vre"), of(&["pA"]));
        assert_eq!(set(server, "/Patient?family:exact=dupont-lef%C3%A8vre"), of(&[]));
        assert_eq!(set(server, "/Patient?family:exact=Dupont"), of(&[]));
        assert_eq!(set(server, "/Patient?name:contains=lef"), of(&["pA"]));
        assert_eq!(set(server, "/Patient?name:contains=an"), of(&["pB", "pC"]));
        assert_eq!(set(server, "/Patient?address-city=paris"), of(&["pA"]));
        assert_eq!(set(server, "/Patient?name=martin,durand"), of(&["pB", "pC"]));
        assert_eq!(set(server, "/Patient?name=jean&name=martin"), of(&["pB"]));
        assert_eq!(set(server, "/Patient?name=jean&name=durand"), of(&[]));
    }

    fn token_parameters(server: &Server) {
        load(server);
        assert_eq!(set(server, &format!("/Patient?identifier={INS}|1800512345678")), of(&["pA"]));
        assert_eq!(set(server, "/Patient?identifier=1800512345678"), of(&["pA"]));
        assert_eq!(set(server, &format!("/Patient?identifier={INS}|")), of(&["pA", "pB"]));
        assert_eq!(set(server, "/Patient?identifier=urn:oid:1.2.3|1800512345678"), of(&[]));
        assert_eq!(set(server, "/Patient?gender=female"), of(&["pA", "pC"]));
        assert_eq!(set(server, "/Patient?gender:not=female"), of(&["pB"]));
        assert_eq!(set(server, "/Patient?active=true"), of(&["pA"]));
        assert_eq!(set(server, "/Patient?email=elodie@example.org"), of(&["pA"]));
        assert_eq!(set(server, &format!("/Observation?code={LOINC}|29463-7")), of(&["o1", "o2", "o3"]));
        assert_eq!(set(server, "/Observation?code=|29463-7"), of(&[]));
        assert_eq!(set(server, "/Observation?code=29463-7,15074-8"), of(&["o1", "o2", "o3", "o5"]));
        assert_eq!(set(server, "/Observation?code:text=blood%20press"), of(&["o4"]));
        assert_eq!(set(server, "/Observation?status:not=final"), of(&["o6"]));
        assert_eq!(set(server, "/Condition?code:text=hyper"), of(&["c1"]));
    }

    fn reference_parameters(server: &Server) {
        load(server);
        assert_eq!(set(server, "/Observation?subject=Patient/pA"), of(&["o1", "o2", "o4"]));
        assert_eq!(set(server, "/Observation?patient=pA"), of(&["o1", "o2", "o4"]));
        assert_eq!(set(server, "/Observation?subject:Patient=pA"), of(&["o1", "o2", "o4"]));
        assert_eq!(set(server, &format!("/Observation?subject={}/Patient/pB", server.base)), of(&["o3", "o5"]));
        assert_eq!(set(server, "/Observation?subject=http://elsewhere.example/fhir/Patient/pA"), of(&[]));
        assert_eq!(set(server, "/Observation?subject:missing=true"), of(&["o7"]));
        assert_eq!(set(server, "/Observation?subject:missing=false").len(), 6);
        assert_eq!(set(server, "/Observation?patient=pA,pC"), of(&["o1", "o2", "o4", "o6"]));
        assert_eq!(set(server, "/Patient?general-practitioner=Practitioner/dr1"), of(&["pA"]));
    }

    fn date_parameters_follow_the_interval_rules(server: &Server) {
        load(server);
        // o1 2026-01-02T07:00Z, o2 2025-06-15, o3 2026-02, o4 2026-03-01T10:00Z..10:05Z,
        // o5 2026-03-05, o6 2026 (the whole year), o7 none.
        assert_eq!(set(server, "/Observation?date=2026-01-02"), of(&["o1"]));
        assert_eq!(set(server, "/Observation?date=2026"), of(&["o1", "o3", "o4", "o5", "o6"]));
        assert_eq!(set(server, "/Observation?date=2026-03"), of(&["o4", "o5"]));
        assert_eq!(set(server, "/Observation?date=eq2026-03-01T10:00:00Z"), of(&[]));
        assert_eq!(set(server, "/Observation?date=gt2026-01"), of(&["o3", "o4", "o5", "o6"]));
        assert_eq!(set(server, "/Observation?date=lt2026"), of(&["o2"]));
        assert_eq!(set(server, "/Observation?date=lt2026-01-03"), of(&["o1", "o2", "o6"]));
        assert_eq!(set(server, "/Observation?date=ge2026-03-01"), of(&["o4", "o5", "o6"]));
        assert_eq!(set(server, "/Observation?date=le2025-12-31"), of(&["o2"]));
        assert_eq!(set(server, "/Observation?date=sa2026-02-28"), of(&["o4", "o5"]));
        assert_eq!(set(server, "/Observation?date=eb2026"), of(&["o2"]));
        assert_eq!(set(server, "/Observation?date=ne2026"), of(&["o2"]));
        assert_eq!(set(server, "/Observation?date=ge2026-01-01&date=lt2026-02"), of(&["o1", "o6"]));
        // Time zones: 08:00+01:00 is 07:00Z.
        assert_eq!(set(server, "/Observation?date=lt2026-01-02T07:30:00Z"), of(&["o1", "o2", "o6"]));
        assert_eq!(set(server, "/Observation?date=gt2026-01-02T07:30:00Z&date=lt2026-01-03"), of(&["o6"]));
        let near = set(server, "/Observation?date=ap2026-03-03");
        assert!(near.contains("o4") && near.contains("o5"), "{near:?}");
        // "Approximately" widens with the distance from today, so only a far value is out.
        assert!(!near.contains("o2"), "{near:?}");
        assert_eq!(set(server, "/Patient?birthdate=2001-05-05"), of(&[]));
        assert_eq!(set(server, "/Patient?birthdate=2001"), of(&["pC"]));
        assert_eq!(set(server, "/Condition?onset-date=2020"), of(&["c1"]));
    }

    fn quantity_and_composite_parameters(server: &Server) {
        load(server);
        assert_eq!(set(server, "/Observation?value-quantity=72.5"), of(&["o1"]));
        assert_eq!(set(server, "/Observation?value-quantity=72"), of(&[]));
        assert_eq!(set(server, "/Observation?value-quantity=70"), of(&["o2"]));
        assert_eq!(set(server, &format!("/Observation?value-quantity=gt80|{UCUM}|kg")), of(&["o3"]));
        assert_eq!(set(server, &format!("/Observation?value-quantity=5.4|{UCUM}|mmol/L")), of(&["o5"]));
        assert_eq!(set(server, "/Observation?value-quantity=lt71||kg"), of(&["o2"]));
        assert_eq!(set(server, "/Observation?value-quantity=le70||kg"), of(&["o2"]));
        assert_eq!(set(server, "/Observation?value-quantity=ge90||kg"), of(&["o3"]));
        assert_eq!(set(server, "/Observation?value-quantity=ne72.5||kg"), of(&["o2", "o3"]));
        assert_eq!(set(server, "/Observation?value-quantity=ap72||kg"), of(&["o1", "o2"]));
        // 80 mg is 0.08 g: every weight is above it; a volume is never comparable with a mass.
        assert_eq!(set(server, &format!("/Observation?value-quantity=gt80|{UCUM}|mg")), of(&["o1", "o2", "o3"]));
        assert_eq!(set(server, &format!("/Observation?value-quantity=gt80|{UCUM}|mL")), of(&[]));
        assert_eq!(set(server, "/Observation?value-quantity=gt80|http://example.org/units|kg"), of(&[]));
        assert_eq!(
            set(server, &format!("/Observation?component-code-value-quantity={LOINC}|8480-6$gt100")),
            of(&["o4"])
        );
        assert_eq!(
            set(server, &format!("/Observation?component-code-value-quantity={LOINC}|8480-6$lt100")),
            of(&[])
        );
        assert_eq!(
            set(server, &format!("/Observation?component-code-value-quantity={LOINC}|8462-4$lt100")),
            of(&["o4"])
        );
        // Components are matched together, not across the pairs of one resource.
        assert_eq!(
            set(server, &format!("/Observation?component-code-value-quantity={LOINC}|8462-4$gt100")),
            of(&[])
        );
        // Parameters answered from others (not indexed on their own): a composite over the
        // Observation itself, and the combo-* unions of the Observation and its components.
        assert_eq!(set(server, &format!("/Observation?code-value-quantity={LOINC}|29463-7$gt71")), of(&["o1", "o3"]));
        assert_eq!(set(server, &format!("/Observation?code-value-quantity={LOINC}|8480-6$gt100")), of(&[]));
        assert_eq!(set(server, "/Observation?code-value-quantity=29463-7$lt71,15074-8$5.4"), of(&["o2", "o5"]));
        assert_eq!(set(server, &format!("/Observation?combo-code={LOINC}|8462-4")), of(&["o4"]));
        assert_eq!(set(server, &format!("/Observation?combo-code={LOINC}|85354-9,{LOINC}|15074-8")), of(&["o4", "o5"]));
        assert_eq!(set(server, "/Observation?combo-code:text=blood"), of(&["o4"]));
        assert_eq!(set(server, "/Observation?combo-value-quantity=80||mm[Hg]"), of(&["o4"]));
        assert_eq!(set(server, "/Observation?combo-value-quantity=72.5"), of(&["o1"]));
        assert_eq!(set(server, &format!("/Observation?combo-code-value-quantity={LOINC}|8462-4$lt100")), of(&["o4"]));
        assert_eq!(set(server, &format!("/Observation?combo-code-value-quantity={LOINC}|29463-7$ge90")), of(&["o3"]));
        assert_eq!(
            set(server, &format!("/Observation?combo-code-value-quantity={LOINC}|8480-6$gt100&patient=pA")),
            of(&["o4"])
        );
        assert_eq!(
            set(server, &format!("/Observation?combo-code-value-quantity={LOINC}|8462-4$gt100")),
            of(&[])
        );
        assert_eq!(set(server, "/Observation?combo-value-quantity:missing=true&code=72133-2"), of(&["o7"]));
        assert_eq!(ids(server, "/Observation?combo-code=29463-7&_sort=-combo-value-quantity"), ["o3", "o1", "o2"]);
        // A resource matching under both members of a union counts once, and a conditional
        // delete still sees two matches.
        let o12 = observation("o12", Some("pB"), "8480-6", json!({"component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": quantity(110.0, "mm[Hg]")}]}));
        server.put("/Observation/o12", &o12).ok_json();
        let both = server.get(&format!("/Observation?combo-code={LOINC}|8480-6&_total=accurate")).ok_json();
        assert_eq!(both["total"], 2, "{both}");
        assert_eq!(both["entry"].as_array().unwrap().len(), 2, "{both}");
        server.delete(&format!("/Observation?combo-code={LOINC}|8480-6")).outcome(412);
        server.delete("/Observation/o12");
        // UCUM units convert: the same glucose in umol/L, weights in grams.
        let o9 = observation("o9", Some("pC"), "15074-8", json!({"valueQuantity": quantity(5400.0, "umol/L")}));
        server.put("/Observation/o9", &o9).ok_json();
        assert_eq!(set(server, &format!("/Observation?value-quantity=5.4|{UCUM}|mmol/L")), of(&["o5", "o9"]));
        assert_eq!(set(server, &format!("/Observation?value-quantity=gt60000|{UCUM}|g")), of(&["o1", "o2", "o3"]));
        assert_eq!(set(server, &format!("/Observation?value-quantity=lt160|{UCUM}|%5Blb_av%5D")), of(&["o1", "o2"]));
        assert_eq!(set(server, "/Observation?value-quantity=5.4||mmol/L"), of(&["o5"]));
        // A value with more digits than a double holds still equals itself; a percentage is
        // not a score, though UCUM makes both dimensionless.
        let o10 = observation("o10", Some("pC"), "59408-5", json!({"valueQuantity": quantity(82.15498417239294, "%")}));
        let o11 = observation("o11", Some("pC"), "72133-2", json!({"valueQuantity": quantity(3.0, "{score}")}));
        server.put("/Observation/o10", &o10).ok_json();
        server.put("/Observation/o11", &o11).ok_json();
        assert_eq!(set(server, &format!("/Observation?value-quantity=82.15498417239294|{UCUM}|%25")), of(&["o10"]));
        assert_eq!(set(server, "/Observation?value-quantity=82.15498417239294"), of(&["o10"]));
        assert_eq!(set(server, "/Observation?value-quantity=ne82.15498417239294||%25"), of(&[]));
        assert_eq!(set(server, &format!("/Observation?value-quantity=gt1|{UCUM}|%25")), of(&["o10"]));
        assert_eq!(set(server, &format!("/Observation?value-quantity=gt1|{UCUM}|%7Bscore%7D")), of(&["o11"]));
    }

    fn uri_id_and_last_updated(server: &Server) {
        load(server);
        assert_eq!(set(server, "/Observation?_profile=http://example.org/fhir/StructureDefinition/weight"), of(&["o1"]));
        assert_eq!(set(server, "/Observation?_profile:below=http://example.org/fhir"), of(&["o1"]));
        assert_eq!(set(server, "/Observation?_profile:below=http://example.org/fh"), of(&[]));
        assert_eq!(set(server, "/Patient?_id=pA,pC"), of(&["pA", "pC"]));
        assert_eq!(set(server, "/Patient?_id=nobody"), of(&[]));
        assert_eq!(set(server, "/Patient?_lastUpdated=gt2020-01-01").len(), 3);
        assert_eq!(set(server, "/Patient?_lastUpdated=lt2020-01-01"), of(&[]));
    }

    fn chains_and_reverse_chains(server: &Server) {
        load(server);
        assert_eq!(
            set(server, &format!("/Observation?subject:Patient.identifier={INS}|1800512345678")),
            of(&["o1", "o2", "o4"])
        );
        assert_eq!(set(server, "/Observation?patient.name=martin"), of(&["o3", "o5"]));
        assert_eq!(set(server, "/Observation?subject.gender=female"), of(&["o1", "o2", "o4", "o6"]));
        assert_eq!(
            set(server, "/Observation?subject:Patient.general-practitioner:Practitioner.name=house"),
            of(&["o1", "o2", "o4"])
        );
        assert_eq!(set(server, "/Patient?_has:Observation:patient:code=15074-8"), of(&["pB"]));
        assert_eq!(
            set(server, &format!("/Patient?_has:Observation:subject:code={LOINC}|29463-7")),
            of(&["pA", "pB"])
        );
        assert_eq!(set(server, "/Patient?_has:Observation:subject:code=nothing"), of(&[]));
        assert_eq!(set(server, "/Practitioner?_has:Patient:general-practitioner:_has:Observation:patient:code=85354-9"), of(&["dr1"]));
    }

    fn includes_and_revincludes(server: &Server) {
        load(server);
        let bundle = server.get("/Observation?code=85354-9&_include=Observation:subject").ok_json();
        assert_eq!(entries(&bundle, "match"), ["o4"]);
        assert_eq!(entries(&bundle, "include"), ["pA"]);
        let bundle = server.get("/Patient?_id=pA&_revinclude=Observation:subject").ok_json();
        assert_eq!(entries(&bundle, "match"), ["pA"]);
        let included: BTreeSet<String> = entries(&bundle, "include").into_iter().collect();
        assert_eq!(included, of(&["o1", "o2", "o4"]));
        let bundle = server
            .get("/Observation?_id=o4&_include=Observation:subject&_include:iterate=Patient:general-practitioner")
            .ok_json();
        let included: BTreeSet<String> = entries(&bundle, "include").into_iter().collect();
        assert_eq!(included, of(&["pA", "dr1"]));
        // Without :iterate, an include must start from the searched type.
        server
            .get("/Observation?_id=o4&_include=Observation:subject&_include=Patient:general-practitioner")
            .outcome_at(400, "_include");
        // A resource both matched and included appears once, as a match.
        let bundle = server.get("/Patient?_id=pA,pB&_include=Patient:general-practitioner").ok_json();
        assert_eq!(entries(&bundle, "include"), ["dr1"]);
        let bundle = server.get("/Observation?_id=o1&_include=Observation:*").ok_json();
        assert_eq!(entries(&bundle, "include"), ["pA"]);
    }

    fn sorting(server: &Server) {
        load(server);
        let code = format!("code={LOINC}|29463-7");
        assert_eq!(ids(server, &format!("/Observation?{code}&_sort=-date")), ["o3", "o1", "o2"]);
        assert_eq!(ids(server, &format!("/Observation?{code}&_sort=date")), ["o2", "o1", "o3"]);
        assert_eq!(ids(server, "/Patient?_sort=birthdate"), ["pB", "pA", "pC"]);
        assert_eq!(ids(server, "/Patient?_sort=-family"), ["pB", "pC", "pA"]);
        assert_eq!(ids(server, "/Patient?_sort=gender,-birthdate"), ["pC", "pA", "pB"]);
        assert_eq!(ids(server, "/Patient?_sort=-_id"), ["pC", "pB", "pA"]);
        // Missing values sort last both ways.
        assert_eq!(ids(server, "/Observation?_sort=date").last().unwrap(), "o7");
        assert_eq!(ids(server, "/Observation?_sort=-date").last().unwrap(), "o7");
    }

    fn paging_follows_links_and_survives_inserts(server: &Server) {
        load(server);
        for query in ["/Observation?_count=2", "/Observation?_count=3&_sort=-date", "/Observation?_sort=status,value-quantity&_count=2"] {
            let mut seen = Vec::new();
            let mut pages = Vec::new();
            let mut next = Some(server.url(query));
            while let Some(url) = next {
                let bundle = server.get(&url).ok_json();
                let page = entries(&bundle, "match");
                assert!(page.len() <= 3, "{query}");
                seen.extend(page.clone());
                pages.push((url.clone(), page));
                next = link(&bundle, "next");
                if pages.len() == 1 {
                    // A resource created while paging does not shift later pages.
                    let extra = observation("o8", Some("pC"), "8867-4", json!({"effectiveDateTime": "2024-01-01"}));
                    server.put("/Observation/o8", &extra).ok_json();
                }
                assert!(pages.len() < 10, "{query}: paging does not end");
            }
            let unique: BTreeSet<&String> = seen.iter().collect();
            assert_eq!(unique.len(), seen.len(), "{query}: duplicates {seen:?}");
            assert!(seen.len() >= 7, "{query}: {seen:?}");
            // `previous` of the second page is the first page.
            let second = server.get(&pages[1].0).ok_json();
            let previous = link(&second, "previous").expect("a previous link");
            let first_again = server.get(&previous).ok_json();
            assert_eq!(entries(&first_again, "match"), pages[0].1, "{query}");
            server.delete("/Observation/o8");
        }
        let first = server.get("/Observation?_count=2").ok_json();
        assert!(link(&first, "previous").is_none());
        assert!(link(&first, "self").unwrap().contains("_count=2"));
    }

    fn totals_summaries_and_elements(server: &Server) {
        load(server);
        let bundle = server.get("/Observation?patient=pA&_total=accurate&_count=1").ok_json();
        assert_eq!(bundle["total"], 3);
        assert_eq!(entries(&bundle, "match").len(), 1);
        let bundle = server.get("/Observation?patient=pA").ok_json();
        assert!(bundle.get("total").is_none(), "no total unless asked");
        let bundle = server.get("/Observation?patient=pA&_summary=count").ok_json();
        assert_eq!(bundle["total"], 3);
        assert!(bundle.get("entry").is_none());
        let bundle = server.get("/Observation?_id=o1&_elements=status").ok_json();
        let resource = &bundle["entry"][0]["resource"];
        let keys: BTreeSet<&str> = resource.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(keys.contains("status") && !keys.contains("valueQuantity") && !keys.contains("subject"), "{resource}");
        assert!(resource["meta"]["tag"].as_array().unwrap().iter().any(|t| t["code"] == "SUBSETTED"));
        let bundle = server.get("/Observation?_id=o4&_summary=true").ok_json();
        let resource = &bundle["entry"][0]["resource"];
        assert!(resource.get("code").is_some() && resource.get("text").is_none(), "{resource}");
    }

    fn post_system_and_compartment_searches(server: &Server) {
        load(server);
        let response = server
            .request("POST", "/Observation/_search")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(b"code=http%3A%2F%2Floinc.org%7C29463-7&patient=pA");
        let found: BTreeSet<String> = entries(&response.ok_json(), "match").into_iter().collect();
        assert_eq!(found, of(&["o1", "o2"]));
        server
            .request("POST", "/Observation/_search")
            .header("Content-Type", "application/fhir+json")
            .body(b"{}")
            .outcome(415);
        assert_eq!(set(server, "?_type=Patient,Practitioner&_id=pA,dr1,o1"), of(&["pA", "dr1"]));
        assert_eq!(set(server, "?_id=o1,pB"), of(&["o1", "pB"]));
        let response = server
            .request("POST", "/_search")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(b"_type=Condition");
        assert_eq!(entries(&response.ok_json(), "match"), ["c1"]);
        assert_eq!(set(server, "/Patient/pA/Observation"), of(&["o1", "o2", "o4"]));
        assert_eq!(set(server, "/Patient/pA/Observation?code=29463-7"), of(&["o1", "o2"]));
        assert_eq!(set(server, "/Patient/pB/Condition"), of(&[]));
        server.get("/Patient/pA/Binary").outcome(404);
    }

    fn bad_searches_are_refused_with_the_parameter_named(server: &Server) {
        load(server);
        server.get("/Observation?colour=blue").outcome_at(400, "colour");
        server.get("/Observation?date=2026-13").outcome_at(400, "date");
        server.get("/Observation?value-quantity=abc").outcome_at(400, "value-quantity");
        server.get("/Observation?_count=many").outcome_at(400, "_count");
        server.get("/Observation?_sort=colour").outcome_at(400, "_sort");
        server.get("/Observation?code:exact=x").outcome_at(400, "code:exact");
        server.get("/Observation?_include=Observation:colour").outcome_at(400, "_include");
        server.get("/Observation?subject.colour=x").outcome_at(400, "subject.colour");
        server.get("/Observation?_cursor=garbage").outcome_at(400, "_cursor");
        // A cursor taken from one search does not page another.
        let bundle = server.get("/Observation?_count=1").ok_json();
        let next = link(&bundle, "next").unwrap();
        let cursor = next.split("_cursor=").nth(1).unwrap();
        server.get(&format!("/Patient?_cursor={cursor}")).outcome_at(400, "_cursor");
        // Lenient handling skips what it does not know, and says so.
        let response = server
            .request("GET", "/Observation?colour=blue&patient=pA")
            .header("Prefer", "handling=lenient")
            .send();
        let bundle = response.ok_json();
        let found: BTreeSet<String> = entries(&bundle, "match").into_iter().collect();
        assert_eq!(found, of(&["o1", "o2", "o4"]));
        let self_link = link(&bundle, "self").unwrap();
        assert!(!self_link.contains("colour") && self_link.contains("patient=pA"), "{self_link}");
        assert!(bundle["entry"].as_array().unwrap().iter().any(|e| e["search"]["mode"] == "outcome"));
        // Searching stores nothing.
        assert_eq!(set(server, "/Observation?_count=100").len(), 7);
    }

    fn updates_and_deletes_keep_the_indexes_current(server: &Server) {
        load(server);
        let mut pa = server.get("/Patient/pA").ok_json();
        pa["name"] = json!([{"family": "Moreau"}]);
        server.put("/Patient/pA", &pa).ok_json();
        assert_eq!(set(server, "/Patient?name=dupont"), of(&[]));
        assert_eq!(set(server, "/Patient?name=moreau"), of(&["pA"]));
        assert_eq!(server.delete("/Observation/o1").status, 204);
        assert_eq!(set(server, "/Observation?patient=pA"), of(&["o2", "o4"]));
        assert_eq!(set(server, "/Observation?value-quantity=72.5"), of(&[]));
        // Re-created after deletion: indexed again.
        let o1 = observation("o1", Some("pB"), "29463-7", json!({"valueQuantity": quantity(72.5, "kg")}));
        server.put("/Observation/o1", &o1).ok_json();
        assert_eq!(set(server, "/Observation?value-quantity=72.5&patient=pB"), of(&["o1"]));
        // A JSON Patch re-indexes too.
        let patched = server
            .request("PATCH", "/Observation/o2")
            .header("Content-Type", "application/json-patch+json")
            .body(br#"[{"op":"replace","path":"/status","value":"amended"}]"#);
        assert_eq!(patched.status, 200, "{}", patched.text());
        assert_eq!(set(server, "/Observation?status=amended"), of(&["o2"]));
    }
}

/// Runs `sql` on the test database directly (the server stopped).
fn exec_on(url: &str, sql: &str) {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    match url.strip_prefix("sqlite:") {
        Some(path) => diesel::SqliteConnection::establish(path)
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
        None => diesel::PgConnection::establish(url)
            .unwrap()
            .batch_execute(sql)
            .unwrap(),
    }
}

/// A database written before the search tables existed (or before a parameter was added) is
/// reindexed at the next start, and its resources become searchable.
fn existing_resources_are_reindexed_at_start(backend: common::Backend) {
    let server = Server::start(backend);
    load(&server);
    assert_eq!(
        set(&server, "/Observation?patient=pA"),
        of(&["o1", "o2", "o4"])
    );
    let db = Server::take_database(server);
    exec_on(
        &db.url,
        "DELETE FROM search_string; DELETE FROM search_token; DELETE FROM search_reference; \
         DELETE FROM search_date; DELETE FROM search_number; DELETE FROM search_quantity; \
         DELETE FROM search_uri; DELETE FROM search_param;",
    );
    let server = Server::start_on(db, &[], &[("CARNET_LOG", "info")]);
    assert_eq!(
        set(&server, "/Observation?patient=pA"),
        of(&["o1", "o2", "o4"])
    );
    assert_eq!(set(&server, "/Patient?name=elo"), of(&["pA"]));
    assert_eq!(
        set(
            &server,
            &format!("/Observation?value-quantity=gt80|{UCUM}|kg")
        ),
        of(&["o3"])
    );
    // A deleted resource is not brought back by the reindex.
    let db = Server::take_database(server);
    exec_on(&db.url, "DELETE FROM search_param;");
    let server = Server::start_on(db, &[], &[]);
    assert_eq!(server.delete("/Observation/o1").status, 204);
    let db = Server::take_database(server);
    exec_on(&db.url, "DELETE FROM search_param;");
    let server = Server::start_on(db, &[], &[("CARNET_LOG", "info")]);
    assert_eq!(set(&server, "/Observation?patient=pA"), of(&["o2", "o4"]));
    let log = server.stop();
    assert!(log.contains("reindexed"), "{log}");
}

#[test]
fn existing_resources_are_reindexed_at_start_on_sqlite() {
    existing_resources_are_reindexed_at_start(common::Backend::Sqlite);
}

#[test]
fn existing_resources_are_reindexed_at_start_on_postgres() {
    existing_resources_are_reindexed_at_start(common::Backend::Postgres);
}

fn born_in(id: &str, city: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
        "valueAddress": {"city": city}}]})
}

fn birth_place_parameter(status: &str) -> Value {
    json!({
        "resourceType": "SearchParameter", "id": "birth-place",
        "url": "http://example.org/SearchParameter/patient-birth-place",
        "name": "BirthPlace", "status": status, "description": "Where the patient was born",
        "code": "birth-place", "base": ["Patient"], "type": "string",
        "expression": "Patient.extension.where(url = 'http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value.city"
    })
}

/// A SearchParameter written at run time: refused when it cannot be indexed; otherwise new
/// writes index it at once, and after `$reindex` (or the next start) it searches everything.
fn search_parameters_added_at_run_time(backend: common::Backend) {
    let server = Server::start(backend);
    server
        .put("/Patient/b1", &born_in("b1", "Besançon"))
        .ok_json();
    server.put("/Patient/b2", &born_in("b2", "Brest")).ok_json();
    assert_eq!(server.get("/Patient?birth-place=bes").status, 400);

    // What the server could not honour is refused, and nothing is stored.
    let mut taken = birth_place_parameter("active");
    taken["code"] = json!("name");
    server
        .put("/SearchParameter/birth-place", &taken)
        .outcome_at(400, "code");
    let mut unsupported = birth_place_parameter("active");
    unsupported["expression"] = json!("Patient.name.aggregate($this)");
    server
        .put("/SearchParameter/birth-place", &unsupported)
        .outcome_at(400, "expression");
    assert_eq!(server.get("/SearchParameter/birth-place").status, 404);

    assert_eq!(
        server
            .put(
                "/SearchParameter/birth-place",
                &birth_place_parameter("active")
            )
            .status,
        201
    );
    // Written before the parameter existed: not searchable until reindexed, and said so.
    let pending = server.get("/Patient?birth-place=bes");
    assert_eq!(pending.status, 400, "{}", pending.text());
    assert!(pending.text().contains("$reindex"), "{}", pending.text());
    // Written after: indexed at once.
    server.put("/Patient/b3", &born_in("b3", "Besse")).ok_json();

    let reindex = server.post("/$reindex", &json!({}));
    assert_eq!(reindex.status, 200, "{}", reindex.text());
    assert!(reindex.text().contains("of Patient"), "{}", reindex.text());
    assert_eq!(set(&server, "/Patient?birth-place=bes"), of(&["b1", "b3"]));
    assert_eq!(
        set(&server, "/Patient?birth-place:exact=Brest"),
        of(&["b2"])
    );
    let metadata = server.get("/metadata").ok_json();
    let patient = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    assert!(patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "birth-place"));
    let nothing = server.post("/$reindex", &json!({}));
    assert!(
        nothing.text().contains("nothing to reindex"),
        "{}",
        nothing.text()
    );
    assert_eq!(
        server.post("/$reindex?_type=Parameters", &json!({})).status,
        400
    );

    // It survives a restart (read back from the database)...
    let db = Server::take_database(server);
    let server = Server::start_on(db, &[], &[]);
    assert_eq!(set(&server, "/Patient?birth-place=bes"), of(&["b1", "b3"]));
    // ... and a retired definition is no longer in force.
    server
        .put(
            "/SearchParameter/birth-place",
            &birth_place_parameter("retired"),
        )
        .ok_json();
    assert_eq!(server.get("/Patient?birth-place=bes").status, 400);
}

#[test]
fn search_parameters_added_at_run_time_on_sqlite() {
    search_parameters_added_at_run_time(common::Backend::Sqlite);
}

#[test]
fn search_parameters_added_at_run_time_on_postgres() {
    search_parameters_added_at_run_time(common::Backend::Postgres);
}

/// `$reindex` with `Prefer: respond-async` runs as a job: 202 and a status URL that answers
/// 202 with progress, then 200 with the outcome; a job whose node stopped says so.
fn reindex_runs_as_a_job_when_asked(backend: common::Backend) {
    let server = Server::start(backend);
    for i in 0..30 {
        let id = format!("b{i}");
        server
            .put(&format!("/Patient/{id}"), &born_in(&id, "Besançon"))
            .ok_json();
    }
    server
        .put(
            "/SearchParameter/birth-place",
            &birth_place_parameter("active"),
        )
        .ok_json();
    let asynchronous = |path: &str| {
        server
            .request("POST", path)
            .header("Prefer", "respond-async")
            .header("Content-Type", "application/fhir+json")
            .body(b"{}")
    };
    let accepted = asynchronous("/$reindex");
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    let status = accepted.header("content-location").unwrap().to_string();
    assert!(status.contains("/$reindex-status/"), "{status}");
    let started = std::time::Instant::now();
    let done = loop {
        let response = server.get(&status);
        if response.status == 200 {
            break response;
        }
        assert_eq!(response.status, 202, "{}", response.text());
        assert!(
            response
                .header("x-progress")
                .unwrap()
                .contains("/30 resources"),
            "{response:?}"
        );
        assert!(
            started.elapsed().as_secs() < 60,
            "the reindex job did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        done.text().contains("reindexed 30 resources of Patient"),
        "{}",
        done.text()
    );
    assert_eq!(set(&server, "/Patient?birth-place=bes").len(), 30);
    // Nothing pending: answered at once.
    let nothing = asynchronous("/$reindex");
    assert_eq!(nothing.status, 200, "{}", nothing.text());
    assert!(
        nothing.text().contains("nothing to reindex"),
        "{}",
        nothing.text()
    );
    server.get("/$reindex-status/nope").outcome(404);
    // A running job whose heartbeat stopped lost its node.
    exec_on(
        &server.database.url,
        "INSERT INTO reindex_job (id, types, status, total, done, created, updated) \
         VALUES ('stale', '[\"Patient\"]', 'running', 10, 3, 0, 0)",
    );
    let stale = server.get("/$reindex-status/stale");
    assert_eq!(stale.status, 500, "{}", stale.text());
    assert!(
        stale.text().contains("stopped with its node after 3 of 10"),
        "{}",
        stale.text()
    );
}

#[test]
fn reindex_runs_as_a_job_when_asked_on_sqlite() {
    reindex_runs_as_a_job_when_asked(common::Backend::Sqlite);
}

#[test]
fn reindex_runs_as_a_job_when_asked_on_postgres() {
    reindex_runs_as_a_job_when_asked(common::Backend::Postgres);
}

/// Two nodes on one PostgreSQL database: a definition written through one, and its reindex,
/// come into force on the other within seconds, without a restart.
#[test]
fn search_parameters_reach_every_node_of_a_cluster() {
    let a = Server::start(common::Backend::Postgres);
    let b = Server::start_on(a.database.shared(), &[], &[]);
    b.put("/Patient/b1", &born_in("b1", "Besançon")).ok_json();
    let unknown = b.get("/Patient?birth-place=bes");
    assert_eq!(unknown.status, 400);
    assert!(!unknown.text().contains("$reindex"), "{}", unknown.text());

    let created = a.put(
        "/SearchParameter/birth-place",
        &birth_place_parameter("active"),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    // B learns the definition: pending on the resources stored before it.
    let learned = eventually(|| {
        b.get("/Patient?birth-place=bes")
            .text()
            .contains("$reindex")
    });
    assert!(learned, "node B never learned the new SearchParameter");
    // B indexes what it writes from now on; A's reindex makes the rest searchable on B too.
    b.put("/Patient/b2", &born_in("b2", "Besse")).ok_json();
    assert_eq!(a.post("/$reindex", &json!({})).status, 200);
    let searchable = eventually(|| b.get("/Patient?birth-place=bes").status == 200);
    assert!(searchable, "node B never learned that the reindex was done");
    assert_eq!(set(&b, "/Patient?birth-place=bes"), of(&["b1", "b2"]));
    assert_eq!(set(&a, "/Patient?birth-place=bes"), of(&["b1", "b2"]));

    // Retired through B: out of force on A.
    b.put(
        "/SearchParameter/birth-place",
        &birth_place_parameter("retired"),
    )
    .ok_json();
    let retired = eventually(|| a.get("/Patient?birth-place=bes").status == 400);
    assert!(retired, "node A still searches a retired definition");
}

/// Whether `check` holds within 10 seconds (nodes poll every 2).
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(10) {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// A redefined, retired or re-activated SearchParameter never answers from stale rows.
fn search_parameters_redefined(backend: common::Backend) {
    let server = Server::start(backend);
    server
        .put("/Patient/b1", &born_in("b1", "Besançon"))
        .ok_json();
    server
        .put(
            "/SearchParameter/birth-place",
            &birth_place_parameter("active"),
        )
        .ok_json();
    assert_eq!(server.post("/$reindex", &json!({})).status, 200);
    assert_eq!(set(&server, "/Patient?birth-place=bes"), of(&["b1"]));
    // Retired, then a patient written, then active again: pending until reindexed.
    server
        .put(
            "/SearchParameter/birth-place",
            &birth_place_parameter("retired"),
        )
        .ok_json();
    server.put("/Patient/b2", &born_in("b2", "Besse")).ok_json();
    server
        .put(
            "/SearchParameter/birth-place",
            &birth_place_parameter("active"),
        )
        .ok_json();
    assert_eq!(server.get("/Patient?birth-place=bes").status, 400);
    assert_eq!(server.post("/$reindex", &json!({})).status, 200);
    assert_eq!(set(&server, "/Patient?birth-place=bes"), of(&["b1", "b2"]));
    // A new expression under the same code: the old rows go, pending until reindexed.
    let mut by_state = birth_place_parameter("active");
    by_state["expression"] = json!("Patient.extension.where(url = 'http://hl7.org/fhir/StructureDefinition/patient-birthPlace').value.state");
    server
        .put("/SearchParameter/birth-place", &by_state)
        .ok_json();
    assert_eq!(server.get("/Patient?birth-place=bes").status, 400);
    assert_eq!(server.post("/$reindex", &json!({})).status, 200);
    assert_eq!(set(&server, "/Patient?birth-place=bes"), of(&[]));
}

#[test]
fn search_parameters_redefined_on_sqlite() {
    search_parameters_redefined(common::Backend::Sqlite);
}

#[test]
fn search_parameters_redefined_on_postgres() {
    search_parameters_redefined(common::Backend::Postgres);
}
