//! The CAD's text as words for the vocabularies: what a value *says*, whatever its spelling.
//!
//! Each value is read on its own (never joined to another), in this order:
//! 1. HTML character references decoded (`&#80;ROTEST`, `&amp;#80;` twice over), then Unicode compatibility
//!    forms folded (NFKC: full-width letters, ligatures, superscripts), format and other default-ignorable
//!    characters removed (zero-width spaces and joiners, soft hyphens, byte-order marks), accents dropped.
//! 2. Look-alike letters of other scripts read as the Latin letter they imitate (the confusable skeleton of
//!    Unicode TR39, through `unicode-security`), upper case.
//! 3. A possessive `'S` dropped (`ICE'S` is `ICE`), other apostrophes joined (`PROTESTERS'`).
//! 4. Split into words at anything that is not a letter or a digit. Ordinals read as words (`2ND` is
//!    `SECOND`, `1ST` is `FIRST`); in a word with letters, digits read as the letters they imitate (`PR0TEST`,
//!    `1CE`; `1` read both as `I` and as `L`).
//! 5. Runs of single letters joined (`I.C.E.`, `P R O T E S T`), and common CAD abbreviations expanded
//!    ([`ABBREVIATIONS`]).
//!
//! A [`Word`] keeps what the value showed beside what it reads as, so a report can name the word it saw.

use unicode_normalization::UnicodeNormalization;

/// CAD abbreviations, expanded when a value is read as words (a word of the text equal to the first becomes the second).
pub const ABBREVIATIONS: &[(&str, &str)] = &[
    ("DEMO", "DEMONSTRATION"),
    ("DEMOS", "DEMONSTRATIONS"),
    ("DMNSTR", "DEMONSTRATION"),
    ("DEMSTR", "DEMONSTRATION"),
    ("PRTST", "PROTEST"),
    ("PROTST", "PROTEST"),
    ("GTHRNG", "GATHERING"),
    ("GATHRG", "GATHERING"),
    ("ASSMBLY", "ASSEMBLY"),
    ("ASSMBL", "ASSEMBLY"),
    ("DMNST", "DEMONSTRATION"),
    ("CIVUNREST", "CIVIL UNREST"),
    ("CIVDIST", "CIVIL DISTURBANCE"),
    ("UNLWFL", "UNLAWFUL"),
    ("CIV", "CIVIL"),
    ("CIVDIS", "CIVIL DISTURBANCE"),
    ("DISTURB", "DISTURBANCE"),
    ("DISTRB", "DISTURBANCE"),
    ("IMMIG", "IMMIGRATION"),
    ("IMMIGR", "IMMIGRATION"),
    ("BURG", "BURGLARY"),
    ("BURGL", "BURGLARY"),
    ("VEH", "VEHICLE"),
    ("ROBB", "ROBBERY"),
];

/// One word of a value: as shown (upper case, accents kept) and as read for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub shown: String,
    /// The word read for matching: Latin capitals and digits.
    pub canon: String,
    /// A second reading where a digit imitates two letters (`1` as `L` rather than `I`).
    pub alt: Option<String>,
}

impl Word {
    /// True when either reading is `w`.
    pub fn is(&self, w: &str) -> bool {
        self.canon == w || self.alt.as_deref() == Some(w)
    }

    /// The readings of this word.
    pub fn readings(&self) -> impl Iterator<Item = &str> {
        let shown = (self.shown != self.canon && self.shown.is_ascii()).then_some(self.shown.as_str());
        std::iter::once(self.canon.as_str()).chain(self.alt.as_deref()).chain(shown)
    }
}

/// HTML character references, decoded until none is left (at most three rounds: `&amp;#80;`).
fn decode_entities(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('&') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut s = text.to_string();
    for _ in 0..6 {
        let next = numeric_references(&html_escape::decode_html_entities(&s));
        if next == s {
            break;
        }
        s = next;
    }
    std::borrow::Cow::Owned(s)
}

