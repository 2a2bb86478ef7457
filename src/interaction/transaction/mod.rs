//! Transaction and batch Bundles, whichever door they came through (`POST [base]`, `carnet
//! import`).
//!
//! A transaction runs every entry in one store transaction, in the specification's order
//! (DELETE, POST, PUT/PATCH, GET/HEAD): criteria are resolved under the caller's scope, the
//! ids of new resources chosen, every `fullUrl` and conditional reference mapped to
//! `Type/id` and rewritten in the resources (`fhir::transaction`), and each resource written
//! exactly as a single create or update would write it. The first failing entry rolls
//! everything back and answers with its own status and an OperationOutcome naming it.
//!
//! A batch runs each entry in its own savepoint of one store transaction: an entry that fails
//! undoes only itself and answers in place, in `response.outcome`.
//!
//! [`plan`] does everything that needs no database (envelope, validation, and, when nothing
//! depends on the database, reference rewriting and indexing), so that it can run before the
//! transaction or on another thread; [`Planned::execute`] runs the rest inside a [`Tx`].

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use serde_json::Value;

use super::bundle::{
    response_bundle, search_bundle, written_outcome, ResponseEntry, Return, SearchEntry,
};
use super::criteria::DEFAULT_COUNT;
use super::criteria::{parse_criteria, query_error, several, shape, update_target};
use super::write::{business_rules, create_only_error, stamper, write_error};
use super::write::{check_id, check_type, check_version, derive, patch_preparer, patch_target};
use super::{by_identifier, ApiError, Services};
use crate::access::{self, AccessScope, Caller, Operation};
use crate::fhir::ins::{self, InsReference};
use crate::fhir::outcome::{operation_outcome, Issue};
use crate::fhir::patch::JsonPatch;
use crate::fhir::search::query::{self, Clause, SearchQuery, Summary};
use crate::fhir::search::ParamType;
use crate::fhir::transaction::{
    self as rules, Address, BundleError, Entry, EntryError, Kind, Method, References,
};
use crate::fhir::unique::unique_identifiers;
use crate::fhir::{json, meta, preconditions, served};
use crate::store::search::index::IndexRows;
use crate::store::search::SearchRequest;
use crate::store::transaction::{Resolved, Tx};
use crate::store::{Deletion, Prepared, StoreError, WriteMethod, WriteTarget, Written};

mod execute;
mod order;
mod plan;

use execute::*;
use order::*;
use plan::*;

/// Matches (and included resources) of a search entry: a Bundle of many GET entries must not
/// answer with millions of resources, read while holding the write transaction.
const MAX_SEARCH_COUNT: u32 = 100;

/// What every entry shares from the request.
pub struct Context {
    /// Who sends the Bundle (`None`: an operator, or authorization switched off); each entry
    /// is authorised on its own, after references are resolved.
    pub caller: Option<std::sync::Arc<Caller>>,
    pub prefer: Return,
    /// `Prefer: handling=lenient`: unknown search parameters in criteria are ignored.
    pub lenient: bool,
}

impl Context {
    /// `carnet import` is an operator's: everything.
    pub fn scope_for_import(&self) -> AccessScope {
        AccessScope::everything()
    }

    /// What the caller may touch doing `operation` on `res_type`, for one entry.
    pub fn scope_for(&self, operation: Operation, res_type: &str) -> Result<AccessScope, ApiError> {
        let decision = access::decide(self.caller.as_deref(), operation, res_type)
            .map_err(|access::Denied(message)| ApiError::forbidden(message))?;
        if !decision.filter.is_empty() {
            return Err(ApiError::forbidden(format!(
                "the token reaches {res_type} only through a query-limited scope, which Bundle \
                 entries do not apply yet; use a REST read or search"
            )));
        }
        Ok(decision.scope)
    }
}

/// How many times a Bundle is run when the database gives it up because of concurrent
/// transactions (PostgreSQL's deadlock detection or serialization failures): locks are taken
/// in one global order, so this is rare, and running it again is what the client would do.
const BUNDLE_ATTEMPTS: u32 = 4;

