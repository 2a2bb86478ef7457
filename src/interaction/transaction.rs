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

use super::bundle::{response_bundle, search_bundle, ResponseEntry, Return, SearchEntry};
use super::criteria::DEFAULT_COUNT;
use super::criteria::{parse_criteria, query_error, several, shape, update_target};
use super::write::{check_id, check_type, check_version, derive, patch_preparer, patch_target};
use super::write::{create_only_error, stamper, write_error};
use super::{ApiError, Services};
use crate::access::AccessScope;
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

/// Matches (and included resources) of a search entry: a Bundle of many GET entries must not
/// answer with millions of resources, read while holding the write transaction.
const MAX_SEARCH_COUNT: u32 = 100;

/// What every entry shares from the request.
pub struct Context {
    pub scope: AccessScope,
    pub prefer: Return,
    /// `Prefer: handling=lenient`: unknown search parameters in criteria are ignored.
    pub lenient: bool,
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
        !self.conditional_references.is_empty() || self.criteria().is_some()
    }
}

/// Checks an entry as the single interaction would (type, id, validation, criteria) without
/// touching the database.
fn plan_entry(state: &Services, entry: Entry, lenient: bool) -> Result<Planned, ApiError> {
    let res_type = entry.address.res_type().to_string();
    check_type(&res_type)?;
    let criteria = |text: &str, what: &str| parse_criteria(state, &res_type, text, what, lenient);
    let target = |what: &str| -> Result<Target, ApiError> {
        match &entry.address {
            Address::Instance(_, id) => {
                check_id(id)?;
                Ok(Target::Id(id.clone()))
            }
            Address::Search(_, q) => Ok(Target::Criteria(Box::new(criteria(q, what)?))),
            _ => Err(ApiError::bad_request(Issue::error(
                "value",
                format!("{what} addresses Type/id or Type?criteria"),
            ))),
        }
    };
    let validated = |resource: &Value| -> Result<(), ApiError> {
        let issues = super::write::validate(state, resource);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ApiError::with_issues(StatusCode::BAD_REQUEST, issues))
        }
    };
    let mut id = None;
    let mut must_be_new = false;
    let criteria_text = match (&entry.if_none_exist, &entry.address) {
        (Some(text), _) => Some(text.clone()),
        (None, Address::Search(_, q)) if entry.method.is_write() => Some(q.clone()),
        _ => None,
    };
    let mut resource = entry.resource;
    let op = match entry.method {
        Method::Post => {
            let resource = resource.take().unwrap_or_default();
            validated(&resource)?;
            let if_none_exist = match &entry.if_none_exist {
                Some(text) => Some(criteria(text, "ifNoneExist")?),
                None => {
                    id = Some(uuid::Uuid::new_v4().to_string());
                    None
                }
            };
            Op::Create {
                resource,
                if_none_exist,
            }
        }
        Method::Put => {
            let resource = resource.take().unwrap_or_default();
            let target = target("a PUT entry")?;
            let body_id = resource.get("id").and_then(Value::as_str);
            if let Target::Id(url_id) = &target {
                match body_id {
                    Some(b) if b == url_id => {}
                    Some(b) => {
                        return Err(ApiError::bad_request(
                            Issue::error(
                                "invalid",
                                format!("the resource has id {b:?} but the url says {url_id:?}"),
                            )
                            .at(format!("{res_type}.id")),
                        ))
                    }
                    None => {
                        return Err(ApiError::bad_request(
                            Issue::error(
                                "required",
                                format!("an update must carry the id of the url ({url_id:?})"),
                            )
                            .at(format!("{res_type}.id")),
                        ))
                    }
                }
                id = Some(url_id.clone());
            }
            // Checked by the envelope: `*` or nothing.
            must_be_new = preconditions::create_only(entry.if_none_match.as_deref());
            validated(&resource)?;
            Op::Update {
                resource,
                target,
                if_match: entry.if_match,
            }
        }
        Method::Patch => {
            let binary = resource.take().unwrap_or_default();
            let document = rules::patch_document(&binary).map_err(ApiError::bad_request)?;
            JsonPatch::parse(document.clone()).map_err(ApiError::bad_request)?;
            let target = target("a PATCH entry")?;
            if let Target::Id(i) = &target {
                id = Some(i.clone());
            }
            Op::Patch {
                document,
                target,
                if_match: entry.if_match,
            }
        }
        Method::Delete => {
            let target = target("a DELETE entry")?;
            if let Target::Id(i) = &target {
                id = Some(i.clone());
            }
            Op::Delete {
                target,
                if_match: entry.if_match,
            }
        }
        Method::Get | Method::Head => match &entry.address {
            Address::Instance(_, i) => {
                check_id(i)?;
                id = Some(i.clone());
                Op::Read {
                    if_none_match: entry.if_none_match.clone(),
                    if_modified_since: entry.if_modified_since.clone(),
                }
            }
            Address::Version(_, i, v) => {
                check_id(i)?;
                id = Some(i.clone());
                Op::VRead {
                    version: check_version(v)?,
                }
            }
            Address::Type(_) | Address::Search(..) => {
                let text = match &entry.address {
                    Address::Search(_, q) => q.as_str(),
                    _ => "",
                };
                let pairs: Vec<(String, String)> =
                    serde_urlencoded::from_str(text).map_err(|e| {
                        ApiError::bad_request(Issue::error(
                            "invalid",
                            format!("malformed query string: {e}"),
                        ))
                    })?;
                let mut query = query::parse(
                    &state.search.current(),
                    &[res_type.as_str()],
                    &pairs,
                    &state.base_url,
                    lenient,
                )
                .map_err(query_error)?;
                if query.cursor.is_some() {
                    return Err(ApiError::bad_request(Issue::error(
                        "not-supported",
                        "_cursor: paging is not available inside a bundle; page with GET",
                    )));
                }
                query.types = vec![res_type.clone()];
                Op::Search { query }
            }
        },
    };
    let conditional_references = match &op {
        Op::Create { resource, .. } | Op::Update { resource, .. } => {
            rules::conditional_references(resource)
        }
        Op::Patch { document, .. } => rules::conditional_references(document),
        _ => Vec::new(),
    };
    if conditional_references.len() > state.max_bundle_entries {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Issue::error(
                "too-costly",
                format!(
                    "{} distinct conditional references in one resource; at most {}",
                    conditional_references.len(),
                    state.max_bundle_entries
                ),
            ),
        ));
    }
    Ok(Planned {
        index: entry.index,
        full_url: entry.full_url,
        method: entry.method,
        res_type,
        id,
        must_be_new,
        op,
        conditional_references,
        existing: None,
        derived: None,
        criteria_text,
        placeholders: Vec::new(),
        resolve_rank: 0,
        first_version: None,
    })
}

