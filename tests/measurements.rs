//! Measurements as "Mesures de santé" (Observations claiming one of its profiles, current or
//! legacy URL), through HTTP, on SQLite and PostgreSQL: a BMI is refused (the server derives
//! it), a measurement has a value or a coded dataAbsentReason, glucose has its moment of
//! measurement and continuous glucose its number of days, units are the profile's UCUM unit or
//! converted exactly; every refusal is a 422 naming the element, with nothing stored. An
//! Observation without a Mesures profile is stored as sent.

mod common;

use serde_json::{json, Value};

use common::Server;

const MES: &str = "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/";
const LEGACY: &str = "http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/";
const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";
const TRE_R308: &str = "https://mos.esante.gouv.fr/NOS/TRE_R308-TAASIP/FHIR/TRE-R308-TAASIP";

fn measure(profile: &str, code: &str, value: Option<(&str, &str)>) -> Value {
    let mut o = json!({
        "resourceType": "Observation",
        "meta": {"profile": [profile]},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-12-01T08:00:00+01:00"
    });
    if let Some((number, unit)) = value {
        let number: Value = serde_json::from_str(number).unwrap();
        o["valueQuantity"] = json!({"value": number, "unit": unit, "system": UCUM, "code": unit});
    }
    o
}

fn weight(number: &str, unit: &str) -> Value {
    measure(
        &format!("{MES}mesures-fr-observation-body-weight"),
        "29463-7",
        Some((number, unit)),
    )
}

fn glucose(system: &str, code: &str, unit: &str) -> Value {
    let mut o = measure(
        &format!("{MES}mesures-observation-glucose"),
        "x",
        Some(("98", unit)),
    );
    o["code"] = json!({"coding": [{"system": system, "code": code}]});
    o
}

