//! The caller of a request, as its verified token describes it, and the decision taken for
//! each interaction it attempts.

use super::scopes::{Level, Permissions, Scopes};
use super::AccessScope;

/// Who is calling and what they were granted (from a verified access token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub client_id: String,
    /// The person or system the token was issued to.
    pub subject: String,
    /// `Practitioner/123`, `Patient/456`... when a person signed in.
    pub fhir_user: Option<String>,
    /// The patient in context (`launch/patient`, or `carnet token --patient`).
    pub patient: Option<String>,
    pub scopes: Scopes,
    /// The token's `jti`.
    pub token_id: String,
}

/// The SMART permission an interaction needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// read, vread, instance history: `r`.
    Read,
    /// search, type and system history, `$everything`: `s`.
    Search,
    Create,
    /// update and patch: `u`.
    Update,
    Delete,
}

impl Operation {
    fn permissions(self) -> Permissions {
        match self {
            Operation::Read => Permissions::READ,
            Operation::Search => Permissions::SEARCH,
            Operation::Create => Permissions::CREATE,
            Operation::Update => Permissions::UPDATE,
            Operation::Delete => Permissions::DELETE,
        }
    }

    fn letter(self) -> char {
        match self {
            Operation::Read => 'r',
            Operation::Search => 's',
            Operation::Create => 'c',
            Operation::Update => 'u',
            Operation::Delete => 'd',
        }
    }

    fn is_write(self) -> bool {
        matches!(
            self,
            Operation::Create | Operation::Update | Operation::Delete
        )
    }
}

/// What a caller may touch for one interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Applied by the store inside its SQL.
    pub scope: AccessScope,
    /// Search parameters that reads and searches must also satisfy (a scope's `?query`).
    pub filter: Vec<(String, String)>,
}

/// Why an interaction is refused: a message that names what the token lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// The decision for `caller` (`None`: authorization is switched off) doing `operation` on
/// resources of `res_type`.
pub fn decide(
    caller: Option<&Caller>,
    operation: Operation,
    res_type: &str,
) -> Result<Decision, Denied> {
    let Some(caller) = caller else {
        return Ok(Decision {
            scope: AccessScope::everything(),
            filter: Vec::new(),
        });
    };
    let wanted = operation.permissions();
    let granting: Vec<_> = caller
        .scopes
        .resources
        .iter()
        .filter(|e| e.grants(res_type, wanted))
        .collect();
    let Some(level) = granting.iter().map(|e| e.level).max() else {
        return Err(Denied(format!(
            "the access token grants no scope with '{}' on {res_type} (for instance \
             patient/{res_type}.{} or system/*.cruds); granted: {}",
            operation.letter(),
            operation.letter(),
            describe(&caller.scopes)
        )));
    };
    // Search parameters change how every record is indexed: an operator's, or a system's.
    if operation.is_write() && res_type == "SearchParameter" && level != Level::System {
        return Err(Denied(format!(
            "writing SearchParameter needs a system/ scope (system/SearchParameter.{})",
            operation.letter()
        )));
    }
    let scope = match level {
        Level::System => AccessScope::everything(),
        Level::User => match caller.fhir_user.as_deref() {
            Some(user) => match user.strip_prefix("Patient/") {
                Some(patient) => AccessScope::patients(vec![patient.to_string()]),
                // Professionals: the consent engine decides which records; until then the
                // presumption of the care team covers every record.
                None => AccessScope::everything(),
            },
            None => {
                return Err(Denied(
                    "user/ scopes need a signed-in user, and this token names none (fhirUser)"
                        .into(),
                ))
            }
        },
        Level::Patient => match &caller.patient {
            Some(patient) => AccessScope::patients(vec![patient.clone()]),
            None => {
                return Err(Denied(
                    "patient/ scopes need a patient in context, and this token has none".into(),
                ))
            }
        },
    };
    let at_level: Vec<_> = granting.iter().filter(|e| e.level == level).collect();
    let filter = if at_level.iter().any(|e| e.query.is_empty()) {
        Vec::new()
    } else {
        merged_queries(at_level.iter().map(|e| e.query.as_slice()))
    };
    if operation.is_write() && !filter.is_empty() {
        return Err(Denied(format!(
            "the scope granting '{}' on {res_type} is limited by a query; writes under such \
             scopes are not supported yet: ask for a scope without a query to write",
            operation.letter()
        )));
    }
    // A search returns (with its includes) only what the caller may search: types reached
    // through a query-limited scope only through their own searches, which apply the query.
    let scope = if operation == Operation::Search {
        scope.with_types(searchable_types(caller).map(|mut types| {
            if !types.iter().any(|t| t == res_type) {
                types.push(res_type.to_string());
            }
            types
        }))
    } else {
        scope
    };
    Ok(Decision { scope, filter })
}