/// Refuses two write entries with the same conditional criteria (their outcomes would depend
/// on each other).
fn check_duplicate_criteria(planned: &[Planned]) -> Result<(), ApiError> {
    let mut seen: HashMap<(String, Vec<(String, String)>), usize> = HashMap::new();
    for p in planned {
        let Some(criteria) = p.criteria() else {
            continue;
        };
        let mut applied = criteria.applied.clone();
        applied.sort();
        if let Some(first) = seen.insert((p.res_type.clone(), applied), p.index) {
            return Err(ApiError::bad_request(
                Issue::error(
                    "invalid",
                    format!(
                        "entries {first} and {} have the same conditional criteria on {}: \
                         a transaction may act on a resource once",
                        p.index, p.res_type
                    ),
                )
                .at(format!("Bundle.entry[{}].request", p.index)),
            ));
        }
    }
    Ok(())
}

fn plan_transaction(
    state: &Services,
    context: &Context,
    entries: Vec<Result<Entry, EntryError>>,
    declared: References,
) -> Result<PlannedBundle, ApiError> {
    let mut planned = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = entry.map_err(envelope_error)?;
        let (index, full_url) = (entry.index, entry.full_url.clone());
        let ty = entry.address.res_type().to_string();
        planned.push(
            plan_entry(state, entry, context.lenient)
                .map_err(|e| name_entry(e, index, full_url.as_deref(), &ty))?,
        );
    }
    check_duplicate_criteria(&planned)?;
    for p in &mut planned {
        p.placeholders = find_placeholders(p, &declared)
            .map_err(|e| name_entry(e, p.index, p.full_url.as_deref(), &p.res_type))?;
    }
    rank_resolution(&mut planned)?;
    // Each conditional reference is a search inside the transaction: as many as entries.
    let searches: usize = planned.iter().map(|p| p.conditional_references.len()).sum();
    if searches > state.max_bundle_entries {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Issue::error(
                "too-costly",
                format!(
                    "the Bundle holds {searches} distinct conditional references; at most {} \
                     (the entry limit) are resolved in one transaction",
                    state.max_bundle_entries
                ),
            ),
        ));
    }
    let methods: Vec<Method> = planned.iter().map(|p| p.method).collect();
    let order = rules::processing_order(&methods);
    let mut references = declared;
    // Without conditional parts every reference is known now: rewrite and index before the
    // transaction, so that the database (and SQLite's one writer) waits for none of it.
    let resolved_up_front = !planned.iter().any(Planned::needs_resolution);
    if resolved_up_front {
        map_and_rewrite(state, &mut planned, &mut references).map_err(Failed::into_error)?;
    }
    Ok(PlannedBundle {
        kind: Kind::Transaction,
        entries: PlannedEntries::Transaction {
            planned,
            references,
            resolved_up_front,
        },
        order,
    })
}

