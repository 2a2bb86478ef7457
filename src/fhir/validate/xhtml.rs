//! Narrative XHTML (`Narrative.div`, the `xhtml` primitive): a small XML tokenizer and the R4
//! rules txt-1 and txt-2 (https://hl7.org/fhir/R4/narrative.html).
//!
//! A narrative is shown to people, often as HTML in a browser: whatever a client stores here
//! ends up in someone else's page. So this is an allow-list, not a deny-list:
//!
//! - **Well-formed XML**: every tag closed and properly nested, attributes quoted, no duplicate
//!   attribute, no `<` in attribute values, no `]]>` in text, comments terminated, and entity
//!   references limited to XML's five (`&lt;` `&gt;` `&amp;` `&quot;` `&apos;`) plus numeric
//!   ones (`&#160;`, `&#xA0;`) naming an XML character. HTML's named entities (`&nbsp;`,
//!   `&copy;`) are undefined in XML without a DTD, which FHIR forbids, so they are refused (the
//!   official examples write the character itself); no DOCTYPE, no processing instruction.
//! - **Read alike as XML and as HTML**: clients often render a narrative with an HTML parser,
//!   so what XML and HTML would read differently is refused, lest text to this check be markup
//!   to a browser: CDATA sections (HTML ends `<![CDATA[ x ><img onerror=...>` at the first
//!   `>`), comments starting with `>` or `->` (HTML closes `<!-->` at once). The official
//!   examples have neither.
//! - **One root `<div>`** declaring `xmlns="http://www.w3.org/1999/xhtml"`; only whitespace
//!   and comments around it; an `xmlns` elsewhere may only restate that namespace; no
//!   namespace prefixes (`xml:lang` and `xml:space` excepted).
//! - **txt-1**: the elements and attributes of the invariant's own list in the R4 definitions
//!   (its XPath), plus those the FHIR XHTML schema also allows (`address`, `bdo`, `kbd`,
//!   `map`, `area`; `xml:lang`, `xml:space`, `usemap`, `ismap`, `nohref`). Names are
//!   case-sensitive, as in XML: `<SCRIPT>` is not `<script>`, and neither is allowed. No event
//!   handler (`on*`) can pass, no element of active content (`script`, `object`, `iframe`,
//!   `form`, `style`, `link`...).
//! - **URLs** (`href`, `src`, `cite`, `longdesc`, `usemap`), read as a browser reads them
//!   (entities decoded, leading controls and spaces stripped, tabs and newlines removed):
//!   relative, or `http`, `https`, `ftp`, `mailto`, `tel`, `urn`; an image `src` may also be a
//!   `data:` URL of a raster image (`image/png`, `gif`, `jpeg`, `jpg`, `bmp`, `webp`), as in
//!   40,000 places of the official examples. Not `javascript:`, `vbscript:`, other `data:`
//!   (HTML, SVG), nor any other scheme: an allow-list also keeps out operating-system protocol
//!   handlers.
//! - **`style` attributes** are allowed (txt-1), without the constructs that ever ran code or
//!   hid it: backslash escapes, `expression(`, `javascript:`, `vbscript:`, `-moz-binding`,
//!   `behavior:`, `@import` (checked with comments and whitespace removed), and every `url(...)`
//!   must pass the image `src` rule.
//! - **txt-2**: some non-whitespace text, or an `<img>` with a `src`.
//!
//! Not checked: content models (which element may contain which) and the formats of attribute
//! values other than URLs and styles. Control characters are the caller's business (the
//! walker refuses them in every string before this runs). The cost is linear in the input:
//! no recursion, an open-element stack bounded by [`MAX_NESTING`], two scratch buffers, and
//! text scanned eight bytes at a time.

/// The XHTML namespace the root `<div>` must declare.
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";

/// How deeply elements may nest (the deepest official example nests 17).
pub const MAX_NESTING: usize = 256;

/// Checks a narrative; the error says what is wrong and where (line and column).
pub fn check(s: &str) -> Result<(), String> {
    let mut parser = Parser {
        s: s.as_bytes(),
        pos: 0,
        open: Vec::new(),
        attrs: Vec::new(),
        content: false,
        decoded: Vec::new(),
        css: Vec::new(),
    };
    parser.document().map_err(|e| e.describe(s))
}

/// An error at a byte offset of the narrative.
struct Error {
    at: usize,
    message: String,
}

