//! SMART App Launch scopes (v2 `level/Type.cruds[?query]`, v1 `.read`/`.write`/`.*` mapped to
//! v2): parsed strictly, so that anything malformed or unknown grants nothing.

use std::fmt;

/// Whose data a scope reaches: the patient in context, what the signed-in user may see, or
/// the whole server (backend services).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Patient,
    User,
    System,
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        match text {
            "patient" => Some(Level::Patient),
            "user" => Some(Level::User),
            "system" => Some(Level::System),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "patient",
            Level::User => "user",
            Level::System => "system",
        }
    }
}

/// A subset of `cruds`: create, read, update, delete, search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const CREATE: Permissions = Permissions(1);
    pub const READ: Permissions = Permissions(2);
    pub const UPDATE: Permissions = Permissions(4);
    pub const DELETE: Permissions = Permissions(8);
    pub const SEARCH: Permissions = Permissions(16);
    const LETTERS: [(char, Permissions); 5] = [
        ('c', Permissions::CREATE),
        ('r', Permissions::READ),
        ('u', Permissions::UPDATE),
        ('d', Permissions::DELETE),
        ('s', Permissions::SEARCH),
    ];

    /// v2 letters, in `cruds` order, each at most once; v1 `read`, `write` and `*`.
    fn parse(text: &str) -> Option<Permissions> {
        match text {
            "read" => return Some(Permissions(Self::READ.0 | Self::SEARCH.0)),
            "write" => {
                return Some(Permissions(
                    Self::CREATE.0 | Self::UPDATE.0 | Self::DELETE.0,
                ))
            }
            "*" => return Some(Permissions(31)),
            _ => {}
        }
        let mut bits = 0;
        let mut next = 0;
        for ch in text.chars() {
            let at = Self::LETTERS[next..].iter().position(|(c, _)| *c == ch)?;
            bits |= Self::LETTERS[next + at].1 .0;
            next += at + 1;
        }
        (bits != 0).then_some(Permissions(bits))
    }

    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    fn intersect(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (c, p) in Self::LETTERS {
            if self.contains(p) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    pub level: Level,
    /// `None` for `*`.
    pub resource_type: Option<String>,
    pub permissions: Permissions,
    /// The search parameters of a `?query` suffix, which narrow what the scope reaches.
    pub query: Vec<(String, String)>,
}

impl ScopeEntry {
    fn parse(text: &str) -> Option<ScopeEntry> {
        let (path, query) = match text.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (text, None),
        };
        let (level, rest) = path.split_once('/')?;
        let level = Level::parse(level)?;
        let (resource_type, permissions) = rest.split_once('.')?;
        let resource_type = match resource_type {
            "*" => None,
            t if is_type_name(t) => Some(t.to_string()),
            _ => return None,
        };
        let permissions = Permissions::parse(permissions)?;
        let query = match query {
            None => Vec::new(),
            Some(q) => {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).ok()?;
                if pairs.is_empty() || pairs.iter().any(|(k, v)| k.is_empty() || v.is_empty()) {
                    return None;
                }
                pairs
            }
        };
        Some(ScopeEntry {
            level,
            resource_type,
            permissions,
            query,
        })
    }

    /// Whether this scope grants `wanted` on `res_type`.
    pub fn grants(&self, res_type: &str, wanted: Permissions) -> bool {
        self.permissions.contains(wanted)
            && self.resource_type.as_deref().is_none_or(|t| t == res_type)
    }

    /// What `self` (asked for) and `allowed` grant together, if anything.
    fn intersect(&self, allowed: &ScopeEntry) -> Option<ScopeEntry> {
        if self.level != allowed.level {
            return None;
        }
        let resource_type = match (&self.resource_type, &allowed.resource_type) {
            (Some(a), Some(b)) if a != b => return None,
            (Some(t), _) | (None, Some(t)) => Some(t.clone()),
            (None, None) => None,
        };
        let permissions = self.permissions.intersect(allowed.permissions);
        if permissions.is_empty() {
            return None;
        }
        // Both queries must hold: their parameters are ANDed.
        let mut query = self.query.clone();
        for pair in &allowed.query {
            if !query.contains(pair) {
                query.push(pair.clone());
            }
        }
        Some(ScopeEntry {
            level: self.level,
            resource_type,
            permissions,
            query,
        })
    }
}

