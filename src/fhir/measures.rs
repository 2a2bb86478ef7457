//! The "Mesures de santé" rules (ANS, measurements sent by patients' apps and the measures
//! feed) for Observations that claim one of its profiles in `meta.profile`, current or legacy
//! URL: the national service's business rules (no BMI written by a client, a value or a
//! `dataAbsentReason`, the glucose extensions) and each profile's code and UCUM unit, with the
//! exact conversions (`g` and `[lb_av]` to `kg`, `m`, `mm` and `[in_i]` to `cm`). Pure: the
//! caller (`interaction::write`) refuses with 422 or stores the converted resource.
//! See docs/measurements.md.

use serde_json::{Map, Value};

use super::outcome::Issue;

pub const BASE: &str = "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/";
const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";
/// TRE_R308-TAASIP, the French terminology of interstitial glucose and glucose management.
const TRE_R308: &str = "https://mos.esante.gouv.fr/NOS/TRE_R308-TAASIP/FHIR/TRE-R308-TAASIP";
const MOMENT: &str = "mesures-moment-of-measurement";
const NUMBER_OF_DAYS: &str = "mesures-number-of-days";

/// What a profile asks of the measurement.
struct Profile {
    /// The current profile id (after `BASE`).
    id: &'static str,
    /// Legacy names (`ENS_<n>`, `Mes<n>`, `mes-<n>`, `mes-observation-<n>`) that map to it.
    legacy: &'static [&'static str],
    /// LOINC codes, one of which `code.coding` must hold (empty: glucose, checked apart).
    codes: &'static [&'static str],
    /// The UCUM code of the value (`None`: no `value[x]`, components instead).
    unit: Option<&'static str>,
}

const PROFILES: &[Profile] = &[
    Profile {
        id: "mesures-fr-observation-body-weight",
        legacy: &["FrObservationBodyWeight", "bodyweight", "body-weight"],
        codes: &["29463-7"],
        unit: Some("kg"),
    },
    Profile {
        id: "mesures-fr-observation-bodyheight",
        legacy: &["FrObservationBodyHeight", "bodyheight", "body-height"],
        codes: &["8302-2"],
        unit: Some("cm"),
    },
    Profile {
        id: "mesures-fr-observation-bmi",
        legacy: &["FrObservationBmi", "bmi"],
        codes: &["39156-5"],
        unit: Some("kg/m2"),
    },
    Profile {
        id: "mesures-fr-observation-bp",
        legacy: &["FrObservationBp", "bp"],
        codes: &["85354-9"],
        unit: None,
    },
    Profile {
        id: "mesures-fr-observation-heartrate",
        legacy: &["FrObservationHeartrate", "heartrate"],
        codes: &["8867-4"],
        unit: Some("/min"),
    },
    Profile {
        id: "mesures-fr-observation-body-temperature",
        legacy: &[
            "FrObservationBodyTemperature",
            "bodytemperature",
            "body-temperature",
        ],
        codes: &["8310-5"],
        unit: Some("Cel"),
    },
    Profile {
        id: "mesures-fr-observation-oxygen-sat",
        legacy: &["FrObservationOxygenSat", "oxygen-sat", "oxygensat"],
        codes: &["2708-6", "59408-5"],
        unit: Some("%"),
    },
    Profile {
        id: "mesures-observation-glucose",
        legacy: &["ObservationGlucose", "glucose"],
        codes: &[],
        unit: Some("mg/dL"),
    },
    Profile {
        id: "mesures-observation-hb1ac",
        legacy: &["ObservationHb1ac", "hb1ac"],
        codes: &["4548-4"],
        unit: Some("%"),
    },
    Profile {
        id: "mesures-observation-pain-severity",
        legacy: &["ObservationPainSeverity", "pain-severity"],
        codes: &["72514-3"],
        unit: Some("1"),
    },
    Profile {
        id: "mesures-observation-steps-by-day",
        legacy: &["ObservationStepsByDay", "steps-by-day"],
        codes: &["41950-7"],
        unit: Some("1/(24.h)"),
    },
    Profile {
        id: "mesures-observation-waist-circumference",
        legacy: &["ObservationWaistCircumference", "waist-circumference"],
        codes: &["8280-0"],
        unit: Some("cm"),
    },
    Profile {
        id: "mesures-observation-head-circumference",
        legacy: &["ObservationHeadCircumference", "head-circumference"],
        codes: &["9843-4"],
        unit: Some("cm"),
    },
];

const BMI: &str = "39156-5";
const BLOOD_GLUCOSE: &str = "2345-7";
const CGM: &str = "MED-969";
const GLUCOSE_INDEX: &str = "MED-972";