fn plan_batch(
    state: &Services,
    context: &Context,
    entries: Vec<Result<Entry, EntryError>>,
    declared: References,
) -> PlannedBundle {
    let count = entries.len();
    let mut responses: Vec<Option<ResponseEntry>> = (0..count).map(|_| None).collect();
    let mut planned: Vec<Option<Planned>> = Vec::with_capacity(count);
    let mut methods = Vec::with_capacity(count);
    for entry in entries {
        match entry {
            Err(e) => {
                let index = e.index;
                responses[index] = Some(error_entry(envelope_error(e)));
                planned.push(None);
                methods.push(Method::Get);
            }
            Ok(entry) => {
                let (index, full_url) = (entry.index, entry.full_url.clone());
                let ty = entry.address.res_type().to_string();
                methods.push(entry.method);
                match plan_entry(state, entry, context.lenient) {
                    Ok(p) => planned.push(Some(p)),
                    Err(e) => {
                        responses[index] =
                            Some(error_entry(name_entry(e, index, full_url.as_deref(), &ty)));
                        planned.push(None);
                    }
                }
            }
        }
    }
    let order = rules::processing_order(&methods);
    // Entries without conditional parts are rewritten and indexed before the transaction.
    let mut prepared: Vec<Option<(Planned, References, bool)>> = Vec::with_capacity(count);
    for (i, p) in planned.into_iter().enumerate() {
        let Some(mut p) = p else {
            prepared.push(None);
            continue;
        };
        let named = find_placeholders(&p, &declared);
        if let Some(error) = match named {
            Ok(urls) if urls.is_empty() => None,
            Ok(urls) => Some(ApiError::bad_request(Issue::error(
                "invalid",
                format!(
                    "the criteria name {}, the fullUrl of another entry: entries of a batch \
                     are independent and may not refer to each other",
                    urls.join(", ")
                ),
            ))),
            Err(e) => Some(e),
        } {
            let error = name_entry(error, p.index, p.full_url.as_deref(), &p.res_type);
            responses[i] = Some(error_entry(error));
            prepared.push(None);
            continue;
        }
        let mut references = declared.clone();
        let up_front = !p.needs_resolution();
        if up_front {
            if let Err(failed) =
                map_and_rewrite(state, std::slice::from_mut(&mut p), &mut references)
            {
                responses[i] = Some(error_entry(failed.into_error()));
                prepared.push(None);
                continue;
            }
        }
        prepared.push(Some((p, references, up_front)));
    }
    PlannedBundle {
        kind: Kind::Batch,
        entries: PlannedEntries::Batch {
            responses,
            prepared,
        },
        order,
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

/// The fullUrls of the Bundle that `p`'s criteria name as values of reference parameters
/// (`ifNoneExist: subject=urn:uuid:...`). A `urn:uuid:` that no entry declares is refused, as
/// in references: no stored reference can hold one.
fn find_placeholders(p: &Planned, declared: &References) -> Result<Vec<String>, ApiError> {
    let mut out: Vec<String> = Vec::new();
    for clause in p.criteria().into_iter().flat_map(|c| &c.clauses) {
        let Clause::Match { param, values, .. } = clause else {
            continue;
        };
        if param.kind != ParamType::Reference {
            continue;
        }
        for value in values {
            let query::Value::ReferenceUrl(url) = value else {
                continue;
            };
            if declared.is_declared(url) {
                if !out.contains(url) {
                    out.push(url.clone());
                }
            } else if url.starts_with("urn:uuid:") {
                return Err(ApiError::bad_request(
                    Issue::error(
                        "not-found",
                        format!(
                            "the criteria name {url}, which no entry of the Bundle declares \
                             as its fullUrl"
                        ),
                    )
                    .at(format!("Bundle.entry[{}].request", p.index)),
                ));
            }
        }
    }
    Ok(out)
}

/// Orders the resolution of criteria: an entry whose criteria name the fullUrl of an entry
/// that has criteria of its own (its identity comes from a search) is resolved after it.
/// Entries whose identity is known up front (a create, an update or delete by id) need no
/// order. A cycle (criteria naming each other, or their own entry) has no order: 400 naming
/// its entries. A conditional delete runs before everything else, so its criteria may only
/// name entries known up front.
fn rank_resolution(planned: &mut [Planned]) -> Result<(), ApiError> {
    let by_url: HashMap<&str, usize> = planned
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((p.full_url.as_deref()?, i)))
        .collect();
    let name = |p: &Planned| match &p.full_url {
        Some(url) => format!("entry {} ({url})", p.index),
        None => format!("entry {}", p.index),
    };
    let refuse = |p: &Planned, message: String| {
        ApiError::bad_request(
            Issue::error("invalid", format!("{}: {message}", name(p)))
                .at(format!("Bundle.entry[{}].request", p.index)),
        )
    };
    let mut depends: Vec<Vec<usize>> = vec![Vec::new(); planned.len()];
    for (i, p) in planned.iter().enumerate() {
        for url in &p.placeholders {
            // Not an entry: an alias the caller mapped already.
            let Some(&j) = by_url.get(url.as_str()) else {
                continue;
            };
            let named = &planned[j];
            if !named.method.is_write() {
                return Err(refuse(
                    p,
                    format!(
                        "the criteria name {url}, the fullUrl of a {} entry, which has no \
                         identity: name a writing entry",
                        format!("{:?}", named.method).to_uppercase()
                    ),
                ));
            }
            if named.criteria().is_none() {
                continue;
            }
            if p.method == Method::Delete {
                return Err(refuse(
                    p,
                    format!(
                        "a conditional delete is resolved before the other entries, so its \
                         criteria cannot name {url}, whose identity comes from its own criteria"
                    ),
                ));
            }
            depends[i].push(j);
        }
    }
    // Depth-first, ranks from the leaves; the path being explored finds a cycle.
    fn visit(
        i: usize,
        depends: &[Vec<usize>],
        ranks: &mut [Option<usize>],
        path: &mut Vec<usize>,
    ) -> Result<usize, Vec<usize>> {
        if let Some(rank) = ranks[i] {
            return Ok(rank);
        }
        if let Some(at) = path.iter().position(|&k| k == i) {
            return Err(path[at..].to_vec());
        }
        path.push(i);
        let mut rank = 0;
        for &j in &depends[i] {
            rank = rank.max(visit(j, depends, ranks, path)? + 1);
        }
        path.pop();
        ranks[i] = Some(rank);
        Ok(rank)
    }
    let mut ranks = vec![None; planned.len()];
    for i in 0..planned.len() {
        if let Err(cycle) = visit(i, &depends, &mut ranks, &mut Vec::new()) {
            let names: Vec<String> = cycle.iter().map(|&k| name(&planned[k])).collect();
            let first = &planned[cycle[0]];
            let message = if cycle.len() == 1 {
                format!(
                    "{}: its criteria name its own fullUrl: the entry's identity would depend \
                     on itself",
                    names[0]
                )
            } else {
                format!(
                    "{} -> {}: the criteria of each name the fullUrl of the next, so none can be \
                     resolved first; resolve one of them by a business identifier instead",
                    names.join(" -> "),
                    names[0]
                )
            };
            return Err(ApiError::bad_request(
                Issue::error("invalid", message)
                    .at(format!("Bundle.entry[{}].request", first.index)),
            ));
        }
    }
    for (p, rank) in planned.iter_mut().zip(ranks) {
        p.resolve_rank = rank.unwrap_or(0);
    }
    Ok(())
}

/// Replaces, in the criteria of `planned[i]`, the fullUrls it names by the `Type/id` those
/// entries now have, and parses them again. Runs once the entries it names are resolved.
fn resolve_placeholders(
    state: &Services,
    context: &Context,
    planned: &mut [Planned],
    i: usize,
    references: &References,
) -> Result<(), Failed> {
    let p = &planned[i];
    let Some(text) = p
        .criteria_text
        .as_deref()
        .filter(|_| !p.placeholders.is_empty())
    else {
        return Ok(());
    };
    let mut targets = HashMap::new();
    for url in &p.placeholders {
        let entry = planned
            .iter()
            .find(|q| q.full_url.as_deref() == Some(url.as_str()));
        let target = match entry {
            Some(q) => q
                .existing
                .as_ref()
                .map(|e| &e.res_id)
                .or(q.id.as_ref())
                .map(|id| format!("{}/{id}", q.res_type)),
            None => references.target(url).map(String::from),
        };
        // A conditional delete that matched nothing has no identity: nothing can match it.
        if let Some(target) = target {
            targets.insert(url.clone(), target);
        }
    }
    let codes = p.reference_codes();
    let text = rules::substitute_placeholders(&p.res_type, text, &codes, &targets)
        .map_err(|m| Failed::at(p, ApiError::bad_request(Issue::error("invalid", m))))?;
    let criteria = parse_criteria(state, &p.res_type, &text, "criteria", context.lenient)
        .map_err(|e| Failed::at(p, e))?;
    planned[i].set_criteria(criteria);
    Ok(())
}

/// Maps every writing entry's fullUrl to its `Type/id`, checks that no two entries act on
/// the same resource (an `ifNoneExist` that matched acts on the resource it matched, as the
/// specification counts resolved identities), then rewrites the references of every resource
/// and computes what its write stores besides the body.
fn map_and_rewrite(
    state: &Services,
    planned: &mut [Planned],
    references: &mut References,
) -> Result<(), Failed> {
    let mut touched = Vec::new();
    for p in planned.iter() {
        if !p.method.is_write() {
            continue;
        }
        let id = match (&p.existing, &p.id) {
            (Some(existing), _) => &existing.res_id,
            (None, Some(id)) => id,
            // A conditional delete that matched nothing writes nothing.
            (None, None) => continue,
        };
        let identity = format!("{}/{id}", p.res_type);
        if let Some(url) = &p.full_url {
            references.map_full_url(url, identity.clone());
        }
        touched.push((p.index, identity));
    }
    if let Some((first, second, identity)) =
        rules::first_overlap(touched.iter().map(|(i, id)| (*i, id.as_str())))
    {
        let name = |index: usize| {
            let p = planned.iter().find(|p| p.index == index);
            let what = match p {
                Some(p) if p.existing.is_some() => " (its ifNoneExist matched it)",
                Some(p) if p.criteria().is_some() => " (its criteria matched it)",
                _ => "",
            };
            match p.and_then(|p| p.full_url.as_deref()) {
                Some(url) => format!("entry {index} ({url}){what}"),
                None => format!("entry {index}{what}"),
            }
        };
        return Err(Failed {
            entry: None,
            error: ApiError::bad_request(
                Issue::error(
                    "invalid",
                    format!(
                        "{} and {} both act on {identity}: a transaction may act on a \
                         resource once",
                        name(first),
                        name(second)
                    ),
                )
                .at(format!("Bundle.entry[{second}]")),
            ),
        });
    }
    for p in planned.iter_mut() {
        let full_url = p.full_url.clone();
        let is_create = matches!(p.op, Op::Create { .. }) && p.existing.is_none();
        let (value, derive_id, is_patch) = match &mut p.op {
            Op::Create { resource, .. } if p.existing.is_none() => (resource, p.id.clone(), false),
            Op::Update { resource, .. } => (resource, p.id.clone(), false),
            Op::Patch { document, .. } => (document, None, true),
            _ => continue,
        };
        let failed = |e: ApiError| Failed {
            entry: Some((p.index, full_url.clone(), p.res_type.clone())),
            error: e,
        };
        let rewritten = if is_patch {
            references.rewrite_patch(value, full_url.as_deref(), &state.base_url)
        } else {
            references.rewrite(value, full_url.as_deref(), &state.base_url)
        };
        rewritten.map_err(|issue| failed(ApiError::bad_request(issue)))?;
        if let Some(id) = derive_id {
            p.derived = Some(derive(state, value, &id).map_err(failed)?);
            if is_create {
                p.first_version = meta::FirstVersion::render(value, &id);
            }
        }
    }
    Ok(())
}

/// Runs `planned` (in `order`) inside `tx`; returns the response entries in Bundle order.
fn execute(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    planned: &mut [Planned],
    order: &[usize],
    references: &mut References,
    resolved_up_front: bool,
) -> Result<Vec<ResponseEntry>, Failed> {
    let scope = &context.scope;
    let mut responses: Vec<Option<ResponseEntry>> = (0..planned.len()).map(|_| None).collect();

    // Deletions first.
    for &i in order {
        if !matches!(planned[i].op, Op::Delete { .. }) {
            continue;
        }
        resolve_placeholders(state, context, planned, i, references)?;
        let p = &mut planned[i];
        let Op::Delete { target, if_match } = &p.op else {
            continue;
        };
        let if_match = *if_match;
        let id = match target {
            Target::Id(id) => Some(id.clone()),
            Target::Criteria(c) => {
                match tx.resolve(scope, c).map_err(|e| Failed::at(p, e.into()))? {
                    Resolved::None => None,
                    Resolved::Many => return Err(Failed::at(p, several("conditional delete"))),
                    Resolved::One { res_id, .. } => Some(res_id),
                }
            }
        };
        let response = match &id {
            None => ResponseEntry {
                status: status_text(StatusCode::NO_CONTENT),
                ..ResponseEntry::default()
            },
            Some(id) => match tx
                .delete(scope, &p.res_type, id, if_match)
                .map_err(|e| Failed::at(p, e.into()))?
            {
                Deletion::Deleted {
                    version,
                    last_updated,
                } => ResponseEntry {
                    status: status_text(StatusCode::NO_CONTENT),
                    version: Some(version),
                    last_modified: Some(last_updated),
                    ..ResponseEntry::default()
                },
                Deletion::AlreadyDeleted => ResponseEntry {
                    status: status_text(StatusCode::NO_CONTENT),
                    ..ResponseEntry::default()
                },
                Deletion::NotFound => {
                    let message = format!("{}/{id} does not exist", p.res_type);
                    return Err(Failed::at(p, ApiError::not_found(message)));
                }
            },
        };
        p.id = id;
        responses[i] = Some(response);
    }

    // Then what the writes' targets and references depend on.
    if !resolved_up_front {
        resolve(tx, state, context, planned, references)?;
        map_and_rewrite(state, planned, references)?;
    }

    // New resources at server-chosen ids, all at once; then the other writes in order, then
    // reads, which see them.
    let creates: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| planned[i].existing.is_none() && matches!(planned[i].op, Op::Create { .. }))
        .collect();
    if !creates.is_empty() {
        create_all(tx, state, context, planned, &creates, &mut responses)?;
    }
    for &i in order {
        let p = &mut planned[i];
        if responses[i].is_some() {
            continue;
        }
        let response = match p.method {
            Method::Get | Method::Head => read(tx, state, context, p),
            _ => write(tx, state, context, p),
        }
        .map_err(|e| Failed::at(p, e))?;
        responses[i] = Some(response);
    }
    Ok(responses.into_iter().flatten().collect())
}

