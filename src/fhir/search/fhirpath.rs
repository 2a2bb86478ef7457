//! The FHIRPath subset used by the R4 SearchParameter expressions of the served types.
//!
//! Supported (exactly what `fhir-profiles/search_parameters.py --constructs` finds, plus the
//! few functions that are trivial to add): paths (`Observation.code`, choice elements by name
//! `Observation.value`), unions `a | b`, parentheses, `X as T`, `.as(T)`, `.ofType(T)`,
//! `.where(resolve() is T)`, `.where(field = 'literal')`, `.extension('url')`, `.first()`,
//! `.exists()`, `a and b`, `a != literal` (for `Patient.deceased.exists() and
//! Patient.deceased != false`). Anything else is a [`ParseError`] when the expression is
//! compiled, never a silent wrong answer.
//!
//! Evaluation is typed with the R4 definitions: each value carries its FHIR type, so that
//! choice elements, `as`, and the extraction of the final values know what they hold.

use serde_json::Value;

use crate::fhir::definitions::{Definitions, ElementType, NodeId, Primitive, TypeId, ROOT_NODE};

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The first identifier of a path: the resource type, `Resource`/`DomainResource`, or a
    /// child of the context (`id`, `code` in composite components).
    Root(String),
    Child(Box<Expr>, String),
    /// `as T`, `.as(T)`, `.ofType(T)`.
    As(Box<Expr>, String),
    /// `.where(resolve() is T)` on references.
    WhereResolveIs(Box<Expr>, String),
    /// `.where(field = 'literal')`.
    WhereEq(Box<Expr>, String, String),
    /// `.extension('url')`.
    Extension(Box<Expr>, String),
    First(Box<Expr>),
    Exists(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    NotEq(Box<Expr>, Literal),
    Union(Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Bool(bool),
    String(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported FHIRPath at {at}: {message}")]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Dot,
    Open,
    Close,
    Pipe,
    Eq,
    NotEq,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'.' => out.push((start, Tok::Dot)),
            b'(' => out.push((start, Tok::Open)),
            b')' => out.push((start, Tok::Close)),
            b'|' => out.push((start, Tok::Pipe)),
            b'=' => out.push((start, Tok::Eq)),
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 1;
                out.push((start, Tok::NotEq));
            }
            b'\'' => {
                let end = text[i + 1..].find('\'').ok_or_else(|| ParseError {
                    at: start,
                    message: "unterminated string".into(),
                })?;
                let s = &text[i + 1..i + 1 + end];
                if s.contains('\\') {
                    return Err(err(start, "string escapes"));
                }
                out.push((start, Tok::Str(s.to_string())));
                i += end + 2;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push((start, Tok::Ident(text[start..i].to_string())));
                continue;
            }
            _ => return Err(err(start, &format!("character {:?}", c as char))),
        }
        i += 1;
    }
    Ok(out)
}