/// Exact conversions to a profile's unit: `(from, to, factor as a decimal text)`.
const CONVERSIONS: &[(&str, &str, &str)] = &[
    ("g", "kg", "0.001"),
    ("[lb_av]", "kg", "0.45359237"),
    ("m", "cm", "100"),
    ("mm", "cm", "0.1"),
    ("[in_i]", "cm", "2.54"),
];

/// The Mesures profile a `meta.profile` URL names, current or legacy form.
fn profile_of(url: &str) -> Option<&'static Profile> {
    let url = url.split('|').next().unwrap_or(url);
    if let Some(p) = url
        .strip_prefix(BASE)
        .and_then(|id| PROFILES.iter().find(|p| p.id == id))
    {
        return Some(p);
    }
    let tail = [
        "http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/ENS_",
        "http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/Mes",
        "https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/mes-",
        "http://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/mes-",
        "https://interop.esante.gouv.fr/fhir/mesures/StructureDefinition/mes-",
        "http://interop.esante.gouv.fr/fhir/mesures/StructureDefinition/mes-",
        "https://fhir.monespacesante.fr/ref/mesure/StructureDefinition/mes-observation-",
    ]
    .iter()
    .find_map(|prefix| url.strip_prefix(prefix))?;
    let tail = tail.strip_prefix("fr-observation-").unwrap_or(tail);
    let tail = tail.strip_prefix("observation-").unwrap_or(tail);
    PROFILES.iter().find(|p| {
        p.legacy.iter().any(|l| l.eq_ignore_ascii_case(tail)) || p.id.ends_with(&format!("-{tail}"))
    })
}

/// The Mesures profiles `resource` claims (each once).
fn claimed(resource: &Value) -> Vec<(&'static Profile, String)> {
    let mut out: Vec<(&'static Profile, String)> = Vec::new();
    for url in resource["meta"]["profile"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Some(p) = profile_of(url) {
            if !out.iter().any(|(q, _)| q.id == p.id) {
                out.push((p, url.to_string()));
            }
        }
    }
    out
}

/// Whether `resource` claims a Mesures de santé profile.
pub fn claims_mesures(resource: &Value) -> bool {
    resource["resourceType"] == "Observation" && !claimed(resource).is_empty()
}

/// Checks an Observation that claims Mesures profiles and converts its value to the
/// profile's unit when the conversion is exact. Returns the problems (nothing is to be
/// stored when there are any). Other resources pass untouched.
pub fn check_and_convert(resource: &mut Value) -> Vec<Issue> {
    if resource["resourceType"] != "Observation" {
        return Vec::new();
    }
    let profiles = claimed(resource);
    let mut issues = Vec::new();
    for (profile, url) in profiles {
        check_one(resource, profile, &url, &mut issues);
    }
    issues
}

fn codings(resource: &Value) -> impl Iterator<Item = (&str, &str)> {
    resource["code"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["system"].as_str()?, c["code"].as_str()?)))
}

fn has_code(resource: &Value, system: &str, code: &str) -> bool {
    codings(resource).any(|(s, c)| s == system && c == code)
}

fn value_key(resource: &Value) -> Option<&str> {
    resource
        .as_object()?
        .keys()
        .find(|k| k.starts_with("value"))
        .map(String::as_str)
}

fn extension<'a>(resource: &'a Value, name: &str) -> Option<&'a Value> {
    resource["extension"].as_array()?.iter().find(|e| {
        e["url"].as_str().is_some_and(|u| {
            u.ends_with(&format!("/{name}")) || u.ends_with(&format!("/Mes{}", camel(name)))
        })
    })
}