/// Creates the new resources of `creates` (positions in `planned`) in one set of statements.
fn create_all(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    planned: &mut [Planned],
    creates: &[usize],
    responses: &mut [Option<ResponseEntry>],
) -> Result<(), Failed> {
    let ids: Vec<(String, String)> = creates
        .iter()
        .map(|&i| {
            (
                planned[i].res_type.clone(),
                planned[i].id.clone().unwrap_or_default(),
            )
        })
        .collect();
    let targets: Vec<(&str, &str)> = ids.iter().map(|(t, i)| (t.as_str(), i.as_str())).collect();
    let mut prepare = |k: usize, version: i64, last_updated: i64| -> Result<Prepared, ApiError> {
        let p = &mut planned[creates[k]];
        let id = ids[k].1.as_str();
        let Op::Create { resource, .. } = &mut p.op else {
            return Err(ApiError::internal("not a create entry"));
        };
        let (patients, index) = match p.derived.take() {
            Some(derived) => derived,
            None => derive(state, resource, id)?,
        };
        let body = match p.first_version.take() {
            Some(first) if version == 1 => first.finish(last_updated),
            _ => {
                meta::stamp(resource, id, version, last_updated);
                resource.to_string()
            }
        };
        Ok(Prepared {
            patients,
            index,
            unique: unique_identifiers(resource),
            body,
        })
    };
    let written = tx
        .create_many(&context.scope, &targets, &mut prepare)
        .map_err(|(at, e)| {
            let error = write_error(e);
            match at {
                Some(k) => Failed::at(&planned[creates[k]], error),
                None => Failed { entry: None, error },
            }
        })?;
    for (k, stored) in written.into_iter().enumerate() {
        let (ty, id) = &ids[k];
        responses[creates[k]] = Some(written_entry(
            context,
            state,
            StatusCode::CREATED,
            ty,
            id,
            stored,
        ));
    }
    Ok(())
}

