//! Lexical rules of the R4 primitive types (https://hl7.org/fhir/R4/datatypes.html).
//!
//! Each check is a hand-written equivalent of the type's regex in the specification, plus the
//! calendar rules the regexes cannot express (no 31 April, no 29 February 2023). They run on
//! every primitive of every request, so they neither allocate on success nor compile anything.
//! An `Err` carries a sentence saying what is wrong and what form is expected.

use crate::fhir::definitions::Primitive;

/// The JSON type a primitive is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    String,
    Number,
    Boolean,
}

impl JsonKind {
    pub fn describe(self) -> &'static str {
        match self {
            JsonKind::String => "a JSON string",
            JsonKind::Number => "a JSON number",
            JsonKind::Boolean => "JSON true or false",
        }
    }
}

pub fn json_kind(p: Primitive) -> JsonKind {
    match p {
        Primitive::Boolean => JsonKind::Boolean,
        Primitive::Decimal
        | Primitive::Integer
        | Primitive::PositiveInt
        | Primitive::UnsignedInt => JsonKind::Number,
        _ => JsonKind::String,
    }
}

/// FHIR caps `string` (and the types derived from it) at 1 MiB.
pub const MAX_STRING_BYTES: usize = 1024 * 1024;

/// Whether the 1 MiB limit applies: `string` and its specialisations.
pub fn has_size_limit(p: Primitive) -> bool {
    matches!(
        p,
        Primitive::String | Primitive::Code | Primitive::Id | Primitive::Markdown
    )
}

/// Whitespace as in the specification's regexes (Java's `\s`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Empty or made only of the whitespace the specification's regexes know (a no-break space is
/// content, as it is for them: HL7's own v2-0550 code system has a code U+00A0).
pub fn is_blank(s: &str) -> bool {
    s.bytes().all(is_space)
}

/// The first character below U+0020 other than tab, CR and LF, with its position (1-based,
/// in characters). R4 strings SHALL NOT contain them, and nor can the other primitives
/// written as JSON strings (their lexical forms exclude them, and XML cannot carry them).
pub fn control_character(s: &str) -> Option<(usize, char)> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let bytes = s.as_bytes();
    let forbidden = |b: u8| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r');
    let found = |at: usize| Some((s[..at].chars().count() + 1, char::from(bytes[at])));
    // Every string of every request comes here, narratives included: eight bytes at a time
    // (`x - 0x20..20 & !x & 0x80..80` is non-zero exactly when a byte is below 0x20), byte by
    // byte only in the words that have one (tabs and line breaks do).
    let mut i = 0;
    while let Some(word) = bytes[i..].first_chunk::<8>() {
        let x = u64::from_le_bytes(*word);
        if x.wrapping_sub(LOW * 0x20) & !x & HIGH != 0 {
            if let Some(j) = word.iter().position(|&b| forbidden(b)) {
                return found(i + j);
            }
        }
        i += 8;
    }
    let j = bytes[i..].iter().position(|&b| forbidden(b))?;
    found(i + j)
}

/// Checks the lexical form of a primitive written as a JSON string. Emptiness, size and
/// control characters are the caller's business.
pub fn check_string(p: Primitive, s: &str) -> Result<(), String> {
    match p {
        Primitive::String | Primitive::Markdown => Ok(()),
        Primitive::Code => code(s),
        Primitive::Id => id(s),
        Primitive::Uri | Primitive::Url | Primitive::Canonical => uri(s),
        Primitive::Oid => oid(s),
        Primitive::Uuid => uuid(s),
        Primitive::Base64Binary => base64(s),
        Primitive::Date => date(s),
        Primitive::DateTime => date_time(s),
        Primitive::Instant => instant(s),
        Primitive::Time => time(s).map_err(|e| format!("{e}; expected hh:mm:ss[.fff]")),
        Primitive::Xhtml => super::xhtml::check(s),
        Primitive::Boolean
        | Primitive::Decimal
        | Primitive::Integer
        | Primitive::PositiveInt
        | Primitive::UnsignedInt => Err(format!("{p} is not written as a JSON string")),
    }
}