impl fmt::Display for ScopeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.{}",
            self.level.as_str(),
            self.resource_type.as_deref().unwrap_or("*"),
            self.permissions
        )?;
        if !self.query.is_empty() {
            let query = serde_urlencoded::to_string(&self.query).map_err(|_| fmt::Error)?;
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

fn is_type_name(t: &str) -> bool {
    t.starts_with(|c: char| c.is_ascii_uppercase()) && t.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The scopes other than resource scopes that the server understands.
const KNOWN_SCOPES: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
];

/// A set of scopes: resource scopes, and the others the server knows (`openid`,
/// `launch/patient`...). Anything else is dropped: an unknown scope grants nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes {
    pub resources: Vec<ScopeEntry>,
    pub others: Vec<String>,
}

impl Scopes {
    /// Parses a space-separated scope string; what is not understood is ignored.
    pub fn parse(text: &str) -> Scopes {
        let mut scopes = Scopes::default();
        for word in text.split_ascii_whitespace() {
            if let Some(entry) = ScopeEntry::parse(word) {
                if !scopes.resources.contains(&entry) {
                    scopes.resources.push(entry);
                }
            } else if KNOWN_SCOPES.contains(&word) && !scopes.others.iter().any(|o| o == word) {
                scopes.others.push(word.to_string());
            }
        }
        scopes
    }

    pub fn has(&self, other: &str) -> bool {
        self.others.iter().any(|o| o == other)
    }

    /// What of `self` (asked for) `allowed` (a client's registration) lets through: never
    /// more than either.
    pub fn within(&self, allowed: &Scopes) -> Scopes {
        let mut granted = Scopes::default();
        for asked in &self.resources {
            for permitted in &allowed.resources {
                if let Some(entry) = asked.intersect(permitted) {
                    if !granted.resources.contains(&entry) {
                        granted.resources.push(entry);
                    }
                }
            }
        }
        granted.others = self
            .others
            .iter()
            .filter(|o| allowed.has(o))
            .cloned()
            .collect();
        granted
    }

    /// Whether any resource scope is at `level`.
    pub fn has_level(&self, level: Level) -> bool {
        self.resources.iter().any(|e| e.level == level)
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.others.is_empty()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = self
            .others
            .iter()
            .map(|o| o.to_string())
            .chain(self.resources.iter().map(|e| e.to_string()));
        for (i, word) in words.enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&word)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_letters_must_be_in_order_and_once() {
        assert!(ScopeEntry::parse("patient/Observation.rs").is_some());
        assert!(ScopeEntry::parse("patient/Observation.cruds").is_some());
        assert!(ScopeEntry::parse("patient/Observation.sr").is_none());
        assert!(ScopeEntry::parse("patient/Observation.rr").is_none());
        assert!(ScopeEntry::parse("patient/Observation.").is_none());
        assert!(ScopeEntry::parse("patient/Observation.x").is_none());
        assert!(ScopeEntry::parse("nobody/Observation.r").is_none());
        assert!(ScopeEntry::parse("patient/observation.r").is_none());
    }

    #[test]
    fn v1_scopes_map_to_v2() {
        let read = ScopeEntry::parse("user/Patient.read").unwrap();
        assert_eq!(read.to_string(), "user/Patient.rs");
        let write = ScopeEntry::parse("system/*.write").unwrap();
        assert_eq!(write.to_string(), "system/*.cud");
        assert_eq!(
            ScopeEntry::parse("system/*.*").unwrap().to_string(),
            "system/*.cruds"
        );
    }

    #[test]
    fn query_suffixes_are_kept() {
        let e = ScopeEntry::parse(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
        )
        .unwrap();
        assert_eq!(e.query.len(), 1);
        assert_eq!(e.query[0].0, "category");
        assert!(ScopeEntry::parse("patient/Observation.rs?").is_none());
    }

    #[test]
    fn unknown_scopes_grant_nothing() {
        let s = Scopes::parse("openid banana patient/Observation.rs admin launch/patient");
        assert_eq!(
            s.to_string(),
            "openid launch/patient patient/Observation.rs"
        );
    }

    #[test]
    fn a_grant_is_never_wider_than_what_was_asked_or_allowed() {
        let allowed = Scopes::parse("openid system/Observation.rs system/Patient.cruds");
        let asked = Scopes::parse("openid fhirUser system/*.cruds patient/*.rs");
        assert_eq!(
            asked.within(&allowed).to_string(),
            "openid system/Observation.rs system/Patient.cruds"
        );
        let asked = Scopes::parse("system/Patient.r");
        assert_eq!(asked.within(&allowed).to_string(), "system/Patient.r");
    }
}