/// Resolves `ifNoneExist`, the targets of conditional updates and patches, and conditional
/// references, all under the caller's scope and seeing the deletions already made.
fn resolve(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    planned: &mut [Planned],
    references: &mut References,
) -> Result<(), Failed> {
    let scope = &context.scope;
    // Entries whose criteria name other entries come after those (`rank_resolution`).
    let mut positions: Vec<usize> = (0..planned.len()).collect();
    positions.sort_by_key(|&i| planned[i].resolve_rank);
    for i in positions {
        if planned[i].criteria().is_some() && !matches!(planned[i].op, Op::Delete { .. }) {
            resolve_placeholders(state, context, planned, i, references)?;
        }
        let p = &mut planned[i];
        let resolved = match p.criteria() {
            Some(c) if !matches!(p.op, Op::Delete { .. }) => {
                tx.resolve(scope, c).map_err(|e| Failed::at(p, e.into()))?
            }
            _ => continue,
        };
        match &p.op {
            Op::Create { .. } => match resolved {
                Resolved::None => p.id = Some(uuid::Uuid::new_v4().to_string()),
                Resolved::One {
                    res_id,
                    version,
                    last_updated,
                    body,
                } => {
                    p.id = Some(res_id.clone());
                    p.existing = Some(Existing {
                        res_id,
                        version,
                        last_updated,
                        body,
                    });
                }
                Resolved::Many => return Err(Failed::at(p, several("ifNoneExist"))),
            },
            Op::Update { resource, .. } => {
                let body_id = resource.get("id").and_then(Value::as_str).map(String::from);
                let (id, must_be_new) =
                    update_target(&p.res_type, resolved, body_id).map_err(|e| Failed::at(p, e))?;
                p.id = Some(id);
                p.must_be_new |= must_be_new;
            }
            Op::Patch { .. } => match resolved {
                Resolved::One { res_id, .. } => p.id = Some(res_id),
                Resolved::Many => return Err(Failed::at(p, several("conditional patch"))),
                Resolved::None => {
                    let message =
                        format!("conditional patch: no {} matches the criteria", p.res_type);
                    return Err(Failed::at(p, ApiError::not_found(message)));
                }
            },
            _ => {}
        }
    }
    // An entry whose ifNoneExist matched writes nothing: its resource, conditional
    // references included, is never used, and they may rightly match nothing.
    for p in planned.iter().filter(|p| p.existing.is_none()) {
        for reference in &p.conditional_references {
            if references.target(reference).is_some() {
                continue;
            }
            let target =
                resolve_reference(tx, state, context, reference).map_err(|e| Failed::at(p, e))?;
            references.map_conditional(reference, target);
        }
    }
    Ok(())
}

