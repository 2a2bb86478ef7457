//! Text normalisation for string search: lowercase, accents removed.
//!
//! Hand-written folding of the Latin letters of Latin-1 Supplement and Latin Extended-A (the
//! letters of French, and of the other Western and Central European languages), plus the
//! combining diacritical marks U+0300..U+036F (text sent in decomposed form). Other scripts are
//! only lowercased. Whitespace runs collapse to one space, and leading and trailing space goes.

/// `"  Élodie  DUPONT-Lefèvre "` -> `"elodie dupont-lefevre"`.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if ('\u{300}'..='\u{36f}').contains(&c) {
            // A combining mark: dropped.
        } else if let Some(folded) = fold(c) {
            out.push_str(folded);
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn fold(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'à'..='å' | 'Ā'..='ą' => "a",
        'Æ' | 'æ' => "ae",
        'Ç' | 'ç' | 'Ć'..='č' => "c",
        'Ď'..='đ' | 'Ð' | 'ð' => "d",
        'È'..='Ë' | 'è'..='ë' | 'Ē'..='ě' => "e",
        'Ĝ'..='ģ' => "g",
        'Ĥ'..='ħ' => "h",
        'Ì'..='Ï' | 'ì'..='ï' | 'Ĩ'..='ı' => "i",
        'Ĳ' | 'ĳ' => "ij",
        'Ĵ' | 'ĵ' => "j",
        'Ķ'..='ĸ' => "k",
        'Ĺ'..='ł' => "l",
        'Ñ' | 'ñ' | 'Ń'..='ŋ' => "n",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' | 'Ō'..='ő' => "o",
        'Œ' | 'œ' => "oe",
        'Ŕ'..='ř' => "r",
        'Ś'..='š' => "s",
        'ß' => "ss",
        'Ţ'..='ŧ' => "t",
        'Þ' | 'þ' => "th",
        'Ù'..='Ü' | 'ù'..='ü' | 'Ũ'..='ų' => "u",
        'Ŵ' | 'ŵ' => "w",
        'Ý' | 'ý' | 'ÿ' | 'Ŷ' | 'ŷ' | 'Ÿ' => "y",
        'Ź'..='ž' => "z",
        'ſ' => "s",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn folds_case_accents_and_spaces() {
        assert_eq!(
            normalize("  Élodie  DUPONT-Lefèvre "),
            "elodie dupont-lefevre"
        );
        assert_eq!(
            normalize("Œuvre Ça Ñandú Łódź Straße Ærø"),
            "oeuvre ca nandu lodz strasse aero"
        );
        assert_eq!(normalize("Zoë Ğ ÿ ŷ ǅ"), "zoe g y y ǆ");
        // Decomposed e + combining acute accent.
        assert_eq!(normalize("Cle\u{301}ment"), "clement");
        assert_eq!(normalize("Δήμητρα"), "δήμητρα");
        assert_eq!(normalize(""), "");
    }
}