fn err(at: usize, message: &str) -> ParseError {
    ParseError {
        at,
        message: message.to_string(),
    }
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |(a, _)| *a)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, tok: Tok) -> Result<(), ParseError> {
        let at = self.at();
        match self.next() {
            Some(t) if t == tok => Ok(()),
            other => Err(err(at, &format!("expected {tok:?}, found {other:?}"))),
        }
    }

    fn ident(&mut self) -> Result<String, ParseError> {
        let at = self.at();
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            other => Err(err(at, &format!("expected a name, found {other:?}"))),
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let at = self.at();
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            other => Err(err(at, &format!("expected a string, found {other:?}"))),
        }
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == word)
    }

    /// and := union ('and' union)*
    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.union()?;
        while self.is_keyword("and") {
            self.pos += 1;
            let right = self.union()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// union := equality ('|' equality)*
    fn union(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.equality()?];
        while self.peek() == Some(&Tok::Pipe) {
            self.pos += 1;
            parts.push(self.equality()?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Expr::Union(parts)
        })
    }

    /// equality := as ('!=' literal)?
    fn equality(&mut self) -> Result<Expr, ParseError> {
        let left = self.as_expr()?;
        if self.peek() == Some(&Tok::NotEq) {
            self.pos += 1;
            let at = self.at();
            let lit = match self.next() {
                Some(Tok::Str(s)) => Literal::String(s),
                Some(Tok::Ident(s)) if s == "true" => Literal::Bool(true),
                Some(Tok::Ident(s)) if s == "false" => Literal::Bool(false),
                other => return Err(err(at, &format!("`!=` needs a literal, found {other:?}"))),
            };
            return Ok(Expr::NotEq(Box::new(left), lit));
        }
        Ok(left)
    }

    /// as := postfix ('as' Type)?
    fn as_expr(&mut self) -> Result<Expr, ParseError> {
        let left = self.postfix()?;
        if self.is_keyword("as") {
            self.pos += 1;
            let ty = self.ident()?;
            return Ok(Expr::As(Box::new(left), ty));
        }
        Ok(left)
    }

    /// postfix := atom ('.' name | '.' function)*
    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = match self.peek() {
            Some(Tok::Open) => {
                self.pos += 1;
                let inner = self.and()?;
                self.expect(Tok::Close)?;
                inner
            }
            _ => Expr::Root(self.ident()?),
        };
        while self.peek() == Some(&Tok::Dot) {
            self.pos += 1;
            let at = self.at();
            let name = self.ident()?;
            if self.peek() != Some(&Tok::Open) {
                e = Expr::Child(Box::new(e), name);
                continue;
            }
            self.pos += 1;
            e = match name.as_str() {
                "as" | "ofType" => Expr::As(Box::new(e), self.ident()?),
                "extension" => Expr::Extension(Box::new(e), self.string()?),
                "first" => Expr::First(Box::new(e)),
                "exists" => Expr::Exists(Box::new(e)),
                "where" => self.where_args(e)?,
                other => return Err(err(at, &format!("function {other}()"))),
            };
            self.expect(Tok::Close)?;
        }
        Ok(e)
    }

    /// `resolve() is T` or `field = 'literal'`; the closing parenthesis is left to the caller.
    fn where_args(&mut self, on: Expr) -> Result<Expr, ParseError> {
        let at = self.at();
        let name = self.ident()?;
        if name == "resolve" {
            self.expect(Tok::Open)?;
            self.expect(Tok::Close)?;
            if !self.is_keyword("is") {
                return Err(err(self.at(), "where(resolve() ...) other than `is T`"));
            }
            self.pos += 1;
            return Ok(Expr::WhereResolveIs(Box::new(on), self.ident()?));
        }
        if self.peek() == Some(&Tok::Eq) {
            self.pos += 1;
            let lit = self.string()?;
            return Ok(Expr::WhereEq(Box::new(on), name, lit));
        }
        Err(err(
            at,
            "where() criterion other than resolve() is T or field = 'literal'",
        ))
    }
}

/// Compiles an expression of the supported subset.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
        len: text.len(),
    };
    let e = p.and()?;
    if p.pos < p.toks.len() {
        return Err(err(p.at(), "unexpected trailing text"));
    }
    Ok(e)
}

/// The FHIR type of an evaluated value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Primitive(Primitive),
    /// A complex type or resource, or an inline backbone element of `TypeId` at `NodeId`.
    Complex(TypeId, NodeId),
    /// A boolean computed by the expression (`exists()`, `and`, `!=`).
    Boolean,
}

/// One value of a result collection.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub value: &'a Value,
    pub ty: Ty,
}

static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);

fn boolean(b: bool) -> Item<'static> {
    Item {
        value: if b { &TRUE } else { &FALSE },
        ty: Ty::Boolean,
    }
}

/// The name of a value's type as `as T` and `resolve() is T` see it.
pub fn type_name(defs: &Definitions, ty: Ty) -> &str {
    match ty {
        Ty::Primitive(p) => p.name(),
        Ty::Complex(id, ROOT_NODE) => &defs.type_def(id).name,
        Ty::Complex(..) => "BackboneElement",
        Ty::Boolean => "boolean",
    }
}