/// Checks a number's source text (the crate keeps it, with `arbitrary_precision`).
pub fn check_number(p: Primitive, text: &str) -> Result<(), String> {
    match p {
        Primitive::Decimal => decimal(text),
        Primitive::Integer => integer(text, i64::from(i32::MIN)),
        Primitive::PositiveInt => integer(text, 1),
        Primitive::UnsignedInt => integer(text, 0),
        _ => Err(format!("{p} is not written as a JSON number")),
    }
}

fn code(s: &str) -> Result<(), String> {
    // [^\s]+( [^\s]+)*
    let bytes = s.as_bytes();
    if bytes.first().copied().is_some_and(is_space) || bytes.last().copied().is_some_and(is_space) {
        return Err("a code has no leading or trailing whitespace".into());
    }
    let mut previous_space = false;
    for &b in bytes {
        if is_space(b) {
            if b != b' ' || previous_space {
                return Err(
                    "a code may only contain single spaces between its parts (no tabs, \
                     newlines or double spaces)"
                        .into(),
                );
            }
            previous_space = true;
        } else {
            previous_space = false;
        }
    }
    Ok(())
}

fn id(s: &str) -> Result<(), String> {
    // [A-Za-z0-9\-\.]{1,64}
    if s.len() > 64 {
        return Err(format!(
            "an id has at most 64 characters, this one has {}",
            s.len()
        ));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        Some(c) => Err(format!(
            "an id may only contain letters, digits, '-' and '.', found {c:?}"
        )),
        None => Ok(()),
    }
}

fn uri(s: &str) -> Result<(), String> {
    // \S*
    if s.bytes().any(is_space) {
        return Err("a URI cannot contain whitespace; percent-encode it (%20)".into());
    }
    Ok(())
}

fn oid(s: &str) -> Result<(), String> {
    // urn:oid:[0-2](\.(0|[1-9][0-9]*))+
    const EXPECTED: &str = "expected urn:oid: followed by dotted numbers starting with 0, 1 or 2, \
                            e.g. urn:oid:1.2.250.1.213";
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return Err(format!("missing the urn:oid: prefix; {EXPECTED}"));
    };
    let mut arcs = rest.split('.');
    let first = arcs.next().unwrap_or("");
    if !matches!(first, "0" | "1" | "2") {
        return Err(format!("the first arc must be 0, 1 or 2; {EXPECTED}"));
    }
    let mut count = 0;
    for arc in arcs {
        count += 1;
        let digits = !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit());
        if !digits || (arc.len() > 1 && arc.starts_with('0')) {
            return Err(format!(
                "arc {arc:?} is not a number without leading zeros; {EXPECTED}"
            ));
        }
    }
    if count == 0 {
        return Err(format!("an OID has at least two arcs; {EXPECTED}"));
    }
    Ok(())
}

