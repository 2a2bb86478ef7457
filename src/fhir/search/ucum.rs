//! UCUM (<https://ucum.org/ucum>) codes reduced to canonical units, so that quantity search
//! compares `5.4 mmol/L` with `5400 umol/L` and `70 kg` with `70000 g`. Pure.
//!
//! The case-sensitive grammar is parsed in full: metric prefixes, products `.`, left-to-right
//! division `/` (a leading `/` too), integer exponents (`m2`, `s-1`), parentheses, integer
//! factors (`1000`), `10*`/`10^` powers (`10*9/L`), and annotations `{...}`, which stand for 1
//! (`{beats}/min` is `/min`, `mg{total}` is `mg`). The atoms known are those of vital signs and
//! laboratory results (the `ATOMS` table); anything else, including the non-multiplicative units
//! (`Cel`, `[degF]`, `[pH]`) and the calendar units (`mo`, `a`, whose UCUM values are averages),
//! gives `None`, and the caller compares codes as text. Annotations being 1 is UCUM's rule,
//! with its consequence: `{copies}/mL`, `{cells}/mL` and `/mL` are the same unit.
//!
//! Canonical units are UCUM's base units `m`, `s`, `g`, `K`, `C`, `cd`, `rad`, except that
//! `mol` is kept as a base (UCUM defines it as a pure number, 6.0221367e23, which would make
//! `mmol/L` and `10*9/L` comparable) and each arbitrary unit (`[iU]`) is a base of its own, so
//! only its prefix converts. Derived units are reduced: a pressure is `g.m-1.s-2`, and `kPa`,
//! `mm[Hg]` and `bar` all give that text.

use std::collections::BTreeMap;

/// The UCUM code system URI, the `system` of quantities whose units convert.
pub const SYSTEM: &str = "http://unitsofmeasure.org";

/// A unit reduced to base units.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    /// Base units with their exponents, deterministic: the positive exponents, then the
    /// negative ones, each group sorted by unit (`mol.m-3`, `g.m-1.s-2`, `s-1`); `1` for a
    /// dimensionless unit.
    pub unit: String,
    /// A value in the original unit times `factor` is the value in `unit`.
    pub factor: f64,
}

/// The canonical form quantity search compares in: [`canonical`], except that dimensionless
/// units only compare with the very same code. UCUM makes `%`, `{score}` and `1` all the
/// number one, but a percentage is not a score: `gt82|...|%` must not find a score of 3.
pub fn search_canonical(code: &str) -> Option<Canonical> {
    let mut c = canonical(code)?;
    if c.unit == "1" {
        c.unit = format!("1 {code}");
        c.factor = 1.0;
    }
    Some(c)
}

/// The canonical form of a UCUM code, or `None` when the code is not valid UCUM, uses an atom
/// this table does not know, or is not a plain multiple of its canonical unit.
pub fn canonical(code: &str) -> Option<Canonical> {
    let mut parser = Parser {
        text: code.as_bytes(),
        at: 0,
    };
    let term = parser.main_term()?;
    if parser.at != code.len() || !term.factor.is_finite() || term.factor <= 0.0 {
        return None;
    }
    let (positive, negative): (Vec<_>, Vec<_>) = term
        .dims
        .iter()
        .filter(|(_, &e)| e != 0)
        .partition(|(_, &e)| e > 0);
    let parts: Vec<String> = positive
        .into_iter()
        .chain(negative)
        .map(|(unit, &e)| match e {
            1 => unit.clone(),
            e => format!("{unit}{e}"),
        })
        .collect();
    Some(Canonical {
        unit: if parts.is_empty() {
            "1".to_string()
        } else {
            parts.join(".")
        },
        factor: term.factor,
    })
}

/// A partial result: a factor and base units with exponents.
#[derive(Debug, Clone)]
struct Term {
    factor: f64,
    dims: BTreeMap<String, i32>,
}

impl Term {
    fn one() -> Term {
        Term {
            factor: 1.0,
            dims: BTreeMap::new(),
        }
    }