/// Evaluates `expr` on `context` (the resource, or a composite's context value).
pub fn evaluate<'a>(defs: &Definitions, expr: &Expr, context: Item<'a>) -> Vec<Item<'a>> {
    let mut out = Vec::new();
    eval_into(defs, expr, context, &mut out);
    out
}

fn eval_into<'a>(defs: &Definitions, expr: &Expr, ctx: Item<'a>, out: &mut Vec<Item<'a>>) {
    match expr {
        Expr::Root(name) => {
            let is_self = matches!(ctx.ty, Ty::Complex(_, ROOT_NODE))
                && (name == "Resource"
                    || name == "DomainResource"
                    || name == type_name(defs, ctx.ty));
            if is_self {
                out.push(ctx);
            } else {
                child(defs, ctx, name, out);
            }
        }
        Expr::Child(on, name) => {
            for item in evaluate(defs, on, ctx) {
                child(defs, item, name, out);
            }
        }
        Expr::As(on, ty) => {
            out.extend(
                evaluate(defs, on, ctx)
                    .into_iter()
                    .filter(|i| is_type(defs, i.ty, ty)),
            );
        }
        Expr::WhereResolveIs(on, ty) => {
            out.extend(
                evaluate(defs, on, ctx)
                    .into_iter()
                    .filter(|i| reference_type(i.value).is_some_and(|t| t == ty)),
            );
        }
        Expr::WhereEq(on, field, lit) => {
            out.extend(evaluate(defs, on, ctx).into_iter().filter(|i| {
                i.value.get(field.as_str()).and_then(Value::as_str) == Some(lit.as_str())
            }));
        }
        Expr::Extension(on, url) => {
            for item in evaluate(defs, on, ctx) {
                let mut exts = Vec::new();
                child(defs, item, "extension", &mut exts);
                out.extend(
                    exts.into_iter().filter(|e| {
                        e.value.get("url").and_then(Value::as_str) == Some(url.as_str())
                    }),
                );
            }
        }
        Expr::First(on) => out.extend(evaluate(defs, on, ctx).into_iter().take(1)),
        Expr::Exists(on) => out.push(boolean(!evaluate(defs, on, ctx).is_empty())),
        Expr::And(a, b) => {
            // Three-valued logic: false wins, then empty, then true.
            let a = single_bool(&evaluate(defs, a, ctx));
            let b = single_bool(&evaluate(defs, b, ctx));
            match (a, b) {
                (Some(false), _) | (_, Some(false)) => out.push(boolean(false)),
                (Some(true), Some(true)) => out.push(boolean(true)),
                _ => {}
            }
        }
        Expr::NotEq(on, lit) => {
            let items = evaluate(defs, on, ctx);
            if let [item] = items.as_slice() {
                let equal = match (lit, item.value) {
                    (Literal::Bool(l), Value::Bool(v)) => l == v,
                    (Literal::String(l), Value::String(v)) => l == v,
                    _ => false,
                };
                out.push(boolean(!equal));
            }
        }
        Expr::Union(parts) => {
            for p in parts {
                for item in evaluate(defs, p, ctx) {
                    // Union removes duplicates; values are identical when they are the same node.
                    if !out.iter().any(|o| std::ptr::eq(o.value, item.value)) {
                        out.push(item);
                    }
                }
            }
        }
    }
}

