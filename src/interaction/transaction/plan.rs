//! Planning: each entry checked as the single interaction would check it, without the
//! database, and the whole Bundle's rules (duplicate criteria, transaction and batch shapes).

use super::*;

/// Checks an entry as the single interaction would (type, id, validation, criteria) without
/// touching the database.
pub(super) fn plan_entry(
    state: &Services,
    entry: Entry,
    lenient: bool,
) -> Result<Planned, ApiError> {
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
        let issues = crate::interaction::write::validate(state, resource);
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
            let mut resource = resource.take().unwrap_or_default();
            validated(&resource)?;
            business_rules(&mut resource)?;
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
            let mut resource = resource.take().unwrap_or_default();
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
            business_rules(&mut resource)?;
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
    let ins_references = match &op {
        Op::Create { resource, .. } | Op::Update { resource, .. } => {
            ins::ins_references(state.definitions, resource)
        }
        _ => Vec::new(),
    };
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
        ins_references,
        ins_targets: Vec::new(),
    })
}

/// Refuses two write entries with the same conditional criteria (their outcomes would depend
/// on each other).
pub(super) fn check_duplicate_criteria(planned: &[Planned]) -> Result<(), ApiError> {
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

pub(super) fn plan_transaction(
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

pub(super) fn plan_batch(
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