    fn multiply(&mut self, other: &Term, sign: i32) {
        self.factor *= other.factor.powi(sign);
        for (unit, e) in &other.dims {
            *self.dims.entry(unit.clone()).or_insert(0) += e * sign;
        }
    }

    fn power(&mut self, exponent: i32) {
        self.factor = self.factor.powi(exponent);
        for e in self.dims.values_mut() {
            *e *= exponent;
        }
    }
}

/// One known atom: its code, whether metric prefixes apply, and its value in base units.
struct Atom {
    code: &'static str,
    metric: bool,
    factor: f64,
    dims: &'static [(&'static str, i32)],
}

const fn atom(
    code: &'static str,
    metric: bool,
    factor: f64,
    dims: &'static [(&'static str, i32)],
) -> Atom {
    Atom {
        code,
        metric,
        factor,
        dims,
    }
}

const PRESSURE: &[(&str, i32)] = &[("g", 1), ("m", -1), ("s", -2)];
const ENERGY: &[(&str, i32)] = &[("g", 1), ("m", 2), ("s", -2)];
const VOLUME: &[(&str, i32)] = &[("m", 3)];
const MASS: &[(&str, i32)] = &[("g", 1)];
const LENGTH: &[(&str, i32)] = &[("m", 1)];
const TIME: &[(&str, i32)] = &[("s", 1)];
const AMOUNT: &[(&str, i32)] = &[("mol", 1)];
const CATALYTIC: &[(&str, i32)] = &[("mol", 1), ("s", -1)];
const NONE: &[(&str, i32)] = &[];

/// UCUM's `[lb_av]` in grams and `[in_i]` in metres (exact by definition).
const POUND: f64 = 453.592_37;
const INCH: f64 = 0.0254;
/// UCUM's `[g]`, standard gravity, in m/s2.
const GRAVITY: f64 = 9.806_65;