fn single_bool(items: &[Item<'_>]) -> Option<bool> {
    match items {
        [item] => item.value.as_bool(),
        _ => None,
    }
}

fn is_type(defs: &Definitions, ty: Ty, name: &str) -> bool {
    if type_name(defs, ty) == name {
        return true;
    }
    // `as Quantity` also matches the Quantity profiles (SimpleQuantity, MoneyQuantity).
    matches!(ty, Ty::Complex(id, ROOT_NODE) if &*defs.type_def(id).wire_name == name)
}

/// The resource type a Reference points to: from `reference` (relative or absolute URL), else
/// from `type`. Contained (`#x`) and `urn:` references have no type from their text.
pub fn reference_type(reference: &Value) -> Option<&str> {
    if let Some(text) = reference.get("reference").and_then(Value::as_str) {
        if let Some(parsed) = super::extract::parse_reference(text) {
            return Some(parsed.0);
        }
    }
    reference.get("type").and_then(Value::as_str)
}

/// Appends the values of child `name` of `item` (array elements flattened), typed.
fn child<'a>(defs: &Definitions, item: Item<'a>, name: &str, out: &mut Vec<Item<'a>>) {
    let Ty::Complex(type_id, node) = item.ty else {
        return;
    };
    let Value::Object(object) = item.value else {
        return;
    };
    let td = defs.type_def(type_id);
    let push = |value: &'a Value, et: ElementType, out: &mut Vec<Item<'a>>| {
        let ty = match et {
            ElementType::Primitive(p) => Ty::Primitive(p),
            ElementType::Complex(id) => Ty::Complex(id, ROOT_NODE),
            ElementType::Inline => return,
            ElementType::Resource => return,
        };
        push_values(value, ty, out);
    };
    if let Some(ck) = td.child(node, name) {
        let element = td.element(ck.element);
        if let Some(value) = get(object, name) {
            match element.types.get(ck.type_index as usize) {
                Some(ElementType::Inline) => {
                    if let Some(inline) = element.node {
                        push_values(value, Ty::Complex(type_id, inline), out);
                    }
                }
                Some(&et) => push(value, et, out),
                None => {}
            }
        }
        return;
    }
    // A choice element named without its type suffix: `value` -> `valueQuantity`... The
    // object's keys are fewer than the choice's types: look at those that could match.
    for (key, value) in object {
        let is_candidate = key.len() > name.len()
            && key.starts_with(name)
            && key.as_bytes()[name.len()].is_ascii_uppercase();
        if !is_candidate {
            continue;
        }
        if let Some(ck) = td.child(node, key) {
            let element = td.element(ck.element);
            if element.choice && &*element.name == name {
                if let Some(&et) = element.types.get(ck.type_index as usize) {
                    push(value, et, out);
                }
            }
        }
    }
}

/// A key of a JSON object. FHIR objects are small: a scan of the keys beats hashing the name
/// (serde_json's ordered map hashes with SipHash), measured at about 20% of extraction.
fn get<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    if object.len() > 12 {
        return object.get(name);
    }
    object
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v)
}

fn push_values<'a>(value: &'a Value, ty: Ty, out: &mut Vec<Item<'a>>) {
    match value {
        Value::Array(values) => out.extend(
            values
                .iter()
                .filter(|v| !v.is_null())
                .map(|value| Item { value, ty }),
        ),
        Value::Null => {}
        value => out.push(Item { value, ty }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_of_the_r4_expressions() {
        assert_eq!(
            parse("Observation.code").unwrap(),
            Expr::Child(Box::new(Expr::Root("Observation".into())), "code".into())
        );
        let e = parse("(Observation.value as CodeableConcept).text").unwrap();
        assert!(
            matches!(e, Expr::Child(ref on, ref n) if n == "text" && matches!(**on, Expr::As(..)))
        );
        let e = parse("Patient.telecom.where(system='email') | Practitioner.name").unwrap();
        assert!(
            matches!(e, Expr::Union(ref p) if p.len() == 2 && matches!(p[0], Expr::WhereEq(..)))
        );
        let e = parse("Appointment.participant.actor.where(resolve() is Location)").unwrap();
        assert!(matches!(e, Expr::WhereResolveIs(_, ref t) if t == "Location"));
        let e = parse("Patient.deceased.exists() and Patient.deceased != false").unwrap();
        assert!(matches!(e, Expr::And(..)));
        assert!(parse("Condition.abatement.as(Age) | Condition.abatement.as(Range)").is_ok());
        assert!(parse("Device.extension('http://x/y').value").is_ok());
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        for bad in [
            "Observation.code.count()",
            "Patient.name.where(use = 'official' or use = 'usual')",
            "Observation.value > 5",
            "Observation.code.coding[0]",
            "Observation.",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