/// Numeric character references a browser reads without their semicolon (`&#80ROTEST`, `&#x50ROTEST`).
fn numeric_references(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("&#") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let (hex, digits) = match after.strip_prefix(['x', 'X']) {
            Some(h) => (true, h),
            None => (false, after),
        };
        let n = digits.chars().take_while(|c| if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() }).count();
        let code = u32::from_str_radix(&digits[..n], if hex { 16 } else { 10 }).ok().and_then(char::from_u32);
        match code.filter(|_| n > 0 && n <= 7) {
            Some(c) => {
                out.push(c);
                rest = digits[n..].strip_prefix(';').unwrap_or(&digits[n..]);
            }
            None => {
                out.push_str("&#");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Latin letters written as small capitals (which the confusable skeleton leaves as they are).
const SMALL_CAPITALS: &[(char, char)] = &[
    ('\u{1D00}', 'A'),
    ('\u{0299}', 'B'),
    ('\u{1D04}', 'C'),
    ('\u{1D05}', 'D'),
    ('\u{1D07}', 'E'),
    ('\u{A730}', 'F'),
    ('\u{0262}', 'G'),
    ('\u{029C}', 'H'),
    ('\u{026A}', 'I'),
    ('\u{1D0A}', 'J'),
    ('\u{1D0B}', 'K'),
    ('\u{029F}', 'L'),
    ('\u{1D0D}', 'M'),
    ('\u{0274}', 'N'),
    ('\u{1D0F}', 'O'),
    ('\u{1D18}', 'P'),
    ('\u{A7AF}', 'Q'),
    ('\u{0280}', 'R'),
    ('\u{A731}', 'S'),
    ('\u{1D1B}', 'T'),
    ('\u{1D1C}', 'U'),
    ('\u{1D20}', 'V'),
    ('\u{1D21}', 'W'),
    ('\u{028F}', 'Y'),
    ('\u{1D22}', 'Z'),
];

/// Other readings of a value for the block only (never for corroboration): symbols written for letters
/// (`R@LLY`, `PROTE$T`, `!CE`, `|CE`), small capitals, letters drawn from others (`RN` for M, `VV` for W, `II`
/// for LL) and percent-encoded bytes (`%50ROTEST`). Each is read as well as the value itself.
pub fn other_readings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let pair = |x: u8, y: u8| b.windows(2).any(|w| w[0].eq_ignore_ascii_case(&x) && w[1].eq_ignore_ascii_case(&y));
    let symbols_in = !text.is_ascii() || b.iter().any(|c| matches!(c, b'@' | b'$' | b'!' | b'|'));
    let drawn_in = pair(b'R', b'N') || pair(b'V', b'V') || pair(b'I', b'I');
    if !(symbols_in || drawn_in || text.contains('%')) {
        return out;
    }
    let symbols: String = text
        .chars()
        .map(|c| match c {
            '@' => 'A',
            '$' => 'S',
            '!' | '|' => 'I',
            '\u{20AC}' => 'E',
            c => SMALL_CAPITALS.iter().find(|(s, _)| *s == c).map_or(c, |(_, l)| *l),
        })
        .collect();
    if symbols != text {
        out.push(symbols);
    }
    let upper = text.to_uppercase();
    let drawn = upper.replace("RN", "M").replace("VV", "W").replace("II", "LL");
    if drawn != upper {
        out.push(drawn);
    }
    if text.contains('%') {
        let bytes = text.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .flatten();
            match hex {
                Some(b) => {
                    decoded.push(b);
                    i += 3;
                }
                None => {
                    decoded.push(bytes[i]);
                    i += 1;
                }
            }
        }
        out.push(String::from_utf8_lossy(&decoded).into_owned());
    }
    out
}

/// One character as Latin capitals (possibly none: a format character, a combining mark).
fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_uppercase());
        return;
    }
    for u in c.to_uppercase() {
        for k in unicode_security::skeleton(&u.to_string()) {
            if unicode_normalization::char::is_combining_mark(k) {
                continue;
            }
            // The skeleton's prototype of the vertical strokes (Cyrillic І, Greek Ι, ǀ) is a lower-case l; in
            // capitals they imitate I.
            let k = if k == 'l' { 'I' } else { k };
            out.extend(k.to_uppercase());
        }
    }
}