fn moment() -> Value {
    json!({"url": format!("{MES}mesures-moment-of-measurement"),
           "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "53049-3"}]}})
}

fn days() -> Value {
    json!({"url": format!("{MES}mesures-number-of-days"),
           "valueCodeableConcept": {"coding": [{"system": TRE_R308, "code": "GEN-276"}]}})
}

fn total(server: &Server, query: &str) -> i64 {
    let sep = if query.contains('?') { '&' } else { '?' };
    let bundle = server
        .get(&format!("/{query}{sep}_total=accurate&_count=0"))
        .ok_json();
    bundle["total"].as_i64().unwrap()
}

fn setup(server: &Server) {
    server
        .put(
            "/Patient/p1",
            &json!({"resourceType": "Patient", "id": "p1"}),
        )
        .ok_json();
}

backend_tests! {
    fn a_bmi_under_a_mesures_profile_is_refused_a_clinical_one_is_stored(server: &Server) {
        setup(server);
        let bmi = measure(&format!("{MES}mesures-fr-observation-bmi"), "39156-5", Some(("22.5", "kg/m2")));
        let r = server.post("/Observation", &bmi);
        r.outcome_at(422, "Observation.code");
        assert!(r.text().contains("derives it"), "{}", r.text());
        // The legacy URL, and a BMI code under another Mesures profile.
        let legacy = measure(&format!("{LEGACY}MesFrObservationBmi"), "39156-5", Some(("22.5", "kg/m2")));
        server.post("/Observation", &legacy).outcome_at(422, "Observation.code");
        let disguised = measure(&format!("{MES}mesures-fr-observation-body-weight"), "39156-5", Some(("22.5", "kg/m2")));
        server.post("/Observation", &disguised).outcome_at(422, "Observation.code");
        // Through a transaction (the measures feed), nothing of the Bundle is stored.
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:3f1e0c7a-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Device", "identifier": [{"system": "urn:oid:1.2.250.1.999", "value": "scale-1"}]},
             "request": {"method": "POST", "url": "Device"}},
            {"fullUrl": "urn:uuid:3f1e0c7a-0000-4000-8000-000000000002", "resource": bmi,
             "request": {"method": "POST", "url": "Observation"}}]});
        server.post("", &bundle).outcome_at(422, "Bundle.entry[1].resource.code");
        assert_eq!(total(server, "Observation"), 0);
        assert_eq!(total(server, "Device"), 0);
        // A hospital's clinical BMI, without the profile, is stored as sent.
        let mut clinical = measure("http://hl7.org/fhir/StructureDefinition/bmi", "39156-5", Some(("22.50", "kg/m2")));
        clinical["meta"]["profile"] = json!(["http://hl7.org/fhir/StructureDefinition/bmi"]);
        let stored = server.post("/Observation", &clinical).ok_json();
        assert!(stored["valueQuantity"].to_string().contains("22.50"));
        assert_eq!(total(server, "Observation"), 1);
    }

    fn a_measurement_has_a_value_or_a_coded_data_absent_reason(server: &Server) {
        setup(server);
        let mut none = weight("1", "kg");
        none.as_object_mut().unwrap().remove("valueQuantity");
        server.post("/Observation", &none).outcome_at(422, "Observation.value[x]");
        let mut text_only = none.clone();
        text_only["dataAbsentReason"] = json!({"text": "balance en panne"});
        server.post("/Observation", &text_only).outcome_at(422, "Observation.dataAbsentReason");
        let mut coded = none.clone();
        coded["dataAbsentReason"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "error"}]});
        server.post("/Observation", &coded).ok_json();
        // Another value type than a Quantity.
        let mut string = none.clone();
        string["valueString"] = json!("61 kg");
        server.post("/Observation", &string).outcome_at(422, "Observation.valueString");
        // The wrong code for the profile.
        let mut height_code = weight("61", "kg");
        height_code["code"]["coding"][0]["code"] = json!("8302-2");
        server.post("/Observation", &height_code).outcome_at(422, "Observation.code");
        // Blood pressure: components, not value[x].
        let bp_profile = format!("{MES}mesures-fr-observation-bp");
        let no_components = measure(&bp_profile, "85354-9", None);
        server.post("/Observation", &no_components).outcome_at(422, "Observation.component");
        let mut bp = no_components.clone();
        bp["component"] = json!([
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 128, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 82, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}
        ]);
        let mut with_value = bp.clone();
        with_value["valueQuantity"] = json!({"value": 1, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"});
        server.post("/Observation", &with_value).outcome_at(422, "Observation.valueQuantity");
        let mut kpa = bp.clone();
        kpa["component"][1]["valueQuantity"]["code"] = json!("kPa");
        server.post("/Observation", &kpa).outcome_at(422, "Observation.component[1].valueQuantity");
        server.post("/Observation", &bp).ok_json();
        assert_eq!(total(server, "Observation"), 2);
    }

    fn units_are_the_profiles_or_converted_exactly(server: &Server) {
        setup(server);
        let kept = server.post("/Observation", &weight("61.50", "kg")).ok_json();
        assert!(kept["valueQuantity"].to_string().contains("61.50"), "{kept}");
        let grams = server.post("/Observation", &weight("72500", "g")).ok_json();
        assert_eq!(
            grams["valueQuantity"].to_string(),
            r#"{"value":72.500,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}"#
        );
        let read = server.get(&format!("/Observation/{}", grams["id"].as_str().unwrap()));
        assert!(read.text().contains(r#""value":72.500"#), "{}", read.text());
        let pounds = server.post("/Observation", &weight("154", "[lb_av]")).ok_json();
        assert_eq!(pounds["valueQuantity"]["code"], "kg");
        assert!(pounds["valueQuantity"].to_string().contains("69.85322498"), "{pounds}");
        let height = measure(&format!("{MES}mesures-fr-observation-bodyheight"), "8302-2", Some(("1.75", "m")));
        let height = server.post("/Observation", &height).ok_json();
        assert!(height["valueQuantity"].to_string().contains(r#""value":175.00"#), "{height}");
        assert_eq!(total(server, "Observation?value-quantity=72.5|http://unitsofmeasure.org|kg"), 1);
        // No exact conversion: refused.
        server.post("/Observation", &weight("61000000", "mg")).outcome_at(422, "Observation.valueQuantity");
        let fahrenheit = measure(&format!("{MES}mesures-fr-observation-body-temperature"), "8310-5", Some(("98.6", "[degF]")));
        server.post("/Observation", &fahrenheit).outcome_at(422, "Observation.valueQuantity");
        let mut no_system = weight("61", "kg");
        no_system["valueQuantity"].as_object_mut().unwrap().remove("system");
        server.post("/Observation", &no_system).outcome_at(422, "Observation.valueQuantity");
        // The legacy profile URL is held to the same unit.
        let mut legacy = weight("61", "[stone_av]");
        legacy["meta"]["profile"] = json!([format!("{LEGACY}MesFrObservationBodyWeight")]);
        server.post("/Observation", &legacy).outcome_at(422, "Observation.valueQuantity");
        assert_eq!(total(server, "Observation"), 4);
    }

    fn glucose_needs_its_moment_and_continuous_glucose_its_days(server: &Server) {
        setup(server);
        let blood = glucose(LOINC, "2345-7", "mg/dL");
        server.post("/Observation", &blood).outcome_at(422, "Observation.extension");
        let mut with_moment = blood.clone();
        with_moment["extension"] = json!([moment()]);
        server.post("/Observation", &with_moment).ok_json();
        let mut both = blood.clone();
        both["extension"] = json!([moment(), days()]);
        server.post("/Observation", &both).outcome_at(422, "Observation.extension");
        let mut mmol = with_moment.clone();
        mmol["valueQuantity"]["code"] = json!("mmol/L");
        server.post("/Observation", &mmol).outcome_at(422, "Observation.valueQuantity");
        let cgm = glucose(TRE_R308, "MED-969", "mg/dL");
        server.post("/Observation", &cgm).outcome_at(422, "Observation.extension");
        let mut cgm_days = cgm.clone();
        cgm_days["extension"] = json!([days()]);
        server.post("/Observation", &cgm_days).ok_json();
        let mut cgm_moment = cgm.clone();
        cgm_moment["extension"] = json!([days(), moment()]);
        server.post("/Observation", &cgm_moment).outcome_at(422, "Observation.extension");
        // The glucose management index is a percentage.
        let mut index = glucose(TRE_R308, "MED-972", "%");
        index["extension"] = json!([days()]);
        server.post("/Observation", &index).ok_json();
        // Not a glucose code.
        let mut other = glucose(LOINC, "29463-7", "mg/dL");
        other["extension"] = json!([moment()]);
        server.post("/Observation", &other).outcome_at(422, "Observation.code");
        assert_eq!(total(server, "Observation"), 3);
    }
}