/// `Type?criteria` in a reference, resolved to `Type/id`: 400 when nothing matches, 412 when
/// several do.
fn resolve_reference(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    reference: &str,
) -> Result<String, ApiError> {
    let (ty, text) = reference.split_once('?').unwrap_or((reference, ""));
    if !served::is_served(ty) {
        return Err(ApiError::bad_request(Issue::error(
            "not-supported",
            format!("conditional reference {reference}: {ty} is not a type this server serves"),
        )));
    }
    let what = format!("conditional reference {reference}");
    let criteria = parse_criteria(state, ty, text, &what, context.lenient)?;
    match tx.resolve(&context.scope, &criteria)? {
        Resolved::One { res_id, .. } => Ok(format!("{ty}/{res_id}")),
        Resolved::None => Err(ApiError::bad_request(Issue::error(
            "not-found",
            format!("{what}: no {ty} matches"),
        ))),
        Resolved::Many => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            Issue::error(
                "multiple-matches",
                format!("{what}: more than one {ty} matches; make the criteria more selective"),
            ),
        )),
    }
}

/// The response entry of a write, with what `Prefer: return` asks for.
fn written_entry(
    context: &Context,
    state: &Services,
    status: StatusCode,
    res_type: &str,
    res_id: &str,
    stored: Written,
) -> ResponseEntry {
    let (resource, outcome) = match context.prefer {
        Return::Minimal => (None, None),
        Return::Representation => (Some(stored.body), None),
        Return::OperationOutcome => {
            let verb = if status == StatusCode::CREATED {
                "created"
            } else {
                "updated"
            };
            let issue = Issue::information(
                "informational",
                format!("{res_type}/{res_id} {verb}, version {}", stored.version),
            );
            (None, Some(operation_outcome(&[issue]).to_string()))
        }
    };
    ResponseEntry {
        full_url: Some(format!("{}/{res_type}/{res_id}", state.base_url)),
        status: status_text(status),
        location: Some(format!("{res_type}/{res_id}/_history/{}", stored.version)),
        version: Some(stored.version),
        last_modified: Some(stored.last_updated),
        resource,
        outcome,
    }
}