/// Runs a transaction or batch Bundle (its JSON text) in one store transaction; returns the
/// `transaction-response` or `batch-response` Bundle. A run that the database aborted for
/// contention is planned and run again; the last such failure is a 409 `transient`.
pub fn run(state: &Services, context: &Context, bytes: &[u8]) -> Result<String, ApiError> {
    let mut attempt = 1;
    loop {
        let bundle = json::parse_strict(bytes).map_err(ApiError::bad_request)?;
        let mut planned = plan(state, context, bundle, &[])?;
        match state
            .store
            .transaction(|tx| planned.execute(tx, state, context))
        {
            Ok(responses) => {
                if planned.changes_search_params() {
                    state.after_write("SearchParameter", None);
                }
                return Ok(response_bundle(planned.kind.response_type(), &responses));
            }
            Err(e) if e.transient && attempt < BUNDLE_ATTEMPTS => {
                // A little random wait, so that the two parties do not meet again.
                let jitter = uuid::Uuid::new_v4().as_u128() % 20;
                let pause = 5 * u64::from(attempt) + jitter as u64;
                std::thread::sleep(std::time::Duration::from_millis(pause));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A Bundle checked and prepared as far as it can be without the database.
pub struct PlannedBundle {
    kind: Kind,
    /// Transaction: every entry (or the first refused one). Batch: each entry, or its answer.
    entries: PlannedEntries,
    order: Vec<usize>,
}

enum PlannedEntries {
    Transaction {
        planned: Vec<Planned>,
        references: References,
        resolved_up_front: bool,
    },
    Batch {
        responses: Vec<Option<ResponseEntry>>,
        prepared: Vec<Option<(Planned, References, bool)>>,
    },
}

/// Reads a transaction or batch Bundle and prepares its entries: envelope, types, ids,
/// validation, criteria; and, for the entries whose references do not depend on the
/// database, reference rewriting, compartments and index rows. `aliases` are `(fullUrl,
/// Type/id)` of entries left out of the Bundle by the caller (an importer's unserved types):
/// references to them become `Type/id`.
pub fn plan(
    state: &Services,
    context: &Context,
    bundle: Value,
    aliases: &[(String, String)],
) -> Result<PlannedBundle, ApiError> {
    if !bundle.is_object() {
        return Err(ApiError::bad_request(Issue::error(
            "structure",
            "the body must be a JSON object: a Bundle of type transaction or batch",
        )));
    }
    let request = rules::parse_request(bundle, &state.base_url, state.max_bundle_entries).map_err(
        |e| match e {
            BundleError::TooMany(issue) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, issue),
            BundleError::Invalid(issue) => ApiError::bad_request(issue),
        },
    )?;
    let mut declared = References::new();
    for (url, target) in aliases {
        declared.map_full_url(url, target.clone());
    }
    for entry in &request.entries {
        let full_url = match entry {
            Ok(e) => e.full_url.as_deref(),
            Err(e) => e.full_url.as_deref(),
        };
        if let Some(url) = full_url {
            declared.declare(url);
        }
    }
    match request.kind {
        Kind::Transaction => plan_transaction(state, context, request.entries, declared),
        Kind::Batch => Ok(plan_batch(state, context, request.entries, declared)),
    }
}

impl PlannedBundle {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether a SearchParameter is written (the caller then calls
    /// [`Services::after_write`] once the transaction is committed).
    pub fn changes_search_params(&self) -> bool {
        match &self.entries {
            PlannedEntries::Transaction { planned, .. } => {
                planned.iter().any(|p| p.res_type == "SearchParameter")
            }
            PlannedEntries::Batch { prepared, .. } => prepared
                .iter()
                .flatten()
                .any(|(p, _, _)| p.res_type == "SearchParameter"),
        }
    }

    /// The resources this Bundle writes, `(type, id)`, when they are known without the
    /// database: creates at new server ids (none that anyone else could write), updates,
    /// patches and deletions at given ids. `None` when they depend on the database
    /// (criteria, conditional references), when it reads or searches (it must see what was
    /// written before it), or when it writes a SearchParameter (which changes how everything
    /// after it is indexed). A bulk loader runs Bundles with disjoint footprints side by side
    /// and a Bundle without one alone.
    pub fn footprint(&self) -> Option<Vec<(String, String)>> {
        let entries: Vec<&Planned> = match &self.entries {
            PlannedEntries::Transaction {
                planned,
                resolved_up_front,
                ..
            } => {
                if !resolved_up_front {
                    return None;
                }
                planned.iter().collect()
            }
            PlannedEntries::Batch { prepared, .. } => {
                let mut entries = Vec::new();
                for (p, _, up_front) in prepared.iter().flatten() {
                    if !up_front {
                        return None;
                    }
                    entries.push(p);
                }
                entries
            }
        };
        let mut ids = Vec::new();
        for p in entries {
            if p.res_type == "SearchParameter" || p.needs_resolution() {
                return None;
            }
            match &p.op {
                Op::Create { .. } => {}
                Op::Update { target, .. }
                | Op::Patch { target, .. }
                | Op::Delete { target, .. } => match target {
                    Target::Id(id) => ids.push((p.res_type.clone(), id.clone())),
                    Target::Criteria(_) => return None,
                },
                Op::Read { .. } | Op::VRead { .. } | Op::Search { .. } => return None,
            }
        }
        Some(ids)
    }

    /// Runs the Bundle inside `tx`; returns the response entries in Bundle order. A
    /// transaction fails as a whole (the caller's transaction, or the savepoint around this
    /// call, must then be rolled back); a batch answers each entry, each in its own savepoint.
    pub fn execute(
        &mut self,
        tx: &mut Tx<'_>,
        state: &Services,
        context: &Context,
    ) -> Result<Vec<ResponseEntry>, ApiError> {
        let order = &self.order;
        self.lock(tx)?;
        match &mut self.entries {
            PlannedEntries::Transaction {
                planned,
                references,
                resolved_up_front,
            } => execute(
                tx,
                state,
                context,
                planned,
                order,
                references,
                *resolved_up_front,
            )
            .map_err(Failed::into_error),
            PlannedEntries::Batch {
                responses,
                prepared,
            } => {
                for &i in order {
                    let Some((p, mut references, up_front)) = prepared[i].take() else {
                        continue;
                    };
                    let mut one = [p];
                    let result = tx.savepoint(|tx| {
                        execute(
                            tx,
                            state,
                            context,
                            &mut one,
                            &[0],
                            &mut references,
                            up_front,
                        )
                    });
                    responses[i] = Some(match result {
                        Ok(mut r) => r.pop().unwrap_or_default(),
                        Err(failed) => error_entry(failed.into_error()),
                    });
                }
                Ok(std::mem::take(responses).into_iter().flatten().collect())
            }
        }
    }
}

impl PlannedBundle {
    /// Takes, before anything is read or written, the locks of every entry: the advisory
    /// locks of its criteria and of the resources it addresses by id, in the store's one
    /// global order (`Tx::lock`). Two Bundles touching the same resources in opposite orders
    /// then run one after the other instead of deadlocking; a batch takes them for all its
    /// entries at once, outside their savepoints.
    fn lock(&self, tx: &mut Tx<'_>) -> Result<(), ApiError> {
        let planned: Vec<&Planned> = match &self.entries {
            PlannedEntries::Transaction { planned, .. } => planned.iter().collect(),
            PlannedEntries::Batch { prepared, .. } => {
                prepared.iter().flatten().map(|(p, _, _)| p).collect()
            }
        };
        let criteria: Vec<&SearchQuery> = planned.iter().filter_map(|p| p.criteria()).collect();
        let resources: Vec<(&str, &str)> = planned
            .iter()
            .filter(|p| matches!(p.method, Method::Put | Method::Patch | Method::Delete))
            .filter_map(|p| Some((p.res_type.as_str(), p.id.as_deref()?)))
            .collect();
        Ok(tx.lock(&criteria, &resources)?)
    }
}

/// An entry that failed: its position, fullUrl and type, to name it in the answer.
struct Failed {
    entry: Option<(usize, Option<String>, String)>,
    error: ApiError,
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed {
            entry: None,
            error: e.into(),
        }
    }
}

impl Failed {
    fn at(planned: &Planned, error: ApiError) -> Failed {
        Failed {
            entry: Some((
                planned.index,
                planned.full_url.clone(),
                planned.res_type.clone(),
            )),
            error,
        }
    }

    /// The error, its issues naming the entry: diagnostics prefixed with `entry N (fullUrl)`,
    /// expressions moved under `Bundle.entry[N].resource`.
    fn into_error(self) -> ApiError {
        let Some((index, full_url, res_type)) = self.entry else {
            return self.error;
        };
        name_entry(self.error, index, full_url.as_deref(), &res_type)
    }
}

fn name_entry(mut error: ApiError, index: usize, full_url: Option<&str>, ty: &str) -> ApiError {
    let name = match full_url {
        Some(url) => format!("entry {index} ({url})"),
        None => format!("entry {index}"),
    };
    for issue in &mut error.issues {
        issue.diagnostics = format!("{name}: {}", issue.diagnostics);
        let rebased = match issue.expression.as_deref() {
            Some(e) if e.starts_with("Bundle.entry[") => e.to_string(),
            Some(e) if e == ty => format!("Bundle.entry[{index}].resource"),
            Some(e) if e.starts_with(&format!("{ty}.")) => {
                format!("Bundle.entry[{index}].resource{}", &e[ty.len()..])
            }
            Some(e) if e.starts_with("Binary.") => {
                format!("Bundle.entry[{index}].resource{}", &e["Binary".len()..])
            }
            _ => format!("Bundle.entry[{index}]"),
        };
        issue.expression = Some(rebased);
    }
    error
}

/// A refused envelope entry as an error.
fn envelope_error(e: EntryError) -> ApiError {
    let mut issue = e.issue;
    let name = match &e.full_url {
        Some(url) => format!("entry {} ({url})", e.index),
        None => format!("entry {}", e.index),
    };
    issue.diagnostics = format!("{name}: {}", issue.diagnostics);
    ApiError::bad_request(issue)
}

/// The target of a PUT, PATCH or DELETE.
enum Target {
    Id(String),
    Criteria(Box<SearchQuery>),
}

enum Op {
    Create {
        resource: Value,
        if_none_exist: Option<SearchQuery>,
    },
    Update {
        resource: Value,
        target: Target,
        if_match: Option<i64>,
    },
    Patch {
        document: Value,
        target: Target,
        if_match: Option<i64>,
    },
    Delete {
        target: Target,
        if_match: Option<i64>,
    },
    Read {
        if_none_match: Option<String>,
        if_modified_since: Option<String>,
    },
    VRead {
        version: i64,
    },
    Search {
        query: SearchQuery,
    },
}

/// An entry checked and ready to run.
struct Planned {
    index: usize,
    full_url: Option<String>,
    method: Method,
    res_type: String,
    /// The id read or written, once known (chosen up front for creates).
    id: Option<String>,
    /// The write must create (a conditional update at the body's id, `ifNoneMatch: *`).
    must_be_new: bool,
    op: Op,
    /// Conditional references in the resource (or patch) to resolve.
    conditional_references: Vec<String>,
    /// An `ifNoneExist` that matched: nothing is written, this is the answer.
    existing: Option<Existing>,
    /// Compartments and index rows of the resource with its final references.
    derived: Option<(Vec<String>, Arc<IndexRows>)>,
    /// The criteria as written (`ifNoneExist`, or the query of a conditional url).
    criteria_text: Option<String>,
    /// fullUrls of other entries that the criteria name as reference values: replaced by
    /// those entries' `Type/id` before the criteria are resolved.
    placeholders: Vec<String>,
    /// When its criteria are resolved relative to the others': after every entry it names.
    resolve_rank: usize,
    /// A create's body as its first version, rendered with `derived`.
    first_version: Option<meta::FirstVersion>,
    /// Patient references that carry only an INS (`fhir::ins`), and once resolved the
    /// `Patient/id` of each: attached before the references are rewritten.
    ins_references: Vec<InsReference>,
    ins_targets: Vec<String>,
}

struct Existing {
    res_id: String,
    version: i64,
    last_updated: i64,
    body: String,
}

impl Planned {
    fn criteria(&self) -> Option<&SearchQuery> {
        match &self.op {
            Op::Create { if_none_exist, .. } => if_none_exist.as_ref(),
            Op::Update { target, .. } | Op::Patch { target, .. } | Op::Delete { target, .. } => {
                match target {
                    Target::Criteria(c) => Some(c),
                    Target::Id(_) => None,
                }
            }
            _ => None,
        }
    }

    fn set_criteria(&mut self, criteria: SearchQuery) {
        match &mut self.op {
            Op::Create { if_none_exist, .. } => *if_none_exist = Some(criteria),
            Op::Update { target, .. } | Op::Patch { target, .. } | Op::Delete { target, .. } => {
                *target = Target::Criteria(Box::new(criteria))
            }
            _ => {}
        }
    }

    /// The codes of the reference parameters of its criteria.
    fn reference_codes(&self) -> Vec<&str> {
        self.criteria()
            .into_iter()
            .flat_map(|c| &c.clauses)
            .filter_map(|clause| match clause {
                Clause::Match { param, .. } if param.kind == ParamType::Reference => {
                    Some(param.code.as_str())
                }
                _ => None,
            })
            .collect()
    }

    /// Whether the final references or identities of this entry depend on what the
    /// database holds.
    fn needs_resolution(&self) -> bool {
        !self.conditional_references.is_empty()
            || !self.ins_references.is_empty()
            || self.criteria().is_some()
    }

    /// The resource this entry writes, when it writes one (not a patch).
    fn resource(&self) -> Option<&Value> {
        match &self.op {
            Op::Create { resource, .. } | Op::Update { resource, .. } => Some(resource),
            _ => None,
        }
    }
}

/// A batch entry that failed: its status and the OperationOutcome in `response.outcome`.
fn error_entry(error: ApiError) -> ResponseEntry {
    ResponseEntry {
        status: status_text(error.status),
        outcome: Some(operation_outcome(&error.issues).to_string()),
        ..ResponseEntry::default()
    }
}

fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    )
}