/// Several queries grant the same thing: when they name one parameter each, the same one,
/// their values are ORed (`category=a,b`); otherwise only the first applies, which is
/// narrower than their union and so never widens the grant.
fn merged_queries<'a>(
    queries: impl Iterator<Item = &'a [(String, String)]>,
) -> Vec<(String, String)> {
    let queries: Vec<_> = queries.collect();
    let single_name = queries
        .iter()
        .all(|q| q.len() == 1 && q[0].0 == queries[0][0].0);
    if single_name {
        let values: Vec<&str> = queries.iter().map(|q| q[0].1.as_str()).collect();
        vec![(queries[0][0].0.clone(), values.join(","))]
    } else {
        queries[0].to_vec()
    }
}

/// The types `caller` may search without a query restriction, or `None` for every type.
pub fn searchable_types(caller: &Caller) -> Option<Vec<String>> {
    let searching = caller
        .scopes
        .resources
        .iter()
        .filter(|e| e.permissions.contains(Permissions::SEARCH) && e.query.is_empty());
    let mut types = Vec::new();
    for entry in searching {
        match &entry.resource_type {
            None => return None,
            Some(t) if !types.contains(t) => types.push(t.clone()),
            Some(_) => {}
        }
    }
    Some(types)
}

fn describe(scopes: &Scopes) -> String {
    if scopes.resources.is_empty() {
        "no resource scope".into()
    } else {
        scopes
            .resources
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scopes: &str, patient: Option<&str>) -> Caller {
        Caller {
            client_id: "app".into(),
            subject: "someone".into(),
            fhir_user: None,
            patient: patient.map(str::to_string),
            scopes: Scopes::parse(scopes),
            token_id: "t".into(),
        }
    }

    #[test]
    fn read_does_not_allow_search_nor_write() {
        let c = caller("patient/Observation.r", Some("p1"));
        let read = decide(Some(&c), Operation::Read, "Observation").unwrap();
        assert_eq!(read.scope, AccessScope::patients(vec!["p1".into()]));
        assert!(decide(Some(&c), Operation::Search, "Observation").is_err());
        assert!(decide(Some(&c), Operation::Create, "Observation").is_err());
        assert!(decide(Some(&c), Operation::Read, "Patient").is_err());
    }

    #[test]
    fn patient_scopes_need_a_patient() {
        let c = caller("patient/*.rs", None);
        assert!(decide(Some(&c), Operation::Read, "Observation").is_err());
    }

    #[test]
    fn searches_reach_only_searchable_types() {
        let c = caller("system/Observation.rs system/Patient.r", None);
        let d = decide(Some(&c), Operation::Search, "Observation").unwrap();
        assert_eq!(d.scope.types(), Some(&["Observation".to_string()][..]));
    }

    #[test]
    fn queries_of_one_parameter_are_ored() {
        let c = caller(
            "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs",
            Some("p"),
        );
        let d = decide(Some(&c), Operation::Search, "Observation").unwrap();
        assert_eq!(
            d.filter,
            vec![("category".to_string(), "laboratory,vital-signs".to_string())]
        );
        let c = caller(
            "patient/Observation.rs?category=laboratory patient/Observation.rs",
            Some("p"),
        );
        assert!(decide(Some(&c), Operation::Search, "Observation")
            .unwrap()
            .filter
            .is_empty());
    }

    #[test]
    fn query_limited_scopes_do_not_write() {
        let c = caller("patient/Observation.cruds?category=laboratory", Some("p"));
        assert!(decide(Some(&c), Operation::Create, "Observation").is_err());
    }
}