fn write(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    p: &mut Planned,
) -> Result<ResponseEntry, ApiError> {
    let scope = &context.scope;
    let id =
        p.id.clone()
            .ok_or_else(|| ApiError::internal("a write entry without an id"))?;
    let ty = p.res_type.clone();
    if let Some(existing) = p.existing.take() {
        let stored = Written {
            version: existing.version,
            last_updated: existing.last_updated,
            created: false,
            body: existing.body,
        };
        return Ok(written_entry(
            context,
            state,
            StatusCode::OK,
            &ty,
            &id,
            stored,
        ));
    }
    let (method, if_match) = match &p.op {
        Op::Create { .. } => (WriteMethod::Post, None),
        Op::Update { if_match, .. } => (WriteMethod::Put, *if_match),
        Op::Patch { if_match, .. } => (WriteMethod::Patch, *if_match),
        _ => return Err(ApiError::internal("not a write entry")),
    };
    let stored = match &mut p.op {
        Op::Patch { document, .. } => {
            let patch =
                JsonPatch::parse(std::mem::take(document)).map_err(ApiError::bad_request)?;
            let target = patch_target(&ty, &id, if_match);
            let mut prepare = patch_preparer(state, &ty, &id, &patch);
            tx.write(scope, &target, &mut prepare)
                .map_err(write_error)?
        }
        Op::Create { resource, .. } | Op::Update { resource, .. } => {
            let (patients, index) = match p.derived.take() {
                Some(derived) => derived,
                None => derive(state, resource, &id)?,
            };
            let target = WriteTarget {
                res_type: &ty,
                res_id: &id,
                method,
                if_match,
                must_be_new: method == WriteMethod::Post || p.must_be_new,
                needs_current_body: false,
            };
            let mut prepare = stamper(resource, &id, patients, index);
            tx.write(scope, &target, &mut prepare).map_err(|e| {
                let create_only = p.must_be_new && method == WriteMethod::Put;
                create_only_error(create_only, &ty, &id, write_error(e))
            })?
        }
        _ => unreachable!("checked above"),
    };
    let status = if method == WriteMethod::Post || (method == WriteMethod::Put && stored.created) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(written_entry(context, state, status, &ty, &id, stored))
}