/// The atoms understood, with their UCUM definitions reduced to base units (a kilogram is
/// 1000 g, so every newton-based factor carries 1e3).
const ATOMS: &[Atom] = &[
    // Base units.
    atom("m", true, 1.0, LENGTH),
    atom("s", true, 1.0, TIME),
    atom("g", true, 1.0, MASS),
    atom("rad", true, 1.0, &[("rad", 1)]),
    atom("K", true, 1.0, &[("K", 1)]),
    atom("C", true, 1.0, &[("C", 1)]),
    atom("cd", true, 1.0, &[("cd", 1)]),
    atom("mol", true, 1.0, AMOUNT),
    // SI and metric derived units.
    atom("L", true, 1e-3, VOLUME),
    atom("l", true, 1e-3, VOLUME),
    atom("t", true, 1e6, MASS),
    atom("sr", true, 1.0, &[("rad", 2)]),
    atom("deg", true, std::f64::consts::PI / 180.0, &[("rad", 1)]),
    atom("Hz", true, 1.0, &[("s", -1)]),
    atom("N", true, 1e3, &[("g", 1), ("m", 1), ("s", -2)]),
    atom("Pa", true, 1e3, PRESSURE),
    atom("bar", true, 1e8, PRESSURE),
    atom("J", true, 1e3, ENERGY),
    atom("cal", true, 4.184e3, ENERGY),
    atom("W", true, 1e3, &[("g", 1), ("m", 2), ("s", -3)]),
    atom("A", true, 1.0, &[("C", 1), ("s", -1)]),
    atom("V", true, 1e3, &[("g", 1), ("m", 2), ("s", -2), ("C", -1)]),
    atom("Gy", true, 1.0, &[("m", 2), ("s", -2)]),
    atom("Sv", true, 1.0, &[("m", 2), ("s", -2)]),
    atom("Bq", true, 1.0, &[("s", -1)]),
    atom("Ci", true, 3.7e10, &[("s", -1)]),
    atom(
        "Ohm",
        true,
        1e3,
        &[("g", 1), ("m", 2), ("C", -2), ("s", -1)],
    ),
    atom("P", true, 100.0, &[("g", 1), ("m", -1), ("s", -1)]),
    atom("St", true, 1e-4, &[("m", 2), ("s", -1)]),
    atom("dyn", true, 1e-2, &[("g", 1), ("m", 1), ("s", -2)]),
    atom("erg", true, 1e-4, ENERGY),
    atom("eq", true, 1.0, AMOUNT),
    atom("osm", true, 1.0, AMOUNT),
    atom("kat", true, 1.0, CATALYTIC),
    // U = umol/min.
    atom("U", true, 1e-6 / 60.0, CATALYTIC),
    // m[Hg] = 133.3220 kPa, m[H2O] = 9.80665 kPa.
    atom("m[Hg]", true, 133.322e3 * 1e3, PRESSURE),
    atom("m[H2O]", true, 9.806_65e3 * 1e3, PRESSURE),
    // Arbitrary units: bases of their own.
    atom("[iU]", true, 1.0, &[("[iU]", 1)]),
    atom("[IU]", true, 1.0, &[("[iU]", 1)]),
    atom("[CFU]", true, 1.0, &[("[CFU]", 1)]),
    atom("[PFU]", true, 1.0, &[("[PFU]", 1)]),
    atom("[FFU]", true, 1.0, &[("[FFU]", 1)]),
    atom("[arb'U]", false, 1.0, &[("[arb'U]", 1)]),
    atom("[USP'U]", false, 1.0, &[("[USP'U]", 1)]),
    atom("[GPL'U]", false, 1.0, &[("[GPL'U]", 1)]),
    atom("[MPL'U]", false, 1.0, &[("[MPL'U]", 1)]),
    atom("[APL'U]", false, 1.0, &[("[APL'U]", 1)]),
    atom("[beth'U]", false, 1.0, &[("[beth'U]", 1)]),
    atom("[todd'U]", false, 1.0, &[("[todd'U]", 1)]),
    atom("[bdsk'U]", false, 1.0, &[("[bdsk'U]", 1)]),
    atom("[ka'U]", false, 1.0, &[("[ka'U]", 1)]),
    atom("[mclg'U]", false, 1.0, &[("[mclg'U]", 1)]),
    atom("[tb'U]", false, 1.0, &[("[tb'U]", 1)]),
    atom("[AU]", false, 1.0, &[("[AU]", 1)]),
    atom("[BAU]", false, 1.0, &[("[BAU]", 1)]),
    // Non-metric.
    atom("10*", false, 10.0, NONE),
    atom("10^", false, 10.0, NONE),
    atom("%", false, 1e-2, NONE),
    atom("[pi]", false, std::f64::consts::PI, NONE),
    atom("[ppth]", false, 1e-3, NONE),
    atom("[ppm]", false, 1e-6, NONE),
    atom("[ppb]", false, 1e-9, NONE),
    atom("min", false, 60.0, TIME),
    atom("h", false, 3600.0, TIME),
    atom("d", false, 86_400.0, TIME),
    atom("wk", false, 604_800.0, TIME),
    atom("atm", false, 101_325e3, PRESSURE),
    atom("[Cal]", false, 4.184e6, ENERGY),
    atom("[lb_av]", false, POUND, MASS),
    atom("[oz_av]", false, POUND / 16.0, MASS),
    atom("[in_i]", false, INCH, LENGTH),
    atom("[ft_i]", false, INCH * 12.0, LENGTH),
    atom("[yd_i]", false, INCH * 36.0, LENGTH),
    atom("[mi_i]", false, INCH * 63_360.0, LENGTH),
    // [psi] = [lbf_av]/[in_i]2, [lbf_av] = [lb_av].[g].
    atom("[psi]", false, POUND * GRAVITY / (INCH * INCH), PRESSURE),
    // A drop is 1/20 mL.
    atom("[drp]", false, 1e-6 / 20.0, VOLUME),
];

