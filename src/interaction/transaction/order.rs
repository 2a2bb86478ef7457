//! Criteria that name other entries' fullUrls: found, ordered so that each is resolved after
//! the entries it names (a cycle is refused), and replaced by those entries' `Type/id`.

use super::*;

/// The fullUrls of the Bundle that `p`'s criteria name as values of reference parameters
/// (`ifNoneExist: subject=urn:uuid:...`). A `urn:uuid:` that no entry declares is refused, as
/// in references: no stored reference can hold one.
pub(super) fn find_placeholders(
    p: &Planned,
    declared: &References,
) -> Result<Vec<String>, ApiError> {
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
pub(super) fn rank_resolution(planned: &mut [Planned]) -> Result<(), ApiError> {
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
pub(super) fn resolve_placeholders(
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
