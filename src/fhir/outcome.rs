//! Problems found while handling a request, in the shape of FHIR `OperationOutcome.issue`.
//!
//! Every layer reports problems as [`Issue`]s; only the `http` layer decides which HTTP status
//! they become.

use serde_json::{json, Map, Value};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One entry of an OperationOutcome: what went wrong and, when known, where (`expression`, a
/// FHIRPath such as `Patient.name[0].given[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    /// A code from the FHIR `issue-type` value set: `structure`, `required`, `value`,
    /// `invariant`, `invalid`, `not-found`, `not-supported`, `conflict`, `too-costly`, ...
    pub code: &'static str,
    pub diagnostics: String,
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn warning(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Warning,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn information(code: &'static str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Information,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression = Some(expression.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut issue = Map::new();
        issue.insert("severity".into(), json!(self.severity.as_str()));
        issue.insert("code".into(), json!(self.code));
        issue.insert("diagnostics".into(), json!(self.diagnostics));
        if let Some(expression) = &self.expression {
            issue.insert("expression".into(), json!([expression]));
        }
        Value::Object(issue)
    }
}

/// An `OperationOutcome` resource holding `issues`.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}