/// Metric prefixes; `da` before the one-letter ones.
const PREFIXES: &[(&str, f64)] = &[
    ("da", 1e1),
    ("Y", 1e24),
    ("Z", 1e21),
    ("E", 1e18),
    ("P", 1e15),
    ("T", 1e12),
    ("G", 1e9),
    ("M", 1e6),
    ("k", 1e3),
    ("h", 1e2),
    ("d", 1e-1),
    ("c", 1e-2),
    ("m", 1e-3),
    ("u", 1e-6),
    ("n", 1e-9),
    ("p", 1e-12),
    ("f", 1e-15),
    ("a", 1e-18),
    ("z", 1e-21),
    ("y", 1e-24),
];

fn find_atom(code: &str) -> Option<&'static Atom> {
    ATOMS.iter().find(|a| a.code == code)
}

/// A unit symbol: a whole atom first (`cd`, `Pa`, `min`, `h`), else prefix + metric atom.
fn unit_symbol(symbol: &str) -> Option<Term> {
    let (prefix, atom) = match find_atom(symbol) {
        Some(atom) => (1.0, atom),
        None => PREFIXES.iter().find_map(|&(prefix, value)| {
            let atom = find_atom(symbol.strip_prefix(prefix)?)?;
            atom.metric.then_some((value, atom))
        })?,
    };
    Some(Term {
        factor: prefix * atom.factor,
        dims: atom.dims.iter().map(|&(u, e)| (u.to_string(), e)).collect(),
    })
}