/// The value folded to capitals (steps 1-3), apostrophes resolved.
fn fold(text: &str) -> String {
    let decoded = decode_entities(text);
    let mut folded = String::with_capacity(decoded.len());
    if decoded.is_ascii() {
        folded.extend(decoded.chars().map(|c| c.to_ascii_uppercase()));
    } else {
        decoded.nfkc().for_each(|c| fold_char(c, &mut folded));
    }
    resolve_apostrophes(&folded)
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{2018}' | '`' | '\u{B4}' | '\u{2032}')
}

/// `X'S` (a possessive) is `X`; any other apostrophe joins what stands around it.
fn resolve_apostrophes(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_apostrophe(c) {
            let s = matches!(chars.get(i + 1), Some('S' | '5'));
            let possessive = s && chars.get(i + 2).is_none_or(|n| !n.is_alphanumeric());
            i += if possessive { 2 } else { 1 };
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

const ORDINALS: &[&str] =
    &["FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "SIXTH", "SEVENTH", "EIGHTH", "NINTH", "TENTH"];

/// `1ST` .. `10TH` as words.
fn ordinal(w: &str) -> Option<&'static str> {
    let digits = w.bytes().take_while(u8::is_ascii_digit).count();
    let (n, suffix) = w.split_at(digits);
    let n: usize = n.parse().ok()?;
    let ok = matches!((n % 10, suffix), (1, "ST") | (2, "ND") | (3, "RD") | (_, "TH")) && (1..=10).contains(&n);
    ok.then(|| ORDINALS[n - 1])
}

/// A digit inside a word of letters, as the letter it imitates; `one` is the reading of `1`.
fn leet(c: char, one: char) -> char {
    match c {
        '0' => 'O',
        '1' => one,
        '3' => 'E',
        '4' => 'A',
        '5' => 'S',
        '6' => 'G',
        '7' => 'T',
        '8' => 'B',
        '9' => 'G',
        other => other,
    }
}

/// One split-out word as read for matching.
fn read_word(shown: &str) -> Word {
    if let Some(o) = ordinal(shown) {
        return Word { shown: shown.to_string(), canon: o.to_string(), alt: None };
    }
    let has_letter = shown.chars().any(char::is_alphabetic);
    let has_digit = shown.chars().any(|c| c.is_ascii_digit());
    if !(has_letter && has_digit) {
        return Word { shown: shown.to_string(), canon: shown.to_string(), alt: None };
    }
    let canon: String = shown.chars().map(|c| leet(c, 'I')).collect();
    let alt = shown.contains('1').then(|| shown.chars().map(|c| leet(c, 'L')).collect());
    Word { shown: shown.to_string(), canon, alt }
}

/// A value as words (see the module documentation).
pub fn words(text: &str) -> Vec<Word> {
    let folded = fold(text);
    let mut out: Vec<Word> = Vec::new();
    let mut letters = String::new();
    for w in folded.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if w.chars().count() == 1 {
            letters.push_str(w);
            continue;
        }
        flush_letters(&mut letters, &mut out);
        expand(read_word(w), &mut out);
    }
    flush_letters(&mut letters, &mut out);
    out
}

/// A run of single characters: one word when it holds a letter and more than one of them (`I.C.E.`,
/// `1.C.3.`); digits alone stay numbers, each a word.
fn flush_letters(letters: &mut String, out: &mut Vec<Word>) {
    let run = std::mem::take(letters);
    if run.chars().count() > 1 && run.chars().any(char::is_alphabetic) {
        expand(read_word(&run), out);
    } else {
        run.chars().for_each(|c| expand(read_word(&c.to_string()), out));
    }
}

fn expand(word: Word, out: &mut Vec<Word>) {
    match ABBREVIATIONS.iter().find(|(a, _)| word.is(a)) {
        Some((_, long)) => {
            out.extend(long.split(' ').map(|l| Word { shown: word.shown.clone(), canon: l.to_string(), alt: None }))
        }
        None => out.push(word),
    }
}

/// The words of a value as read for matching (the first reading of each).
pub fn canon_words(text: &str) -> Vec<String> {
    words(text).into_iter().map(|w| w.canon).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        canon_words(s)
    }

    #[test]
    fn spellings_read_as_the_word_they_imitate() {
        assert_eq!(w("&#80;ROTEST"), ["PROTEST"]);
        assert_eq!(w("&amp;#80;ROTEST"), ["PROTEST"]);
        assert_eq!(w("PRO\u{200B}TEST"), ["PROTEST"]);
        assert_eq!(w("PRO\u{00AD}TEST"), ["PROTEST"]);
        assert_eq!(w("ＰＲＯＴＥＳＴ"), ["PROTEST"]);
        // Cyrillic Р and Е, Greek Ο.
        assert_eq!(w("\u{0420}R\u{039F}T\u{0415}ST"), ["PROTEST"]);
        assert_eq!(w("\u{0456}ce"), ["ICE"]);
        assert_eq!(w("PR0TE5T"), ["PROTEST"]);
        assert_eq!(w("1CE"), ["ICE"]);
        assert_eq!(words("RA11Y")[0].alt.as_deref(), Some("RALLY"));
        assert_eq!(w("ICE'S agents"), ["ICE", "AGENTS"]);
        assert_eq!(w("protesters' rally"), ["PROTESTERS", "RALLY"]);
        assert_eq!(w("2ND LINE"), ["SECOND", "LINE"]);
        assert_eq!(w("1st Amendment"), ["FIRST", "AMENDMENT"]);
        assert_eq!(w("P R O T E S T"), ["PROTEST"]);
        assert_eq!(w("Manifestación"), ["MANIFESTACION"]);
        assert_eq!(w("10-50 63P"), ["10", "50", "GEP"]);
    }

    proptest::proptest! {
        /// Any text at all is read without a panic, the same way twice.
        #[test]
        fn any_text_reads_the_same_twice(text in "\\PC{0,80}") {
            proptest::prop_assert_eq!(words(&text), words(&text));
        }
    }
}