impl Error {
    fn describe(&self, s: &str) -> String {
        let before = &s.as_bytes()[..self.at.min(s.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Columns count characters; UTF-8 continuation bytes are not characters.
        let column = 1 + before[line_start..]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count();
        format!("{} (line {line}, column {column})", self.message)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// The open elements (packed names, see [`pack`]), innermost last.
    open: Vec<u128>,
    /// Attribute names of the start tag being read, for duplicates.
    attrs: Vec<&'a [u8]>,
    /// txt-2: non-whitespace text or an image was seen.
    content: bool,
    /// An attribute value with its references decoded.
    decoded: Vec<u8>,
    /// A style attribute without comments and whitespace, lowercased.
    css: Vec<u8>,
}

/// Classes of bytes in text: content, whitespace, or one to look at (`<`, `&`, `>`, and 0xEF,
/// which starts U+FFFE and U+FFFF).
const CONTENT: u8 = 0;
const SPACE: u8 = 1;
const SPECIAL: u8 = 2;
static TEXT_CLASS: [u8; 256] = {
    let mut table = [CONTENT; 256];
    table[b' ' as usize] = SPACE;
    table[b'\t' as usize] = SPACE;
    table[b'\n' as usize] = SPACE;
    table[b'\r' as usize] = SPACE;
    table[b'<' as usize] = SPECIAL;
    table[b'&' as usize] = SPECIAL;
    table[b'>' as usize] = SPECIAL;
    table[0xEF] = SPECIAL;
    table
};

/// XML's whitespace (`S`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Bytes that may appear in an XML name, loosely: ASCII letters, digits, `_ : - .`, and any
/// non-ASCII character. Names are then compared with the allow-lists, which are ASCII.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-' | b'.') || b >= 0x80
}

/// At most 40 characters of a name or value, for diagnostics.
fn show(bytes: &[u8]) -> String {
    const LIMIT: usize = 40;
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

impl<'a> Parser<'a> {
    fn error(&self, at: usize, message: impl Into<String>) -> Error {
        Error {
            at,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        &self.s[self.pos.min(self.s.len())..]
    }

    /// Skips whitespace; whether there was any.
    fn skip_space(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn document(&mut self) -> Result<(), Error> {
        const EXPECTED: &str =
            "expected a single <div xmlns=\"http://www.w3.org/1999/xhtml\">...</div> element";
        self.misc()?;
        if self.peek() != Some(b'<') || !is_name_start(self.s.get(self.pos + 1).copied()) {
            let what = if self.pos >= self.s.len() {
                "the narrative is empty"
            } else {
                "the narrative does not start with <div"
            };
            return Err(self.error(self.pos, format!("{what}; {EXPECTED}")));
        }
        let root = self.pos;
        let (element, empty, namespaced) = self.start_tag()?;
        if element != pack(b"div") {
            return Err(self.error(
                root,
                format!(
                    "the root element is <{}>; {EXPECTED}",
                    show(&unpack(element))
                ),
            ));
        }
        if !namespaced {
            return Err(self.error(
                root,
                format!("the root <div> does not declare the XHTML namespace; {EXPECTED}"),
            ));
        }
        if !empty {
            self.open.push(element);
            self.content()?;
        }
        self.misc()?;
        if self.pos < self.s.len() {
            return Err(self.error(
                self.pos,
                format!("content after the root </div>; {EXPECTED}"),
            ));
        }
        if !self.content {
            return Err(self.error(
                0,
                "the narrative has no content (txt-2): it needs some non-whitespace text or an <img>",
            ));
        }
        Ok(())
    }

    /// Whitespace and comments, outside the root element.
    fn misc(&mut self) -> Result<(), Error> {
        loop {
            self.skip_space();
            if self.rest().starts_with(b"<!--") {
                self.comment()?;
            } else {
                return Ok(());
            }
        }
    }

    /// The content of the open elements, up to the end tag of the root.
    fn content(&mut self) -> Result<(), Error> {
        loop {
            let Some(b) = self.peek() else {
                let open = unpack(self.open.last().copied().unwrap_or(0));
                return Err(self.error(
                    self.s.len(),
                    format!(
                        "the narrative ends before </{}>: every element must be closed",
                        show(&open)
                    ),
                ));
            };
            match b {
                b'<' => match self.s.get(self.pos + 1) {
                    Some(b'/') => {
                        self.end_tag()?;
                        if self.open.is_empty() {
                            return Ok(());
                        }
                    }
                    Some(b'!') => {
                        if self.rest().starts_with(b"<!--") {
                            self.comment()?;
                        } else if self.rest().starts_with(b"<![CDATA[") {
                            return Err(self.error(
                                self.pos,
                                "CDATA sections are not allowed in a narrative: an HTML parser does not know them and reads markup inside as markup; write the text with &lt; and &amp;",
                            ));
                        } else {
                            return Err(self.error(
                                self.pos,
                                "markup declarations (<!DOCTYPE, <!ENTITY...) are not allowed in a narrative",
                            ));
                        }
                    }
                    Some(b'?') => {
                        return Err(self.error(
                            self.pos,
                            "processing instructions (<?...?>) are not allowed in a narrative",
                        ))
                    }
                    _ => {
                        let at = self.pos;
                        let (element, empty, _) = self.start_tag()?;
                        if !empty {
                            if self.open.len() >= MAX_NESTING {
                                return Err(self.error(
                                    at,
                                    format!("elements are nested more than {MAX_NESTING} deep"),
                                ));
                            }
                            self.open.push(element);
                        }
                    }
                },
                b'&' => {
                    let (len, c) =
                        reference(self.s, self.pos).map_err(|m| self.error(self.pos, m))?;
                    if !is_space_char(c) {
                        self.content = true;
                    }
                    self.pos += len;
                }
                _ => self.text()?,
            }
        }
    }

    /// Character data up to the next `<` or `&`.
    fn text(&mut self) -> Result<(), Error> {
        let s = self.s;
        let start = self.pos;
        let mut i = start;
        loop {
            if self.content {
                // Most of a narrative is text: only the bytes that matter, 8 at a time.
                i = find_any(s, i, [b'<', b'&', b'>', 0xEF]);
            } else {
                // txt-2 is still open: whitespace is skipped, anything else is content.
                while i < s.len() && TEXT_CLASS[usize::from(s[i])] == SPACE {
                    i += 1;
                }
                if i < s.len() && TEXT_CLASS[usize::from(s[i])] == CONTENT {
                    self.content = true;
                    continue;
                }
            }
            let Some(&b) = s.get(i) else { break };
            match b {
                b'<' | b'&' => break,
                b'>' if i >= start + 2 && s[i - 1] == b']' && s[i - 2] == b']' => {
                    return Err(self.error(i - 2, "']]>' is not allowed in text; write ]]&gt;"));
                }
                0xEF if s.get(i + 1) == Some(&0xBF)
                    && matches!(s.get(i + 2), Some(0xBE | 0xBF)) =>
                {
                    return Err(self.error(i, "U+FFFE and U+FFFF are not XML characters"));
                }
                _ => {
                    self.content = true;
                    i += 1;
                }
            }
        }
        self.pos = i;
        Ok(())
    }

    /// `<!-- ... -->`, without `--` inside, and read alike by XML and HTML parsers: HTML
    /// closes `<!-->` and `<!--->` at once, so what XML would take for the rest of the comment
    /// (`<!--><img onerror=...>-->`) would be markup to a browser.
    fn comment(&mut self) -> Result<(), Error> {
        let start = self.pos;
        let body = &self.s[start + 4..];
        if body.starts_with(b">") || body.starts_with(b"->") {
            return Err(self.error(
                start,
                "a comment may not start with '>' or '->' (HTML ends it there: <!--> and <!--->)",
            ));
        }
        match find(body, b"--") {
            Some(i) if body.get(i + 2) == Some(&b'>') => {
                self.pos = start + 4 + i + 3;
                Ok(())
            }
            Some(i) => Err(self.error(start + 4 + i, "'--' is not allowed inside a comment")),
            None => Err(self.error(start, "the comment is not closed with -->")),
        }
    }

    /// `</name>`, which must close the innermost open element.
    fn end_tag(&mut self) -> Result<(), Error> {
        let start = self.pos;
        self.pos += 2;
        let name = self.name();
        self.skip_space();
        if name.is_empty() || self.peek() != Some(b'>') {
            return Err(self.error(start, "malformed end tag: expected </name>"));
        }
        self.pos += 1;
        match self.open.last() {
            Some(&open) if Some(open) == packed(name) => {
                self.open.pop();
                Ok(())
            }
            Some(&open) => Err(self.error(
                start,
                format!(
                    "</{}> does not close the open <{}>: elements must be properly nested",
                    show(name),
                    show(&unpack(open))
                ),
            )),
            None => Err(self.error(start, format!("</{}> closes nothing", show(name)))),
        }
    }

    /// Reads a name; empty if there is none here.
    fn name(&mut self) -> &'a [u8] {
        let s = self.s;
        let start = self.pos.min(s.len());
        let len = s[start..].iter().take_while(|&&b| is_name_byte(b)).count();
        self.pos = start + len;
        &s[start..start + len]
    }

    /// A start tag at `<`: its element (packed name), whether it is empty (`/>`), and whether
    /// it declares the XHTML namespace.
    fn start_tag(&mut self) -> Result<(u128, bool, bool), Error> {
        let start = self.pos;
        self.pos += 1;
        let name = self.name();
        if name.is_empty() || !is_name_start(name.first().copied()) {
            return Err(self.error(start, "'<' must start a tag; write &lt; for a literal '<'"));
        }
        let Some(element) = ELEMENTS.get(name) else {
            return Err(self.error(start, element_refusal(name)));
        };
        self.attrs.clear();
        let mut namespaced = false;
        loop {
            let spaced = self.skip_space();
            match self.peek() {
                None => {
                    return Err(self.error(
                        start,
                        format!("the start tag <{}> is not closed with '>'", show(name)),
                    ))
                }
                Some(b'>') => {
                    self.pos += 1;
                    return Ok((element, false, namespaced));
                }
                Some(b'/') if self.s.get(self.pos + 1) == Some(&b'>') => {
                    self.pos += 2;
                    return Ok((element, true, namespaced));
                }
                Some(_) if !spaced => {
                    return Err(self.error(
                        self.pos,
                        format!(
                            "malformed start tag <{}>: attributes are name=\"value\" pairs separated by whitespace",
                            show(name)
                        ),
                    ))
                }
                Some(_) => {
                    if self.attribute(name)? {
                        namespaced = true;
                    }
                }
            }
        }
    }

    /// One `name="value"` of element `element`; whether it is the XHTML namespace declaration.
    fn attribute(&mut self, element: &'a [u8]) -> Result<bool, Error> {
        let start = self.pos;
        let attr = self.name();
        if attr.is_empty() || !is_name_start(attr.first().copied()) {
            return Err(self.error(
                start,
                format!(
                    "malformed start tag <{}>: attributes are name=\"value\" pairs",
                    show(element)
                ),
            ));
        }
        self.skip_space();
        if self.peek() != Some(b'=') {
            return Err(self.error(
                start,
                format!(
                    "attribute '{}' has no value: XML attributes are always name=\"value\"",
                    show(attr)
                ),
            ));
        }
        self.pos += 1;
        self.skip_space();
        let quote = match self.peek() {
            Some(q @ (b'"' | b'\'')) => q,
            _ => {
                return Err(self.error(
                    start,
                    format!("the value of attribute '{}' must be quoted", show(attr)),
                ))
            }
        };
        self.pos += 1;
        let value_start = self.pos;
        let mut escaped = false;
        loop {
            self.pos = find_any(self.s, self.pos, [quote, b'&', b'<', quote]);
            match self.peek() {
                None => {
                    return Err(self.error(
                        start,
                        format!("the value of attribute '{}' is not closed", show(attr)),
                    ))
                }
                Some(b) if b == quote => break,
                Some(b'<') => {
                    return Err(self.error(
                        self.pos,
                        format!(
                            "'<' is not allowed in the value of attribute '{}'; write &lt;",
                            show(attr)
                        ),
                    ))
                }
                Some(b'&') => {
                    let (len, _) =
                        reference(self.s, self.pos).map_err(|m| self.error(self.pos, m))?;
                    escaped = true;
                    self.pos += len;
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = &self.s[value_start..self.pos];
        self.pos += 1;

        if self.attrs.contains(&attr) {
            return Err(self.error(
                start,
                format!(
                    "attribute '{}' appears twice in <{}>",
                    show(attr),
                    show(element)
                ),
            ));
        }
        if attr.len() > 2 && attr[..2].eq_ignore_ascii_case(b"on") {
            return Err(self.error(
                start,
                format!(
                    "event-handler attribute '{}' is not allowed in a narrative (txt-1: no scripts)",
                    show(attr)
                ),
            ));
        }
        if attr.starts_with(b"xmlns:") {
            return Err(self.error(
                start,
                format!(
                    "namespace prefix declaration '{}' is not allowed: narrative elements are unprefixed XHTML",
                    show(attr)
                ),
            ));
        }
        if attr != b"xmlns" && !allowed_attribute(attr) {
            return Err(self.error(
                start,
                format!(
                    "attribute '{}' is not allowed on <{}> in a narrative (txt-1: basic HTML formatting attributes only)",
                    show(attr),
                    show(element)
                ),
            ));
        }
        // The attribute is bounded by the allow-list, so this stays small.
        self.attrs.push(attr);

        let value: &[u8] = if escaped {
            decode(raw, &mut self.decoded);
            &self.decoded
        } else {
            raw
        };
        let checked = match attr {
            b"xmlns" if value == XHTML_NS.as_bytes() => return Ok(true),
            b"xmlns" => Err(format!("only the XHTML namespace {XHTML_NS} is allowed")),
            b"href" | b"cite" | b"longdesc" | b"usemap" => link_url(value),
            b"src" => {
                if element == b"img" {
                    self.content = true;
                }
                image_url(value)
            }
            b"style" => style(value, &mut self.css),
            _ => Ok(()),
        };
        checked.map_err(|m| {
            self.error(
                start,
                format!(
                    "attribute {}=\"{}\" of <{}>: {m}",
                    show(attr),
                    show(value),
                    show(element)
                ),
            )
        })?;
        Ok(false)
    }
}

fn is_name_start(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80)
}

/// XML's whitespace characters, as a code point.
fn is_space_char(c: u32) -> bool {
    matches!(c, 0x20 | 0x09 | 0x0A | 0x0D)
}

/// The first position at or after `from` holding one of `needles`, or `s.len()`: eight bytes
/// at a time (a zero byte in `word ^ needle` marks a match), then byte by byte in the word
/// that has one.
fn find_any(s: &[u8], from: usize, needles: [u8; 4]) -> usize {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has = |word: u64, needle: u8| {
        let x = word ^ (LOW * u64::from(needle));
        x.wrapping_sub(LOW) & !x & HIGH
    };
    let mut i = from.min(s.len());
    while let Some(chunk) = s[i..].first_chunk::<8>() {
        let word = u64::from_le_bytes(*chunk);
        let hit = has(word, needles[0])
            | has(word, needles[1])
            | has(word, needles[2])
            | has(word, needles[3]);
        if hit != 0 {
            break;
        }
        i += 8;
    }
    while i < s.len() && !needles.contains(&s[i]) {
        i += 1;
    }
    i
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The entity or character reference at `s[at] == '&'`: its length and the character.
fn reference(s: &[u8], at: usize) -> Result<(usize, u32), String> {
    // Enough for any reference worth a precise diagnostic (`&#x10FFFF;`, `&thetasym;`).
    const LONGEST: usize = 32;
    let window = &s[at + 1..s.len().min(at + 1 + LONGEST)];
    const NOT_A_REFERENCE: &str = "'&' must start a reference (&amp; &lt; &gt; &quot; &apos; or &#...;); write &amp; for a literal '&'";
    let Some(semi) = window.iter().position(|&b| b == b';') else {
        return Err(NOT_A_REFERENCE.into());
    };
    let body = &window[..semi];
    let c = match body {
        b"lt" => u32::from(b'<'),
        b"gt" => u32::from(b'>'),
        b"amp" => u32::from(b'&'),
        b"quot" => u32::from(b'"'),
        b"apos" => u32::from(b'\''),
        [b'#', b'x', hex @ ..] => number(hex, 16)?,
        [b'#', dec @ ..] => number(dec, 10)?,
        name if name.is_empty() || !name.iter().all(u8::is_ascii_alphanumeric) => {
            return Err(NOT_A_REFERENCE.into());
        }
        name => {
            let suggestion = if name == b"nbsp" {
                " (&#160; for &nbsp;)".to_string()
            } else {
                String::new()
            };
            return Err(format!(
                "the entity &{}; is not defined: XML, and so FHIR narrative, only knows &amp; &lt; &gt; &quot; &apos;; write the character itself or a numeric reference{suggestion}",
                show(name)
            ));
        }
    };
    Ok((semi + 2, c))
}

/// The digits of a character reference, which must name an XML character.
fn number(digits: &[u8], radix: u32) -> Result<u32, String> {
    let mut value: u32 = 0;
    if digits.is_empty() {
        return Err("empty character reference".into());
    }
    for &d in digits {
        let Some(v) = char::from(d).to_digit(radix) else {
            return Err(format!(
                "malformed character reference &#{}{};",
                if radix == 16 { "x" } else { "" },
                show(digits)
            ));
        };
        value = value.saturating_mul(radix).saturating_add(v);
    }
    let xml_char =
        matches!(value, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF);
    if !xml_char {
        return Err(format!(
            "the character reference to U+{value:04X} does not name an XML character (no control characters, surrogates, U+FFFE or U+FFFF)"
        ));
    }
    Ok(value)
}

/// `raw` with its (already validated) references replaced by their characters.
fn decode(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'&' {
            if let Ok((len, c)) = reference(raw, i) {
                let c = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += len;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
}

// ---------------------------------------------------------------------------- allow-lists

/// txt-1's elements (the XPath of the invariant in the R4 definitions) and those the FHIR
/// XHTML schema adds (address, area, bdo, kbd, map).
fn allowed_element(name: &[u8]) -> bool {
    ELEMENTS.get(name).is_some()
}

const ELEMENT_NAMES: &[&[u8]] = &[
    b"a",
    b"abbr",
    b"acronym",
    b"address",
    b"area",
    b"b",
    b"bdo",
    b"big",
    b"blockquote",
    b"br",
    b"caption",
    b"cite",
    b"code",
    b"col",
    b"colgroup",
    b"dd",
    b"dfn",
    b"div",
    b"dl",
    b"dt",
    b"em",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"hr",
    b"i",
    b"img",
    b"kbd",
    b"li",
    b"map",
    b"ol",
    b"p",
    b"pre",
    b"q",
    b"samp",
    b"small",
    b"span",
    b"strong",
    b"sub",
    b"sup",
    b"table",
    b"tbody",
    b"td",
    b"tfoot",
    b"th",
    b"thead",
    b"tr",
    b"tt",
    b"ul",
    b"var",
];
static ELEMENTS: NameSet = NameSet::new(ELEMENT_NAMES, 0x3a40_872f_f95b_7d8f);

/// Why an element is refused, naming the usual suspects.
fn element_refusal(name: &[u8]) -> String {
    let lower = name.to_ascii_lowercase();
    let why = match lower.as_slice() {
        b"script" | b"noscript" => "no scripts",
        b"object" | b"applet" | b"embed" | b"param" | b"iframe" | b"frame" | b"frameset" => {
            "no embedded objects or frames"
        }
        b"form" | b"input" | b"button" | b"select" | b"option" | b"textarea" | b"label"
        | b"fieldset" | b"legend" => "no forms",
        b"style" | b"link" | b"meta" | b"base" | b"head" | b"body" | b"html" | b"title" => {
            "no document-level elements or external stylesheets"
        }
        b"ins" | b"del" => "no inserted/deleted text (HTML 4.0 section 9.4)",
        _ if allowed_element(&lower) => "element names are lowercase in XHTML",
        _ => "only the basic HTML formatting elements",
    };
    format!(
        "<{}> is not allowed in a narrative (txt-1: {why})",
        show(name)
    )
}

/// txt-1's attributes (the XPath of the invariant) and those the FHIR XHTML schema adds.
fn allowed_attribute(name: &[u8]) -> bool {
    ATTRIBUTES.get(name).is_some()
}

const ATTRIBUTE_NAMES: &[&[u8]] = &[
    b"abbr",
    b"accesskey",
    b"align",
    b"alt",
    b"axis",
    b"bgcolor",
    b"border",
    b"cellhalign",
    b"cellpadding",
    b"cellspacing",
    b"cellvalign",
    b"char",
    b"charoff",
    b"charset",
    b"cite",
    b"class",
    b"colspan",
    b"compact",
    b"coords",
    b"dir",
    b"frame",
    b"headers",
    b"height",
    b"href",
    b"hreflang",
    b"hspace",
    b"id",
    b"ismap",
    b"lang",
    b"longdesc",
    b"name",
    b"nohref",
    b"nowrap",
    b"rel",
    b"rev",
    b"rowspan",
    b"rules",
    b"scope",
    b"shape",
    b"span",
    b"src",
    b"start",
    b"style",
    b"summary",
    b"tabindex",
    b"title",
    b"type",
    b"usemap",
    b"valign",
    b"value",
    b"vspace",
    b"width",
    b"xml:lang",
    b"xml:space",
];
static ATTRIBUTES: NameSet = NameSet::new(ATTRIBUTE_NAMES, 0x314a_b55b_5aec_c7d7);

/// A name of at most 16 bytes as one number, bytes in order from the lowest. Names have no
/// NUL byte, so this is one-to-one, and 0 is no name.
const fn pack(name: &[u8]) -> u128 {
    let mut value = 0u128;
    let mut i = 0;
    while i < name.len() && i < 16 {
        value |= (name[i] as u128) << (8 * i);
        i += 1;
    }
    value
}

/// [`pack`], at run time.
fn packed(name: &[u8]) -> Option<u128> {
    if name.is_empty() || name.len() > 16 {
        return None;
    }
    // In registers: a copy into a buffer read back as a u128 stalled on store forwarding.
    let mut value = 0u128;
    for (i, &b) in name.iter().enumerate() {
        value |= u128::from(b) << (8 * i);
    }
    Some(value)
}

/// The name [`pack`] made `value` of.
fn unpack(value: u128) -> Vec<u8> {
    let bytes = value.to_le_bytes();
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..len].to_vec()
}

/// An allow-list as a perfect hash table, built at compile time: a lookup is one
/// multiplication, one shift and one comparison. (A binary search, and before it a `match` on
/// byte strings, showed in profiles: every tag and attribute of every narrative is looked up.)
struct NameSet {
    multiplier: u64,
    slots: [u128; 256],
}

impl NameSet {
    /// Tries multipliers from `seed` until every name has its own slot. The seeds in use
    /// succeed at once; after a change of list, the search finds another (or the build fails
    /// here, and a new seed is needed).
    const fn new(names: &[&[u8]], seed: u64) -> NameSet {
        let mut attempt: u64 = 0;
        while attempt < 4096 {
            let multiplier = seed.wrapping_add(attempt.wrapping_mul(0x9e37_79b9_7f4a_7c16)) | 1;
            let mut slots = [0u128; 256];
            let mut clash = false;
            let mut i = 0;
            while i < names.len() {
                assert!(
                    !names[i].is_empty() && names[i].len() <= 16,
                    "allow-listed names have 1 to 16 bytes"
                );
                let value = pack(names[i]);
                let slot = slot(value, multiplier);
                if slots[slot] != 0 {
                    clash = true;
                    break;
                }
                slots[slot] = value;
                i += 1;
            }
            if !clash {
                return NameSet { multiplier, slots };
            }
            attempt += 1;
        }
        panic!("no collision-free multiplier near the seed: choose another seed")
    }

    /// The packed name, if it is in the set.
    fn get(&self, name: &[u8]) -> Option<u128> {
        let value = packed(name)?;
        (self.slots[slot(value, self.multiplier)] == value).then_some(value)
    }
}

const fn slot(value: u128, multiplier: u64) -> usize {
    let folded = (value as u64) ^ ((value >> 64) as u64).rotate_left(29);
    (folded.wrapping_mul(multiplier) >> 56) as usize
}

// ---------------------------------------------------------------------------- URLs, CSS

/// The scheme of a URL as a browser sees it: leading controls and spaces skipped, tabs and
/// newlines ignored, lowercased. `None` for a relative URL.
enum Scheme {
    Relative,
    /// Lowercased, at most 16 bytes (longer ones are never allowed).
    Named([u8; 16], usize),
    TooLong,
}

fn scheme(url: &[u8]) -> (Scheme, usize) {
    let mut i = 0;
    while i < url.len() && url[i] <= b' ' {
        i += 1;
    }
    let mut name = [0u8; 16];
    let mut len = 0;
    while i < url.len() {
        let b = url[i];
        i += 1;
        match b {
            b'\t' | b'\n' | b'\r' => continue,
            b':' if len > 0 => {
                return if len > name.len() {
                    (Scheme::TooLong, i)
                } else {
                    (Scheme::Named(name, len), i)
                };
            }
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if len > 0 => {}
            _ => return (Scheme::Relative, 0),
        }
        if len < name.len() {
            name[len] = b.to_ascii_lowercase();
        }
        len += 1;
    }
    (Scheme::Relative, 0)
}

const LINK_SCHEMES: &str = "relative, http, https, ftp, mailto, tel or urn";

/// `href`, `cite`, `longdesc`, `usemap`.
fn link_url(url: &[u8]) -> Result<(), String> {
    match scheme(url).0 {
        Scheme::Relative => Ok(()),
        Scheme::Named(name, len) => match &name[..len] {
            b"http" | b"https" | b"ftp" | b"mailto" | b"tel" | b"urn" => Ok(()),
            other => Err(format!(
                "the URL scheme '{}:' is not allowed in a narrative link; expected {LINK_SCHEMES}",
                show(other)
            )),
        },
        Scheme::TooLong => Err(format!(
            "this URL scheme is not allowed in a narrative link; expected {LINK_SCHEMES}"
        )),
    }
}

const IMAGE_SOURCES: &str = "relative, http, https, or data:image/(png|gif|jpeg|jpg|bmp|webp)";

/// An image `src`, or a CSS `url(...)`.
fn image_url(url: &[u8]) -> Result<(), String> {
    let (scheme, after) = scheme(url);
    match scheme {
        Scheme::Relative => Ok(()),
        Scheme::Named(name, len) => match &name[..len] {
            b"http" | b"https" => Ok(()),
            b"data" => data_image(&url[after..]),
            other => Err(format!(
                "the URL scheme '{}:' is not allowed for an image; expected {IMAGE_SOURCES}",
                show(other)
            )),
        },
        Scheme::TooLong => Err(format!(
            "this URL scheme is not allowed for an image; expected {IMAGE_SOURCES}"
        )),
    }
}

/// What follows `data:`: a raster image type (SVG can carry scripts; HTML is a page).
fn data_image(rest: &[u8]) -> Result<(), String> {
    let rest = &rest[rest.iter().take_while(|&&b| b <= b' ').count()..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b';' | b',') || b <= b' ')
        .unwrap_or(rest.len());
    let media = rest[..end].to_ascii_lowercase();
    match media.as_slice() {
        b"image/png" | b"image/gif" | b"image/jpeg" | b"image/jpg" | b"image/bmp"
        | b"image/webp" => Ok(()),
        _ => Err(format!(
            "a data: URL of type '{}' is not allowed; expected {IMAGE_SOURCES}",
            show(&media)
        )),
    }
}

/// A `style` attribute: CSS, without what could run or smuggle code.
fn style(value: &[u8], css: &mut Vec<u8>) -> Result<(), String> {
    if value.contains(&b'\\') {
        return Err("backslash escapes are not allowed in a narrative style".into());
    }
    // Comments removed, whitespace removed, lowercase: `ex/**/pression (` cannot hide.
    css.clear();
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b == b'/' && value.get(i + 1) == Some(&b'*') {
            i = match find(&value[i + 2..], b"*/") {
                Some(end) => i + 2 + end + 2,
                None => value.len(),
            };
            continue;
        }
        if !(b.is_ascii_whitespace() || b < b' ') {
            css.push(b.to_ascii_lowercase());
        }
        i += 1;
    }
    // One pass: a `url(...)` is checked as an image source and skipped (data: URLs are
    // long), anything else must not start a banned construct.
    let mut i = 0;
    while i < css.len() {
        let rest = &css[i..];
        let banned: &[u8] = match rest[0] {
            b'u' if rest.starts_with(b"url(") => {
                let arg = &rest[4..];
                let end = arg.iter().position(|&b| b == b')').unwrap_or(arg.len());
                let mut url = &arg[..end];
                if let [q @ (b'"' | b'\''), inner @ ..] = url {
                    url = inner.strip_suffix(&[*q]).unwrap_or(inner);
                }
                image_url(url).map_err(|e| format!("in url(...): {e}"))?;
                i += 4 + end;
                continue;
            }
            b'e' => b"expression(",
            b'j' => b"javascript:",
            b'v' => b"vbscript:",
            b'-' => b"-moz-binding",
            b'b' => b"behavior:",
            b'@' => b"@import",
            _ => b"",
        };
        if !banned.is_empty() && rest.starts_with(banned) {
            return Err(format!(
                "'{}' is not allowed in a narrative style (it can run code)",
                show(banned)
            ));
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str = "<div xmlns=\"http://www.w3.org/1999/xhtml\">";

    fn div(inner: &str) -> String {
        format!("{OPEN}{inner}</div>")
    }

    fn ok(s: &str) {
        if let Err(e) = check(s) {
            panic!("{s:?} should be valid: {e}");
        }
    }

    /// Invalid, with a diagnostic containing `part`.
    fn bad(s: &str, part: &str) -> String {
        match check(s) {
            Ok(()) => panic!("{s:?} should be invalid"),
            Err(e) => {
                assert!(e.contains(part), "{s:?}: {e:?} should mention {part:?}");
                e
            }
        }
    }

    #[test]
    fn valid_narratives() {
        ok(&div("Marie"));
        ok(&format!("  \n{}\n ", div("x")));
        ok(&div("<p>a<br/>b<br></br></p>"));
        ok(&div(
            "<table class=\"grid\" border=\"0\"><tr><td colspan=\"2\" style=\"color: red\">1</td></tr></table>",
        ));
        ok(&div(
            "<a name=\"top\">x</a><a href=\"#top\">up</a><a href='Patient/1'>p</a>",
        ));
        ok(&div(
            "<a href=\"https://hl7.org/fhir\">x</a><a href=\"mailto:a@b.c\">m</a>",
        ));
        ok(&div("&lt;&gt;&amp;&quot;&apos;&#160;&#xA0;&#x1F600;"));
        ok(&div("<!-- note -->text<!---->"));
        ok(&div(
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">nested</div>",
        ));
        ok(&div(
            "<p xml:lang=\"fr\" lang=\"fr\" dir=\"ltr\">bonjour</p>",
        ));
        ok(&div(
            "<img src=\"data: image/png;base64,iVBORw0KGgo=\" alt=\"x\"/>",
        ));
        ok(&div("<img src=\"logo.png\" alt=\"\"/>"));
        ok(&div(
            "<td style=\"background-image: url(data: image/png;base64,iVBORw0KGgo=)\">x</td>",
        ));
        ok(&div("é ü 漢字 <span title=\"ñ\">ok</span>"));
    }

    #[test]
    fn the_root_is_one_namespaced_div() {
        bad(
            "<p xmlns=\"http://www.w3.org/1999/xhtml\">x</p>",
            "root element is <p>",
        );
        bad("<div>x</div>", "namespace");
        bad(
            "<div xmlns=\"http://www.w3.org/1999/html\">x</div>",
            "only the XHTML namespace",
        );
        bad("plain text", "does not start with <div");
        bad("", "empty");
        bad(&format!("{}{}", div("a"), div("b")), "after the root");
        bad(&format!("{} trailing", div("a")), "after the root");
    }

    #[test]
    fn well_formed_xml() {
        bad(&div("<p>Peter"), "</div> does not close the open <p>");
        bad(&format!("{OPEN}<p>Peter</p>"), "ends before </div>");
        bad(&div("<p>a</b></p>"), "</b> does not close the open <p>");
        bad(&div("<br>"), "</div> does not close the open <br>");
        bad(&div("<p class=x>a</p>"), "must be quoted");
        bad(&div("<p class>a</p>"), "has no value");
        bad(
            &div("<p class=\"a\"title=\"b\">a</p>"),
            "separated by whitespace",
        );
        bad(&div("<p class=\"a\" class=\"b\">a</p>"), "appears twice");
        bad(&div("<p title=\"a<b\">a</p>"), "'<' is not allowed");
        bad(&div("a < b"), "write &lt;");
        bad(&div("a ]]> b"), "']]>'");
        bad(&div("<!-- a -- b -->"), "'--'");
        bad(&div("<!-- a "), "not closed");
        bad(&div("<![CDATA[ a ]]>"), "CDATA sections are not allowed");
        bad(&div("<?php echo 1 ?>"), "processing instructions");
        bad(
            &format!("<!DOCTYPE div>{}", div("x")),
            "does not start with <div",
        );
        bad(&div("<!DOCTYPE x>"), "markup declarations");
    }

    /// What an HTML parser would read otherwise: text to this check, markup to a browser.
    #[test]
    fn read_alike_by_xml_and_html_parsers() {
        bad(
            &div("<![CDATA[ x ><img src=x onerror=alert(1)> ]]>"),
            "CDATA sections are not allowed",
        );
        bad(
            &div("<!--><img src=x onerror=alert(1)>-->"),
            "may not start with '>'",
        );
        bad(
            &div("<!---><img src=x onerror=alert(1)>-->"),
            "may not start with '>' or '->'",
        );
        bad(&div("x<!-- a --!><img src=x onerror=alert(1)> -->"), "'--'");
        ok(&div("x<!-- a - b -->"));
    }

    #[test]
    fn entities() {
        let e = bad(&div("a&nbsp;b"), "&nbsp;");
        assert!(e.contains("&#160;"), "{e}");
        bad(&div("&copy; 2024"), "&copy;");
        bad(&div("fish & chips"), "&amp;");
        bad(&div("&#1;"), "U+0001");
        bad(&div("&#xD800;"), "U+D800");
        bad(&div("&#xFFFE;"), "U+FFFE");
        bad(&div("&#99999999999;"), "XML character");
        bad(&div("&#x;"), "empty character reference");
        bad(&div("&#12a;"), "malformed");
        bad(&div("<a title=\"&nbsp;\">x</a>"), "&nbsp;");
        bad(&div("a\u{FFFF}b"), "U+FFFF");
    }

    #[test]
    fn txt_1_elements() {
        for tag in [
            "script", "object", "applet", "embed", "iframe", "form", "input", "button", "frame",
            "frameset", "meta", "link", "style", "base", "body", "svg", "math", "ins", "del",
            "font", "center", "u", "SCRIPT", "P",
        ] {
            let e = bad(&div(&format!("<{tag}>x</{tag}>")), &format!("<{tag}>"));
            assert!(e.contains("txt-1"), "{e}");
        }
        let e = bad(&div("<p>Peter</p><script>alert(1)</script>"), "<script>");
        assert!(e.contains("no scripts"), "{e}");
        assert!(e.contains("column 55"), "{e}");
        bad(
            &div("<svg:svg xmlns:svg=\"http://www.w3.org/2000/svg\"/>"),
            "<svg:svg>",
        );
    }

    #[test]
    fn txt_1_attributes() {
        for attr in ["onclick", "onload", "ONERROR", "onmouseover", "OnFocus"] {
            let e = bad(&div(&format!("<p {attr}=\"alert(1)\">x</p>")), attr);
            assert!(e.contains("event-handler"), "{e}");
        }
        bad(&div("<p xmlns:x=\"urn:x\">x</p>"), "namespace prefix");
        bad(&div("<p xml:base=\"http://evil\">x</p>"), "xml:base");
        bad(
            &div("<table background=\"x.png\"><tr><td>x</td></tr></table>"),
            "'background'",
        );
        bad(&div("<a target=\"_blank\" href=\"x\">x</a>"), "'target'");
        bad(&div("<p data-x=\"1\">x</p>"), "'data-x'");
    }

    #[test]
    fn urls() {
        for href in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " \u{1}javascript:alert(1)",
            "java\tscript:alert(1)",
            "java&#x09;script:alert(1)",
            "&#106;avascript:alert(1)",
            "vbscript:msgbox(1)",
            "data:text/html;base64,PHNjcmlwdD4=",
            "ms-msdt:/id",
            "file:///etc/passwd",
            "averyveryverylongschemename:x",
        ] {
            let s = div(&format!("<a href=\"{href}\">x</a>"));
            bad(&s, "not allowed");
        }
        for href in [
            "#x",
            "Patient/1",
            "//example.org/a",
            "?q=1",
            "a:b/../c",
            "urn:oid:1.2",
            "tel:+331",
        ] {
            let s = div(&format!("<a href=\"{href}\">x</a>"));
            if href == "a:b/../c" {
                bad(&s, "'a:'");
            } else {
                ok(&s);
            }
        }
        bad(
            &div("<img src=\"javascript:alert(1)\" alt=\"\"/>"),
            "not allowed for an image",
        );
        bad(
            &div("<img src=\"data:image/svg+xml;base64,PHN2Zz4=\" alt=\"\"/>"),
            "image/svg+xml",
        );
        bad(
            &div("<img src=\"data:text/html,x\" alt=\"\"/>"),
            "text/html",
        );
        ok(&div("<img src=\"DATA:IMAGE/PNG;base64,AAAA\" alt=\"\"/>"));
        bad(
            &div("<blockquote cite=\"javascript:x\">q</blockquote>"),
            "'javascript:'",
        );
        bad(
            &div("<img src=\"a.png\" alt=\"\" longdesc=\"vbscript:x\"/>"),
            "'vbscript:'",
        );
    }

    #[test]
    fn styles() {
        ok(&div("<p style=\"color: red; font-weight: bold\">x</p>"));
        ok(&div("<p style=\"background: url('a.png')\">x</p>"));
        bad(
            &div("<p style=\"width: expression(alert(1))\">x</p>"),
            "expression(",
        );
        bad(
            &div("<p style=\"width: ex/**/pression (alert(1))\">x</p>"),
            "expression(",
        );
        bad(
            &div("<p style=\"width: e\\78pression(alert(1))\">x</p>"),
            "backslash",
        );
        bad(
            &div("<p style=\"background: url(javascript:alert(1))\">x</p>"),
            "javascript:",
        );
        bad(
            &div("<p style=\"background: url( 'java&#x09;script:x' )\">x</p>"),
            "javascript:",
        );
        bad(
            &div("<p style=\"background: url( 'data:text/html,x' )\">x</p>"),
            "in url(...)",
        );
        bad(
            &div("<p style=\"background: url(\\'ftp://x/a.png\\')\">x</p>"),
            "backslash",
        );
        bad(
            &div("<p style=\"background: url(&quot;ftp://x/a.png&quot;)\">x</p>"),
            "'ftp:'",
        );
        bad(
            &div("<p style=\"-moz-binding: url(x.xml#x)\">x</p>"),
            "-moz-binding",
        );
        bad(&div("<p style=\"behavior: url(x.htc)\">x</p>"), "behavior:");
        bad(&div("<p style=\"@import 'x.css'\">x</p>"), "@import");
        bad(
            &div("<p style=\"background: url(data:image/svg+xml,x)\">x</p>"),
            "svg",
        );
    }

    #[test]
    fn txt_2_some_content() {
        let e = bad(&format!("{OPEN}</div>"), "txt-2");
        assert!(e.contains("line 1, column 1"), "{e}");
        bad("<div xmlns=\"http://www.w3.org/1999/xhtml\"/>", "txt-2");
        bad(&div(" \n\t<p> </p><br/><!-- x -->&#32;"), "txt-2");

        ok(&div("<p>&#160;</p>"));
        ok(&div("<p>&amp;</p>"));
        ok(&div("<img src=\"x.png\" alt=\"\"/>"));
    }

    #[test]
    fn positions_are_lines_and_columns() {
        let e = bad(
            &format!("{OPEN}\n<p>ok</p>\n  <é-script/>\n</div>"),
            "line 3, column 3",
        );
        assert!(e.contains("<é-script>"), "{e}");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "{}x{}",
            "<b>".repeat(MAX_NESTING + 1),
            "</b>".repeat(MAX_NESTING + 1)
        );
        bad(&div(&deep), "nested more than");
        let fine = format!("{}x{}", "<b>".repeat(100), "</b>".repeat(100));
        ok(&div(&fine));
    }

    #[test]
    fn never_panics_on_truncated_input() {
        let s =
            div("<p class=\"a&amp;b\" title='t'>x &#160; <!-- c --> <a href=\"#x\">y</a><br/></p>");
        for cut in 0..s.len() {
            if s.is_char_boundary(cut) {
                let _ = check(&s[..cut]);
            }
        }
        for tail in [
            "<", "</", "<p", "<p ", "<p a", "<p a=", "<p a=\"", "&", "&#", "&#x", "<!", "<!-",
            "<![CDATA",
        ] {
            let _ = check(&format!("{OPEN}{tail}"));
        }
    }
}
