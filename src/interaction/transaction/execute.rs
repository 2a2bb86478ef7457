//! Execution inside the store transaction: identities mapped and references rewritten, then
//! every entry resolved, written or read, in the specification's order.

use super::*;

/// Maps every writing entry's fullUrl to its `Type/id`, checks that no two entries act on
/// the same resource (an `ifNoneExist` that matched acts on the resource it matched, as the
/// specification counts resolved identities), then rewrites the references of every resource
/// and computes what its write stores besides the body.
pub(super) fn map_and_rewrite(
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
        if !is_patch {
            for (r, target) in p.ins_references.iter().zip(&p.ins_targets) {
                ins::attach(value, r, target);
            }
        }
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
pub(super) fn execute(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    planned: &mut [Planned],
    order: &[usize],
    references: &mut References,
    resolved_up_front: bool,
) -> Result<Vec<ResponseEntry>, Failed> {
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
        let scope = &context
            .scope_for(Operation::Delete, &p.res_type)
            .map_err(|e| Failed::at(p, e))?;
        let id = match target {
            Target::Id(id) => Some(id.clone()),
            Target::Criteria(c) => {
                context
                    .scope_for(Operation::Search, &p.res_type)
                    .map_err(|e| Failed::at(p, e))?;
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
pub(super) fn create_all(
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
    // One scope for all: each type's, which must agree (they differ only for tokens mixing
    // patient/, user/ and system/ scopes, whose creates are then made one Bundle at a time).
    let mut scope: Option<AccessScope> = None;
    for &i in creates {
        let p = &planned[i];
        let this = context
            .scope_for(Operation::Create, &p.res_type)
            .map_err(|e| Failed::at(p, e))?;
        match &scope {
            Some(first) if *first != this => {
                return Err(Failed::at(
                    p,
                    ApiError::forbidden(
                        "the token's scopes create these types at different levels \
                         (patient/, user/, system/); send them in separate Bundles",
                    ),
                ))
            }
            Some(_) => {}
            None => scope = Some(this),
        }
    }
    let scope = scope.unwrap_or_default();
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
        .create_many(&scope, &targets, &mut prepare)
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
pub(super) fn resolve(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    planned: &mut [Planned],
    references: &mut References,
) -> Result<(), Failed> {
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
                let scope = context
                    .scope_for(Operation::Search, &p.res_type)
                    .map_err(|e| Failed::at(p, e))?;
                tx.resolve(&scope, c).map_err(|e| Failed::at(p, e.into()))?
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
    // Patients named by INS only: a Patient this Bundle writes, else a stored one.
    for i in 0..planned.len() {
        if planned[i].ins_references.is_empty() || planned[i].existing.is_some() {
            continue;
        }
        let nearby = |r: &InsReference| {
            planned.iter().find_map(|q| {
                let resource = q.resource()?;
                if !ins::holds_identifier(resource, &r.system, &r.value) {
                    return None;
                }
                let id = q.existing.as_ref().map(|e| &e.res_id).or(q.id.as_ref())?;
                Some(format!("Patient/{id}"))
            })
        };
        let p = &planned[i];
        // Looked up among the patients the entry's write may reach.
        let operation = match p.op {
            Op::Create { .. } => Operation::Create,
            _ => Operation::Update,
        };
        let scope = context
            .scope_for(operation, &p.res_type)
            .map_err(|e| Failed::at(p, e))?
            .without_types();
        let targets = by_identifier::resolve(tx, state, &scope, &p.ins_references, &nearby)
            .map_err(|e| Failed::at(p, e))?;
        planned[i].ins_targets = targets;
    }
    Ok(())
}

/// `Type?criteria` in a reference, resolved to `Type/id`: 400 when nothing matches, 412 when
/// several do.
pub(super) fn resolve_reference(
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
    match tx.resolve(&context.scope_for(Operation::Search, ty)?, &criteria)? {
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
pub(super) fn written_entry(
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
        Return::OperationOutcome => (
            None,
            Some(written_outcome(
                status == StatusCode::CREATED,
                res_type,
                res_id,
                stored.version,
            )),
        ),
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

pub(super) fn write(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    p: &mut Planned,
) -> Result<ResponseEntry, ApiError> {
    let operation = match p.op {
        Op::Create { .. } => Operation::Create,
        _ => Operation::Update,
    };
    let scope = &context.scope_for(operation, &p.res_type)?;
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

pub(super) fn read(
    tx: &mut Tx<'_>,
    state: &Services,
    context: &Context,
    p: &mut Planned,
) -> Result<ResponseEntry, ApiError> {
    let operation = match p.op {
        Op::Search { .. } => Operation::Search,
        _ => Operation::Read,
    };
    let scope = &context.scope_for(operation, &p.res_type)?;
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