fn uuid(s: &str) -> Result<(), String> {
    // urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}
    const EXPECTED: &str =
        "expected urn:uuid: followed by a lowercase UUID, e.g. urn:uuid:c757873d-ec9a-4326-a141-556f43239520";
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return Err(format!("missing the urn:uuid: prefix; {EXPECTED}"));
    };
    let groups = [8, 4, 4, 4, 12];
    let parts: Vec<&str> = rest.split('-').collect();
    let ok = parts.len() == groups.len()
        && parts.iter().zip(groups).all(|(part, len)| {
            part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
    if ok {
        Ok(())
    } else {
        Err(EXPECTED.into())
    }
}

fn base64(s: &str) -> Result<(), String> {
    // (\s*([0-9a-zA-Z\+/=]){4}\s*)+ , with padding only at the end
    let mut count = 0usize;
    let mut padding = 0usize;
    for b in s.bytes() {
        if is_space(b) {
            continue;
        }
        match b {
            b'=' => padding += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' if padding == 0 => {}
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => {
                return Err("base64 padding '=' may only appear at the end".into())
            }
            _ => {
                return Err(format!(
                    "{:?} is not a base64 character (A-Z, a-z, 0-9, +, /, = padding)",
                    b as char
                ))
            }
        }
        count += 1;
    }
    if padding > 2 {
        return Err("base64 ends with at most two '=' padding characters".into());
    }
    if !count.is_multiple_of(4) {
        return Err(format!(
            "base64 comes in groups of 4 characters, this has {count} (check for truncation or missing '=' padding)"
        ));
    }
    Ok(())
}

fn decimal(text: &str) -> Result<(), String> {
    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  (JSON's own number grammar)
    let mut b = text.as_bytes();
    if let [b'-', rest @ ..] = b {
        b = rest;
    }
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len == 0 || (int_len > 1 && b[0] == b'0') {
        return Err(format!("{text} is not a decimal"));
    }
    b = &b[int_len..];
    if let [b'.', rest @ ..] = b {
        let frac = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if frac == 0 {
            return Err(format!(
                "{text} is not a decimal: digits must follow the '.'"
            ));
        }
        b = &rest[frac..];
    }
    if let [b'e' | b'E', rest @ ..] = b {
        let rest = match rest {
            [b'+' | b'-', r @ ..] => r,
            r => r,
        };
        let exp = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if exp == 0 {
            return Err(format!(
                "{text} is not a decimal: the exponent has no digits"
            ));
        }
        b = &rest[exp..];
    }
    if b.is_empty() {
        Ok(())
    } else {
        Err(format!("{text} is not a decimal"))
    }
}

/// `-?([0]|([1-9][0-9]*))` within `[min, 2^31-1]`.
fn integer(text: &str, min: i64) -> Result<(), String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.len() > 1 && digits.starts_with('0'));
    if !well_formed {
        return Err(format!(
            "{text} is not a whole number: no fraction, exponent or leading zeros allowed"
        ));
    }
    let value = if digits.len() > 11 {
        None
    } else {
        text.parse::<i64>().ok()
    };
    match value {
        Some(v) if v >= min && v <= i64::from(i32::MAX) => Ok(()),
        _ => Err(format!(
            "{text} is out of range: expected {min} to {} (32-bit)",
            i32::MAX
        )),
    }
}

// ------------------------------------------------------------------------ dates and times

const DATE_FORMS: &str = "expected YYYY, YYYY-MM or YYYY-MM-DD";
const DATE_TIME_FORMS: &str = "expected YYYY, YYYY-MM, YYYY-MM-DD or \
    YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm), with a time zone whenever a time is given";
const INSTANT_FORM: &str = "expected YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm): \
    an instant has seconds and a time zone";

/// Exactly `n` ASCII digits as a number.
fn digits(s: &[u8], n: usize) -> Option<u32> {
    if s.len() < n || !s[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s[..n]
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
    )
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses `YYYY[-MM[-DD]]` at the start of `s`; returns the number of bytes used and whether
/// a full date was present.
fn date_prefix(s: &[u8]) -> Result<(usize, bool), String> {
    let year = digits(s, 4).ok_or("the year must have four digits")?;
    if year == 0 {
        return Err("year 0000 does not exist".into());
    }
    if s.len() == 4 || s[4] != b'-' {
        return Ok((4, false));
    }
    let month = digits(&s[5..], 2).ok_or("the month must have two digits")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month:02} is out of range 01-12"));
    }
    if s.len() == 7 || s[7] != b'-' {
        return Ok((7, false));
    }
    let day = digits(&s[8..], 2).ok_or("the day must have two digits")?;
    let last = days_in_month(year, month);
    if day == 0 || day > last {
        return Err(format!(
            "day {day:02} does not exist in {year:04}-{month:02} (1 to {last})"
        ));
    }
    Ok((10, true))
}

/// `hh:mm:ss(.f+)?` at the start of `s`; returns the bytes used.
fn time_prefix(s: &[u8]) -> Result<usize, String> {
    let hour = digits(s, 2).ok_or("the hour must have two digits")?;
    if hour > 23 {
        return Err(format!("hour {hour:02} is out of range 00-23"));
    }
    if s.get(2) != Some(&b':') {
        return Err("hours and minutes are separated by ':'".into());
    }
    let minute = digits(&s[3..], 2).ok_or("the minutes must have two digits")?;
    if minute > 59 {
        return Err(format!("minute {minute:02} is out of range 00-59"));
    }
    if s.get(5) != Some(&b':') {
        return Err("seconds are required (hh:mm:ss)".into());
    }
    let second = digits(&s[6..], 2).ok_or("the seconds must have two digits")?;
    if second > 60 {
        return Err(format!("second {second:02} is out of range 00-60"));
    }
    let mut used = 8;
    if s.get(8) == Some(&b'.') {
        let frac = s[9..].iter().take_while(|b| b.is_ascii_digit()).count();
        if frac == 0 {
            return Err("digits must follow the '.' of fractional seconds".into());
        }
        used += 1 + frac;
    }
    Ok(used)
}

