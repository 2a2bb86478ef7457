//! Who may see and write what: the caller's permissions ([`Caller`], its SMART [`Scopes`]),
//! the decision taken for each interaction ([`decide`]), and the [`AccessScope`] that the
//! store applies inside its SQL, so that a narrower scope can never leak through paging,
//! counts, includes or history. The consent engine will narrow the scope further here.

mod caller;
pub mod scopes;

pub use caller::{decide, searchable_types, Caller, Decision, Denied, Operation};
pub use scopes::{Level, Permissions, ScopeEntry, Scopes};

/// The part of the record a request may touch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessScope {
    /// `Some`: only resources in the compartments of these patients (logical ids); resources
    /// outside every patient compartment are out of reach too. `None`: every compartment.
    patients: Option<Vec<String>>,
    /// `Some`: only resources of these types (what the caller may search, for the resources
    /// a search, history or `$everything` returns). `None`: every type.
    types: Option<Vec<String>>,
}

impl AccessScope {
    /// The whole server: an operator, a `system/*` token, or authorization switched off.
    pub fn everything() -> AccessScope {
        AccessScope::default()
    }

    /// Only the compartments of `patients`.
    pub fn patients(patients: Vec<String>) -> AccessScope {
        AccessScope {
            patients: Some(patients),
            types: None,
        }
    }

    /// The same scope, limited to `types` as well (`None` leaves the types as they are).
    pub fn with_types(mut self, types: Option<Vec<String>>) -> AccessScope {
        if types.is_some() {
            self.types = types;
        }
        self
    }

    /// The same compartments, every type.
    pub fn without_types(&self) -> AccessScope {
        AccessScope {
            patients: self.patients.clone(),
            types: None,
        }
    }

    /// The patients whose compartments are reachable, or `None` for every compartment.
    pub fn patient_ids(&self) -> Option<&[String]> {
        self.patients.as_deref()
    }

    /// The types that are reachable, or `None` for every type.
    pub fn types(&self) -> Option<&[String]> {
        self.types.as_deref()
    }

    pub fn allows_type(&self, res_type: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == res_type))
    }

    pub fn is_everything(&self) -> bool {
        self.patients.is_none() && self.types.is_none()
    }

    /// May a resource whose patient compartments are `patients` be written under this scope?
    /// A write must land entirely inside the scope: one foreign patient denies it.
    pub fn permits_write(&self, patients: &[String]) -> bool {
        match &self.patients {
            None => true,
            Some(allowed) => !patients.is_empty() && patients.iter().all(|p| allowed.contains(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_must_stay_inside_the_scope() {
        let scope = AccessScope::patients(vec!["a".into()]);
        assert!(scope.permits_write(&["a".into()]));
        assert!(!scope.permits_write(&["a".into(), "b".into()]));
        assert!(!scope.permits_write(&[]));
        assert!(AccessScope::everything().permits_write(&[]));
    }

    #[test]
    fn types_narrow_the_scope() {
        let scope = AccessScope::everything().with_types(Some(vec!["Observation".into()]));
        assert!(scope.allows_type("Observation"));
        assert!(!scope.allows_type("Patient"));
        assert!(!scope.is_everything());
        assert!(AccessScope::everything().allows_type("Patient"));
    }
}