/// `mesures-moment-of-measurement` -> `MomentOfMeasurement` (the legacy extension names).
fn camel(name: &str) -> String {
    name.trim_start_matches("mesures-")
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn check_one(resource: &mut Value, profile: &Profile, url: &str, issues: &mut Vec<Issue>) {
    let refuse = |issues: &mut Vec<Issue>, code: &'static str, at: &str, message: String| {
        issues.push(Issue::error(code, format!("{message} (profile {url})")).at(at.to_string()));
    };
    // The national service computes BMI itself: no client writes one.
    if profile.id == "mesures-fr-observation-bmi" || has_code(resource, LOINC, BMI) {
        refuse(
            issues,
            "business-rule",
            "Observation.code",
            "a BMI is not written under a Mesures de santé profile: the server derives it from \
             the weight and the height"
                .into(),
        );
        return;
    }
    // The code.
    let glucose_code = if profile.id == "mesures-observation-glucose" {
        let found = [
            (LOINC, BLOOD_GLUCOSE),
            (TRE_R308, CGM),
            (TRE_R308, GLUCOSE_INDEX),
        ]
        .into_iter()
        .find(|(s, c)| has_code(resource, s, c))
        .map(|(_, c)| c);
        if found.is_none() {
            refuse(
                issues,
                "code-invalid",
                "Observation.code",
                format!(
                    "a glucose measurement is coded {LOINC}|{BLOOD_GLUCOSE} (blood), \
                     {TRE_R308}|{CGM} (interstitial) or {TRE_R308}|{GLUCOSE_INDEX} (glucose \
                     management index)"
                ),
            );
        }
        found
    } else {
        if !profile.codes.iter().any(|c| has_code(resource, LOINC, c)) {
            refuse(
                issues,
                "code-invalid",
                "Observation.code",
                format!(
                    "the code must hold the LOINC code {}",
                    profile.codes.join(" or ")
                ),
            );
        }
        None
    };
    // The glucose extensions.
    let moment = extension(resource, MOMENT).is_some();
    let days = extension(resource, NUMBER_OF_DAYS).is_some();
    let (needs_moment, needs_days) = match glucose_code {
        Some(BLOOD_GLUCOSE) => (Some(true), Some(false)),
        Some(_) => (Some(false), Some(true)),
        None if profile.id == "mesures-observation-hb1ac" => (Some(false), Some(false)),
        None => (None, None),
    };
    for (needed, present, name) in [
        (needs_moment, moment, MOMENT),
        (needs_days, days, NUMBER_OF_DAYS),
    ] {
        match needed {
            Some(true) if !present => refuse(
                issues,
                "required",
                "Observation.extension",
                format!("this measurement needs the extension {BASE}{name}"),
            ),
            Some(false) if present => refuse(
                issues,
                "business-rule",
                "Observation.extension",
                format!("this measurement does not take the extension {BASE}{name}"),
            ),
            _ => {}
        }
    }
    // The value, or why there is none.
    let absent = resource.get("dataAbsentReason").is_some();
    if absent {
        let coded = resource["dataAbsentReason"]["coding"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["system"].is_string() && c["code"].is_string())
            });
        if !coded {
            refuse(
                issues,
                "required",
                "Observation.dataAbsentReason",
                "dataAbsentReason needs a coding with its system and code".into(),
            );
        }
    }
    let Some(unit) = profile.unit else {
        check_components(resource, absent, url, issues);
        return;
    };
    match value_key(resource) {
        None if !absent => refuse(
            issues,
            "required",
            "Observation.value[x]",
            "a measurement has a value (valueQuantity) or a dataAbsentReason".into(),
        ),
        None => {}
        Some("valueQuantity") => {
            let unit = if glucose_code == Some(GLUCOSE_INDEX) {
                "%"
            } else {
                unit
            };
            if let Err(message) = check_quantity(&mut resource["valueQuantity"], unit) {
                refuse(issues, "value", "Observation.valueQuantity", message);
            }
        }
        Some(other) => refuse(
            issues,
            "value",
            &format!("Observation.{other}"),
            format!("a measurement's value is a valueQuantity in {unit}, not {other}"),
        ),
    }
}

/// Blood pressure: no `value[x]`; the systolic and diastolic components, each with a value in
/// mm[Hg] or a dataAbsentReason, unless the whole Observation has a dataAbsentReason.
fn check_components(resource: &mut Value, absent: bool, url: &str, issues: &mut Vec<Issue>) {
    if let Some(key) = value_key(resource).map(String::from) {
        issues.push(
            Issue::error(
                "value",
                format!("a blood pressure panel has no {key}: its values are in components (profile {url})"),
            )
            .at(format!("Observation.{key}")),
        );
    }
    let components = resource["component"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for code in ["8480-6", "8462-4"] {
        let found = components.iter().position(|c| {
            c["code"]["coding"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|x| x["system"] == LOINC && x["code"] == code))
        });
        match found {
            None if !absent => issues.push(
                Issue::error(
                    "required",
                    format!(
                        "a blood pressure panel has a component {LOINC}|{code} (profile {url})"
                    ),
                )
                .at("Observation.component"),
            ),
            None => {}
            Some(i) => {
                let at = format!("Observation.component[{i}]");
                let component = &mut resource["component"][i];
                if component.get("valueQuantity").is_some() {
                    if let Err(m) = check_quantity(&mut component["valueQuantity"], "mm[Hg]") {
                        issues.push(
                            Issue::error("value", format!("{m} (profile {url})"))
                                .at(format!("{at}.valueQuantity")),
                        );
                    }
                } else if component.get("dataAbsentReason").is_none() {
                    issues.push(
                        Issue::error(
                            "required",
                            format!(
                                "component {LOINC}|{code} has a valueQuantity or a \
                                 dataAbsentReason (profile {url})"
                            ),
                        )
                        .at(format!("{at}.value[x]")),
                    );
                }
            }
        }
    }
}