/// `Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)`, the whole of `s`.
fn zone(s: &[u8]) -> Result<(), String> {
    match s {
        [] => Err("a time zone is required (Z, +hh:mm or -hh:mm)".into()),
        [b'Z'] => Ok(()),
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let hour = digits(&[*h1, *h2], 2);
            let minute = digits(&[*m1, *m2], 2);
            match (hour, minute) {
                (Some(h), Some(m)) if (h <= 13 && m <= 59) || (h == 14 && m == 0) => Ok(()),
                _ => Err("the time zone offset must be between -14:00 and +14:00".into()),
            }
        }
        _ => Err("bad time zone: expected Z, +hh:mm or -hh:mm".into()),
    }
}

fn date(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let (used, _) = date_prefix(b).map_err(|e| format!("{e}; {DATE_FORMS}"))?;
    if used != b.len() {
        return Err(if b.get(used) == Some(&b'T') {
            format!("a date has no time part; {DATE_FORMS} (use dateTime for a time)")
        } else {
            DATE_FORMS.into()
        });
    }
    Ok(())
}

fn date_time(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let with = |e: String| format!("{e}; {DATE_TIME_FORMS}");
    let (used, full_date) = date_prefix(b).map_err(with)?;
    if used == b.len() {
        return Ok(());
    }
    if !full_date || b[used] != b'T' {
        return Err(DATE_TIME_FORMS.into());
    }
    let time = time_prefix(&b[used + 1..]).map_err(with)?;
    zone(&b[used + 1 + time..]).map_err(with)
}

fn instant(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let with = |e: String| format!("{e}; {INSTANT_FORM}");
    let (used, full_date) = date_prefix(b).map_err(with)?;
    if !full_date || b.get(used) != Some(&b'T') {
        return Err(INSTANT_FORM.into());
    }
    let time = time_prefix(&b[used + 1..]).map_err(with)?;
    zone(&b[used + 1 + time..]).map_err(with)
}

