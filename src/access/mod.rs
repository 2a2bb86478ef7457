//! Who may see and write what. Today every caller sees everything; the consent engine will
//! narrow [`AccessScope`] per request. The store applies a scope inside its SQL, so a narrower
//! scope can never leak through paging, counts or history.

/// The part of the record a request may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessScope {
    /// The whole server (no authorization configured yet, or an operator).
    Everything,
    /// Only resources in the compartments of these patients (logical ids); resources outside
    /// every patient compartment are out of reach too.
    Patients(Vec<String>),
}

impl AccessScope {
    /// May a resource whose patient compartments are `patients` be written under this scope?
    /// A write must land entirely inside the scope: one foreign patient denies it.
    pub fn permits_write(&self, patients: &[String]) -> bool {
        match self {
            AccessScope::Everything => true,
            AccessScope::Patients(allowed) => {
                !patients.is_empty() && patients.iter().all(|p| allowed.contains(p))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_must_stay_inside_the_scope() {
        let scope = AccessScope::Patients(vec!["a".into()]);
        assert!(scope.permits_write(&["a".into()]));
        assert!(!scope.permits_write(&["a".into(), "b".into()]));
        assert!(!scope.permits_write(&[]));
        assert!(AccessScope::Everything.permits_write(&[]));
    }
}