fn read(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    p: &mut Planned,
) -> Result<ResponseEntry, ApiError> {
    let scope = &context.scope;
    let ty = p.res_type.clone();
    let head = p.method == Method::Head;
    let id = p.id.clone().unwrap_or_default();
    let full_url = Some(format!("{}/{ty}/{id}", state.base_url));
    match &p.op {
        Op::Read {
            if_none_match,
            if_modified_since,
        } => {
            let current = tx
                .read(scope, &ty, &id)?
                .ok_or_else(|| ApiError::not_found(format!("{ty}/{id} does not exist")))?;
            let Some(body) = current.body.filter(|_| !current.deleted) else {
                return Err(ApiError::gone(format!("{ty}/{id} was deleted")));
            };
            let unchanged = match (if_none_match, if_modified_since) {
                (Some(tags), _) => tags
                    .split(',')
                    .any(|t| t.trim() == "*" || rules::parse_etag(t) == Some(current.version)),
                (None, Some(since)) => chrono::DateTime::parse_from_rfc3339(since)
                    .or_else(|_| chrono::DateTime::parse_from_rfc2822(since))
                    .map(|t| current.last_updated / 1_000_000 <= t.timestamp())
                    .unwrap_or(false),
                (None, None) => false,
            };
            let status = if unchanged {
                StatusCode::NOT_MODIFIED
            } else {
                StatusCode::OK
            };
            Ok(ResponseEntry {
                full_url,
                status: status_text(status),
                version: Some(current.version),
                last_modified: Some(current.last_updated),
                resource: (!head && !unchanged).then_some(body),
                ..ResponseEntry::default()
            })
        }
        Op::VRead { version } => {
            let found = tx.vread(scope, &ty, &id, *version)?.ok_or_else(|| {
                ApiError::not_found(format!("{ty}/{id} has no version {version}"))
            })?;
            let Some(body) = found.body else {
                return Err(ApiError::gone(format!(
                    "version {version} of {ty}/{id} is a deletion"
                )));
            };
            Ok(ResponseEntry {
                full_url,
                status: status_text(StatusCode::OK),
                version: Some(found.version),
                last_modified: Some(found.last_updated),
                resource: (!head).then_some(body),
                ..ResponseEntry::default()
            })
        }
        Op::Search { query } => {
            let count = if query.summary == Summary::Count {
                0
            } else {
                query.count.unwrap_or(DEFAULT_COUNT).min(MAX_SEARCH_COUNT) as usize
            };
            let request = SearchRequest {
                query,
                compartment: None,
                count,
                cursor: None,
                max_included: MAX_SEARCH_COUNT as usize,
            };
            let page = tx.search(scope, &request)?;
            let entries = SearchEntry::of_page(&page, |body| shape(state, query, body))?;
            let applied = serde_urlencoded::to_string(&query.applied).unwrap_or_default();
            let self_link = format!("{}/{ty}?{applied}", state.base_url);
            let bundle = search_bundle(
                &state.base_url,
                self_link.trim_end_matches('?'),
                None,
                None,
                page.total,
                &entries,
                &[],
            );
            Ok(ResponseEntry {
                status: status_text(StatusCode::OK),
                resource: (!head).then_some(bundle),
                ..ResponseEntry::default()
            })
        }
        _ => Err(ApiError::internal("not a read entry")),
    }
}
