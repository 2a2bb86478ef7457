//! Which request preconditions mean something on which interaction. One table serves the
//! REST headers (`If-Match`, `If-None-Match`, `If-None-Exist`) and the `request` elements of
//! Bundle entries (`ifMatch`, `ifNoneMatch`, `ifNoneExist`), so that both doors refuse the
//! same nonsense instead of silently ignoring a condition the client believes holds (an
//! `If-Match` on a create would otherwise "succeed" without checking anything).
//!
//! `If-Modified-Since` is left out: HTTP (RFC 9110, 13.1.3) says to ignore it on anything but
//! GET and HEAD, and this server does. `If-Match` on GET and HEAD is left alone too: FHIR
//! gives it no meaning there.

use super::outcome::Issue;
use super::transaction::Method;

/// A request precondition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    IfMatch,
    IfNoneMatch,
    IfNoneExist,
}

impl Precondition {
    pub const ALL: [Precondition; 3] = [
        Precondition::IfMatch,
        Precondition::IfNoneMatch,
        Precondition::IfNoneExist,
    ];

    /// Its HTTP header.
    pub fn header(self) -> &'static str {
        match self {
            Precondition::IfMatch => "If-Match",
            Precondition::IfNoneMatch => "If-None-Match",
            Precondition::IfNoneExist => "If-None-Exist",
        }
    }

    /// Its element in `Bundle.entry.request`.
    pub fn element(self) -> &'static str {
        match self {
            Precondition::IfMatch => "ifMatch",
            Precondition::IfNoneMatch => "ifNoneMatch",
            Precondition::IfNoneExist => "ifNoneExist",
        }
    }
}

/// Refuses `precondition` (with `value`) on `method` when it means nothing there; `name` is
/// how the caller names it (a header or an element). The issue has no expression: the caller
/// knows where the precondition was.
pub fn check(
    method: Method,
    precondition: Precondition,
    value: &str,
    name: &str,
) -> Result<(), Issue> {
    let refused = |why: &str| Err(Issue::error("invalid", format!("{name} {why}")));
    match (precondition, method) {
        (Precondition::IfMatch, Method::Post) => refused(
            "on a create: it checks the version of an existing resource (PUT, PATCH, DELETE); \
             use ifNoneExist for a conditional create",
        ),
        (Precondition::IfMatch, _) => Ok(()),
        (Precondition::IfNoneMatch, Method::Get | Method::Head) => Ok(()),
        (Precondition::IfNoneMatch, Method::Put) if value.trim() == "*" => Ok(()),
        (Precondition::IfNoneMatch, Method::Put) => Err(Issue::error(
            "not-supported",
            format!("{name} {value:?} on an update: only \"*\" (create only) is supported"),
        )),
        (Precondition::IfNoneMatch, _) => refused(
            "applies to reads (GET, HEAD: 304 Not Modified) and to updates (PUT, \"*\": create \
             only); it means nothing on a create, patch or delete",
        ),
        (Precondition::IfNoneExist, Method::Post) => Ok(()),
        (Precondition::IfNoneExist, _) => refused("is only meaningful on a create (POST)"),
    }
}

/// Whether an update with this `If-None-Match` (checked) must create.
pub fn create_only(if_none_match: Option<&str>) -> bool {
    if_none_match.is_some_and(|v| v.trim() == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use Method::*;
        use Precondition::*;
        let ok = |m, p, v| check(m, p, v, "x").is_ok();
        assert!(!ok(Post, IfMatch, "W/\"1\""));
        assert!(ok(Put, IfMatch, "W/\"1\""));
        assert!(ok(Patch, IfMatch, "W/\"1\""));
        assert!(ok(Delete, IfMatch, "W/\"1\""));
        for m in [Post, Patch, Delete] {
            assert!(!ok(m, IfNoneMatch, "*"));
        }
        assert!(ok(Put, IfNoneMatch, "*"));
        assert!(!ok(Put, IfNoneMatch, "W/\"1\""));
        assert!(ok(Get, IfNoneMatch, "W/\"1\""));
        assert!(ok(Post, IfNoneExist, "identifier=a|b"));
        assert!(!ok(Put, IfNoneExist, "identifier=a|b"));
        assert!(create_only(Some(" * ")));
        assert!(!create_only(None));
    }
}