/// Longest exponent accepted, in digits: enough for `10*23`, and no `powi` overflow.
const MAX_EXPONENT_DIGITS: usize = 3;

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// `mainTerm := '/' term | term`
    fn main_term(&mut self) -> Option<Term> {
        if self.peek() == Some(b'/') {
            self.at += 1;
            let mut one = Term::one();
            one.multiply(&self.term()?, -1);
            Some(one)
        } else {
            self.term()
        }
    }

    /// `term := component (('.' | '/') component)*`, left to right.
    fn term(&mut self) -> Option<Term> {
        let mut term = self.component()?;
        while let Some(op @ (b'.' | b'/')) = self.peek() {
            self.at += 1;
            let next = self.component()?;
            term.multiply(&next, if op == b'.' { 1 } else { -1 });
        }
        Some(term)
    }

    /// `component := annotatable annotation? | annotation | factor | '(' term ')'`
    fn component(&mut self) -> Option<Term> {
        match self.peek()? {
            b'(' => {
                self.at += 1;
                let term = self.term()?;
                (self.peek() == Some(b')')).then_some(())?;
                self.at += 1;
                self.annotation()?;
                Some(term)
            }
            b'{' => {
                self.annotation()?;
                Some(Term::one())
            }
            b'0'..=b'9' if !self.at_ten_power() => {
                let digits = self.digits();
                self.annotation()?;
                Some(Term {
                    factor: digits.parse().ok()?,
                    dims: BTreeMap::new(),
                })
            }
            _ => {
                let mut term = self.simple_unit()?;
                if let Some(exponent) = self.exponent()? {
                    term.power(exponent);
                }
                self.annotation()?;
                Some(term)
            }
        }
    }

    fn at_ten_power(&self) -> bool {
        self.text[self.at..].starts_with(b"10*") || self.text[self.at..].starts_with(b"10^")
    }

    fn digits(&mut self) -> &'a str {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        std::str::from_utf8(&self.text[start..self.at]).unwrap_or_default()
    }

    /// A symbol up to the exponent or the next operator; `[...]` is taken whole.
    fn simple_unit(&mut self) -> Option<Term> {
        let start = self.at;
        if self.at_ten_power() {
            self.at += 3;
        } else {
            while let Some(c) = self.peek() {
                match c {
                    b'[' => {
                        let close = self.text[self.at..].iter().position(|&c| c == b']')?;
                        self.at += close + 1;
                    }
                    b'.' | b'/' | b'(' | b')' | b'{' | b'}' | b']' | b'+' | b'-' => break,
                    b'0'..=b'9' => break,
                    c if c.is_ascii_graphic() => self.at += 1,
                    _ => return None,
                }
            }
        }
        if self.at == start {
            return None;
        }
        unit_symbol(std::str::from_utf8(&self.text[start..self.at]).ok()?)
    }

    /// `exponent := ('+' | '-')? digits`; `Some(None)` when there is none.
    fn exponent(&mut self) -> Option<Option<i32>> {
        let negative = match self.peek() {
            Some(b'+') => {
                self.at += 1;
                false
            }
            Some(b'-') => {
                self.at += 1;
                true
            }
            Some(b'0'..=b'9') => false,
            _ => return Some(None),
        };
        let digits = self.digits();
        if digits.is_empty() || digits.len() > MAX_EXPONENT_DIGITS {
            return None;
        }
        let value: i32 = digits.parse().ok()?;
        Some(Some(if negative { -value } else { value }))
    }

    /// An optional `{...}`, ignored; `None` when it is not closed.
    fn annotation(&mut self) -> Option<()> {
        if self.peek() == Some(b'{') {
            let close = self.text[self.at..].iter().position(|&c| c == b'}')?;
            let inner = &self.text[self.at + 1..self.at + close];
            if inner
                .iter()
                .any(|&c| c == b'{' || !(b' '..=b'~').contains(&c))
            {
                return None;
            }
            self.at += close + 1;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str) -> Canonical {
        canonical(code).unwrap_or_else(|| panic!("{code} should be understood"))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    /// `a` in `code` equals `b` in `other`.
    fn same(a: f64, code: &str, b: f64, other: &str) {
        let (x, y) = (c(code), c(other));
        assert_eq!(x.unit, y.unit, "{code} vs {other}");
        assert!(
            close(a * x.factor, b * y.factor),
            "{a} {code} = {} {}, {b} {other} = {} {}",
            a * x.factor,
            x.unit,
            b * y.factor,
            y.unit
        );
    }

    fn is(code: &str, unit: &str, factor: f64) {
        let got = c(code);
        assert_eq!(got.unit, unit, "{code}");
        assert!(
            close(got.factor, factor),
            "{code}: {} != {factor}",
            got.factor
        );
    }

    #[test]
    fn concentrations() {
        is("mmol/L", "mol.m-3", 1.0);
        is("mol/m3", "mol.m-3", 1.0);
        same(5.4, "mmol/L", 5400.0, "umol/L");
        same(5.4, "mmol/L", 5.4, "umol/mL");
        same(5.4, "mmol/L", 5.4, "mol/m3");
        same(5.4, "mmol/L", 0.54, "mmol/dL");
        same(1.0, "g/dL", 10.0, "g/L");
        same(90.0, "mg/dL", 900.0, "mg/L");
        same(140.0, "meq/L", 140.0, "mmol/L");
        same(290.0, "mosm/kg", 0.29, "osm/kg");
        is("m[iU]/L", "[iU].m-3", 1.0);
        same(5.0, "m[iU]/L", 5.0, "u[iU]/mL");
        same(5.0, "[IU]/L", 5.0, "[iU]/L");
        same(3.0, "[CFU]/mL", 3000.0, "[CFU]/L");
        is("[arb'U]/mL", "[arb'U].m-3", 1e6);
        assert_ne!(c("[arb'U]/mL").unit, c("[iU]/mL").unit);
        same(40.0, "U/L", 40.0 / 60.0, "ukat/L");
    }

    #[test]
    fn masses_and_lengths() {
        is("kg", "g", 1000.0);
        same(70.0, "kg", 70000.0, "g");
        same(1.0, "[lb_av]", 453.59237, "g");
        same(16.0, "[oz_av]", 1.0, "[lb_av]");
        same(154.0, "[lb_av]", 69.853_224_98, "kg");
        same(2.54, "cm", 1.0, "[in_i]");
        same(1.0, "[ft_i]", 12.0, "[in_i]");
        same(180.0, "cm", 1.8, "m");
        same(1.0, "m2", 10_000.0, "cm2");
        is("kg/m2", "g.m-2", 1000.0);
    }

    #[test]
    fn pressures() {
        is("mm[Hg]", "g.m-1.s-2", 133.322e3);
        is("kPa", "g.m-1.s-2", 1e6);
        same(120.0, "mm[Hg]", 15.998_64, "kPa");
        same(1.0, "bar", 100.0, "kPa");
        same(1.0, "atm", 101.325, "kPa");
        same(10.0, "cm[H2O]", 0.980_665, "kPa");
        same(1.0, "[psi]", 6.894_757_293_168, "kPa");
        same(1.0, "Pa", 1.0, "N/m2");
        same(1.0, "Pa", 1.0, "kg/(m.s2)");
    }

    #[test]
    fn counts_rates_and_ratios() {
        same(6.0, "10*9/L", 6.0, "10*3/uL");
        same(6.0, "10*9/L", 6.0, "10*6/L.10*3");
        same(6.0, "10*9/L", 6000.0, "10*6/L");
        same(6.0, "10^9/L", 6.0, "10*9/L");
        is("10*3/uL", "m-3", 1e12);
        is("/min", "s-1", 1.0 / 60.0);
        same(72.0, "/min", 72.0, "{beats}/min");
        same(72.0, "/min", 72.0, "min-1");
        same(72.0, "/min", 1.2, "Hz");
        same(72.0, "/min", 72.0 * 60.0, "/h");
        same(16.0, "{breaths}/min", 16.0, "/min{breaths}");
        is("%", "1", 0.01);
        same(98.0, "%", 0.98, "1");
        same(5.0, "%", 50.0, "[ppth]");
        is("{score}", "1", 1.0);
        same(1.0, "wk", 7.0, "d");
        same(1.0, "d", 24.0, "h");
        same(1.0, "h", 3600.0, "s");
        same(2.0, "L/min", 2.0 / 60.0, "L/s");
        same(1.0, "mL/min/{1.73_m2}", 1.0, "mL/min");
        same(2000.0, "kcal", 2000.0, "[Cal]");
        same(1.0, "cal", 4.184, "J");
        same(1.0, "erg", 1e-7, "J");
        same(1.0, "cP", 1.0, "mPa.s");
        same(1.0, "mCi", 37.0, "MBq");
        same(1.0, "mg/kg/d", 1.0, "ug/g/d");
        is("1000", "1", 1000.0);
        is("K", "K", 1.0);
        is("10*", "1", 10.0);
        is("m2.5", "m2", 5.0);
    }

    #[test]
    fn dimensionless_units_only_compare_with_themselves_in_search() {
        assert_eq!(search_canonical("%").unwrap().unit, "1 %");
        assert_eq!(search_canonical("{score}").unwrap().unit, "1 {score}");
        assert_ne!(search_canonical("%"), search_canonical("{score}"));
        assert_eq!(search_canonical("mmol/L"), canonical("mmol/L"));
    }

    #[test]
    fn canonical_text_is_deterministic() {
        assert_eq!(c("m-3.mol").unit, "mol.m-3");
        assert_eq!(c("s-2.m-1.g").unit, c("Pa").unit);
        assert_eq!(c("m/m").unit, "1");
        assert_eq!(c("mol/(L.s)").unit, "mol.m-3.s-1");
        assert_eq!(c("[iU]/d").unit, "[iU].s-1");
    }

    #[test]
    fn rejections() {
        for code in [
            "",
            "Cel",
            "[degF]",
            "mo",
            "a",
            "mo_j",
            "a_j",
            "[pH]",
            "garbage",
            "kg/",
            "/",
            "m//s",
            "(kg",
            "kg)",
            "m.",
            "mg {x}",
            "{unclosed",
            "kmin",
            "k[lb_av]",
            "k[arb'U]",
            "dB",
            "[HPF]",
            "m[Hg",
            "MG",
            "mEq/L",
            "m-",
            "m99999",
            "10*999",
            "10*-999",
            "0",
            "2mg",
            "\u{e9}",
        ] {
            assert_eq!(canonical(code), None, "{code:?}");
        }
    }
}