fn time(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let used = time_prefix(b)?;
    if used != b.len() {
        return Err("unexpected characters after the time (a time has no time zone)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: Primitive, s: &str) {
        assert_eq!(check_string(p, s), Ok(()), "{p} {s:?} should be valid");
    }

    fn bad(p: Primitive, s: &str) {
        assert!(check_string(p, s).is_err(), "{p} {s:?} should be invalid");
    }

    #[test]
    fn dates() {
        for s in ["2024", "2024-02", "2024-02-29", "2000-02-29", "0001-01-01"] {
            ok(Primitive::Date, s);
        }
        for s in [
            "24",
            "2024-2",
            "2024-13",
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-00",
            "0000",
            "2024-01-01T10:00:00Z",
            "2024-01-01 ",
            "2024/01/01",
        ] {
            bad(Primitive::Date, s);
        }
    }

    #[test]
    fn date_times() {
        for s in [
            "2024",
            "2024-05",
            "2024-05-06",
            "2024-05-06T10:20:30Z",
            "2024-05-06T10:20:30.123+02:00",
            "2016-12-31T23:59:60Z",
            "2024-05-06T10:20:30-14:00",
        ] {
            ok(Primitive::DateTime, s);
        }
        for s in [
            "2024-05-06T10:20:30",
            "2024-05-06T10:20Z",
            "2024-05-06T24:00:00Z",
            "2024-05-06T10:20:30+15:00",
            "2024-05-06T10:20:30.Z",
            "2024-05T10:20:30Z",
            "2024-02-30T10:20:30Z",
            "2024-05-06T10:20:30+0200",
        ] {
            bad(Primitive::DateTime, s);
        }
    }

    #[test]
    fn instants_need_seconds_and_zone() {
        ok(Primitive::Instant, "2015-02-07T13:28:17.239+02:00");
        ok(Primitive::Instant, "2015-02-07T13:28:17Z");
        bad(Primitive::Instant, "2015-02-07");
        bad(Primitive::Instant, "2015-02-07T13:28:17");
        bad(Primitive::Instant, "2015-02-07T13:28Z");
    }

    #[test]
    fn times() {
        ok(Primitive::Time, "09:30:00");
        ok(Primitive::Time, "23:59:59.5");
        bad(Primitive::Time, "9:30:00");
        bad(Primitive::Time, "09:30");
        bad(Primitive::Time, "09:30:00Z");
        bad(Primitive::Time, "25:00:00");
    }

    #[test]
    fn numbers() {
        assert!(check_number(Primitive::Decimal, "1.50").is_ok());
        assert!(check_number(Primitive::Decimal, "-0.5e-10").is_ok());
        assert!(check_number(Primitive::Decimal, "01").is_err());
        assert!(check_number(Primitive::Integer, "-2147483648").is_ok());
        assert!(check_number(Primitive::Integer, "2147483648").is_err());
        assert!(check_number(Primitive::Integer, "1.0").is_err());
        assert!(check_number(Primitive::Integer, "1e3").is_err());
        assert!(check_number(Primitive::PositiveInt, "0").is_err());
        assert!(check_number(Primitive::PositiveInt, "1").is_ok());
        assert!(check_number(Primitive::UnsignedInt, "0").is_ok());
        assert!(check_number(Primitive::UnsignedInt, "-1").is_err());
        assert!(check_number(Primitive::Integer, "99999999999999999999999").is_err());
    }

    #[test]
    fn identifiers_and_uris() {
        ok(Primitive::Id, "a-B.9");
        bad(Primitive::Id, "a_b");
        bad(Primitive::Id, &"a".repeat(65));
        ok(Primitive::Code, "a b");
        bad(Primitive::Code, "a  b");
        bad(Primitive::Code, " a");
        bad(Primitive::Code, "a\tb");
        ok(Primitive::Uri, "http://example.org/a?b=c");
        bad(Primitive::Uri, "http://example.org/a b");
        ok(Primitive::Oid, "urn:oid:1.2.250.1.213");
        bad(Primitive::Oid, "urn:oid:3.2");
        bad(Primitive::Oid, "urn:oid:1");
        bad(Primitive::Oid, "urn:oid:1.02");
        bad(Primitive::Oid, "1.2.3");
        ok(
            Primitive::Uuid,
            "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
        );
        bad(
            Primitive::Uuid,
            "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
        );
        bad(Primitive::Uuid, "c757873d-ec9a-4326-a141-556f43239520");
    }

    #[test]
    fn base64_binary() {
        ok(Primitive::Base64Binary, "SGVsbG8=");
        ok(Primitive::Base64Binary, "SGVs\n bG8h");
        bad(Primitive::Base64Binary, "SGVsbG8");
        bad(Primitive::Base64Binary, "SGV=bG8h");
        bad(Primitive::Base64Binary, "SGVsbG8*");
        bad(Primitive::Base64Binary, "S===");
    }

    #[test]
    fn control_characters() {
        assert_eq!(control_character("Chalmers"), None);
        assert_eq!(control_character("a\tb\r\nc"), None);
        assert_eq!(control_character("Chal\u{1}mers"), Some((5, '\u{1}')));
        assert_eq!(control_character("é\u{0}"), Some((2, '\u{0}')));
        assert_eq!(control_character("\u{1f}"), Some((1, '\u{1f}')));
        assert_eq!(control_character("\u{7f}\u{85}"), None);
        // Every position of a long string, past the eight-byte words.
        for at in 0..40 {
            let mut text: Vec<char> = "é\tabcdefghij\r\nklmnopqrstuvwxyz0123456789ABCDEF"
                .chars()
                .take(40)
                .collect();
            assert_eq!(control_character(&text.iter().collect::<String>()), None);
            text[at] = '\u{1e}';
            let s: String = text.iter().collect();
            assert_eq!(control_character(&s), Some((at + 1, '\u{1e}')), "{s:?}");
        }
    }

    #[test]
    fn xhtml_div() {
        ok(
            Primitive::Xhtml,
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>hi</p></div>",
        );
        bad(Primitive::Xhtml, "<div><p>hi</p></div>");
        bad(
            Primitive::Xhtml,
            "<p xmlns=\"http://www.w3.org/1999/xhtml\">hi</p>",
        );
        bad(Primitive::Xhtml, "plain text");
    }
}