/// A Quantity in the UCUM `unit`, converted to it when an exact conversion exists.
fn check_quantity(quantity: &mut Value, unit: &str) -> Result<(), String> {
    let Some(q) = quantity.as_object_mut() else {
        return Err("valueQuantity is not an object".into());
    };
    if q.get("value").is_none() {
        return Err("valueQuantity has no value".into());
    }
    if q.get("system").and_then(Value::as_str) != Some(UCUM) {
        return Err(format!("valueQuantity.system is {UCUM} (UCUM)"));
    }
    let code = q
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if code == unit {
        return Ok(());
    }
    let Some((_, _, factor)) = CONVERSIONS
        .iter()
        .find(|(f, t, _)| *f == code && *t == unit)
    else {
        return Err(format!(
            "valueQuantity.code is {code:?}; this measurement is in {unit:?}{}",
            conversions_to(unit)
        ));
    };
    let value = q["value"].to_string();
    let converted = multiply(&value, factor).ok_or_else(|| {
        format!("valueQuantity.value {value} is not a decimal this server converts")
    })?;
    let number: Value =
        serde_json::from_str(&converted).map_err(|e| format!("converting {value} {code}: {e}"))?;
    let mut out = Map::with_capacity(q.len());
    for (k, v) in std::mem::take(q) {
        let v = match k.as_str() {
            "value" => number.clone(),
            "unit" => Value::String(unit.to_string()),
            "code" => Value::String(unit.to_string()),
            _ => v,
        };
        out.insert(k, v);
    }
    *q = out;
    Ok(())
}

fn conversions_to(unit: &str) -> String {
    let from: Vec<&str> = CONVERSIONS
        .iter()
        .filter(|(_, t, _)| *t == unit)
        .map(|(f, _, _)| *f)
        .collect();
    if from.is_empty() {
        String::new()
    } else {
        format!(" (converted from {})", from.join(", "))
    }
}

/// `a × b` for decimal texts, exactly, keeping every digit (`72500 × 0.001` = `72.500`).
fn multiply(a: &str, b: &str) -> Option<String> {
    let (am, ascale) = parse_decimal(a)?;
    let (bm, bscale) = parse_decimal(b)?;
    let m = am.checked_mul(bm)?;
    let scale = ascale + bscale;
    let negative = m < 0;
    let digits = m.unsigned_abs().to_string();
    let text = if scale == 0 {
        digits
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        format!("{int}.{frac}")
    } else {
        format!("0.{}{digits}", "0".repeat(scale - digits.len()))
    };
    Some(if negative { format!("-{text}") } else { text })
}

/// A JSON decimal without exponent as (mantissa, digits after the point).
fn parse_decimal(text: &str) -> Option<(i128, usize)> {
    if text.contains(['e', 'E']) {
        return None;
    }
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let mantissa: i128 = format!("{int}{frac}").parse().ok()?;
    Some((mantissa, frac.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn legacy_urls_map_to_current_profiles() {
        for (url, id) in [
            ("http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/MesFrObservationBodyWeight", "mesures-fr-observation-body-weight"),
            ("http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/ENS_FrObservationBp", "mesures-fr-observation-bp"),
            ("http://esante.gouv.fr/ci-sis/fhir/StructureDefinition/MesObservationGlucose", "mesures-observation-glucose"),
            ("https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/mes-fr-observation-heartrate", "mesures-fr-observation-heartrate"),
            ("https://fhir.monespacesante.fr/ref/mesure/StructureDefinition/mes-observation-bodyweight", "mesures-fr-observation-body-weight"),
            ("https://interop.esante.gouv.fr/ig/fhir/mesures/StructureDefinition/mesures-fr-observation-bmi|3.2.0", "mesures-fr-observation-bmi"),
        ] {
            assert_eq!(profile_of(url).map(|p| p.id), Some(id), "{url}");
        }
        assert!(profile_of("http://hl7.org/fhir/StructureDefinition/bodyweight").is_none());
    }

    #[test]
    fn conversions_are_exact() {
        assert_eq!(multiply("72500", "0.001").unwrap(), "72.500");
        assert_eq!(multiply("154", "0.45359237").unwrap(), "69.85322498");
        assert_eq!(multiply("1.75", "100").unwrap(), "175.00");
        assert_eq!(multiply("5", "0.001").unwrap(), "0.005");
        assert_eq!(multiply("-2.5", "2").unwrap(), "-5.0");
        assert!(multiply("1e3", "1").is_none());
        let mut q = json!({"value": 72500, "unit": "g", "system": UCUM, "code": "g"});
        check_quantity(&mut q, "kg").unwrap();
        assert_eq!(
            q.to_string(),
            r#"{"value":72.500,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}"#
        );
        let mut q = json!({"value": 98.6, "unit": "F", "system": UCUM, "code": "[degF]"});
        assert!(check_quantity(&mut q, "Cel").is_err());
    }
}
