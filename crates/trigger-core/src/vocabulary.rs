//! The shipped vocabularies: the words of the CAD's own call-type text that block a call, and the words that
//! must be in it before a call may start a camera. They ship with the product; configuration cannot widen
//! them (it can only narrow: disable a category, map a code to `none`, add `[blocked]` markers).
//!
//! **Fail closed.** A START needs positive evidence: the type text the CAD sent for the revision being decided
//! holds a phrase of the category's [`CORROBORATING`] vocabulary. A code, or the label an operator wrote for a
//! code, classifies, but never corroborates. A blocked term ([`BLOCKED`]) anywhere in the text, the code or the
//! matched rule's label blocks, whatever else matches; "unless" phrases excuse only the exact contexts listed
//! (ICE ON ROADWAY), so an ambiguous word blocks in every context nobody reviewed.
//!
//! **Matching.** Text is [`normalize`]d into words: accents removed, upper case, any character that is not a
//! letter or a digit separates words, apostrophes are dropped, runs of single letters join (`I.C.E.` is
//! `ICE`), and common CAD abbreviations expand ([`ABBREVIATIONS`]: `DEMO`, `CIV UNREST`, `CIV DISTURB`). A
//! phrase matches a contiguous run of whole words: `PATRIOT` is not `RIOT`, `PRICE` is not `ICE`.
//!
//! **Reviewed like code.** Every phrase is checked when this crate compiles (`review`, a `const` evaluation): written as
//! normal words (A-Z, 0-9, single spaces), every corroborating word holds a letter (no bare code numbers), and
//! no corroborating phrase contains a blocked phrase. docs/adding-a-city.md lists both vocabularies and their sources.

use crate::types::Category;
use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

/// Why a type is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Protest and other First Amendment activity, civil unrest.
    FirstAmendment,
    /// Immigration enforcement.
    Immigration,
}

/// Codes of the shipped standards whose types are blocked, whatever a table says: matched exactly
/// (case-insensitively) on the event's code and on every table rule's code. A city whose own code book reuses
/// one of these for something else must use another code (or send the type text): the block errs on the side
/// of never triggering.
pub const HARD_BLOCKED_CODES: &[(&str, BlockKind, &str)] = &[
    ("CIVDIS", BlockKind::FirstAmendment, "APCO ANS 2.103 CIVIL DISTURBANCE"),
    ("ALIEN", BlockKind::Immigration, "APCO ANS 2.103 IMMIGRATION"),
    ("404", BlockKind::FirstAmendment, "California PC 404 riot"),
    ("404.6", BlockKind::FirstAmendment, "California PC 404.6 incitement to riot"),
    ("405", BlockKind::FirstAmendment, "California PC 405 participation in a riot"),
    ("405A", BlockKind::FirstAmendment, "California PC 405a taking a person from custody during a riot"),
    ("406", BlockKind::FirstAmendment, "California PC 406 rout"),
    ("407", BlockKind::FirstAmendment, "California PC 407 unlawful assembly"),
    ("408", BlockKind::FirstAmendment, "California PC 408 participation in an unlawful assembly"),
    ("409", BlockKind::FirstAmendment, "California PC 409 remaining present after a dispersal order"),
];

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::FirstAmendment => "first_amendment",
            BlockKind::Immigration => "immigration",
        }
    }
}

/// One blocked type: the phrases that name it, and the longer phrases holding one of them that name
/// something else.
#[derive(Debug, Clone, Copy)]
pub struct BlockedTerm {
    pub kind: BlockKind,
    pub phrases: &'static [&'static str],
    pub unless: &'static [&'static str],
}

const fn fa(phrases: &'static [&'static str]) -> BlockedTerm {
    BlockedTerm { kind: BlockKind::FirstAmendment, phrases, unless: &[] }
}
const fn im(phrases: &'static [&'static str]) -> BlockedTerm {
    BlockedTerm { kind: BlockKind::Immigration, phrases, unless: &[] }
}

/// The blocked vocabulary. Sources: the First Amendment activities named by civil-liberties reviews of
/// camera programs (protest, demonstration, rally, march, picket, vigil, assembly, parade, procession, sit-in,
/// strike, boycott), APCO ANS 2.103 CIVIL DISTURBANCE and IMMIGRATION types, California PC 404-409 (riot,
/// rout, unlawful assembly, failure to disperse), New Orleans' SECOND LINE, and the federal immigration
/// agencies by name (ICE, CBP, Border Patrol, HSI, ERO).
pub const BLOCKED: &[BlockedTerm] = &[
    fa(&["PROTEST", "PROTESTS", "PROTESTER", "PROTESTERS", "PROTESTOR", "PROTESTORS", "PROTESTING"]),
    fa(&["PROTESTA", "PROTESTAS", "MANIFESTACION", "MANIFESTACIONES", "MANIFESTANTES"]),
    fa(&["DEMONSTRATION", "DEMONSTRATIONS", "DEMONSTRATOR", "DEMONSTRATORS"]),
    fa(&["RALLY", "RALLIES", "RALLYING"]),
    fa(&["MARCH", "MARCHES", "MARCHER", "MARCHERS", "MARCHING", "MARCHA", "MARCHAS"]),
    fa(&["PICKET", "PICKETS", "PICKETER", "PICKETERS", "PICKETING"]),
    fa(&["VIGIL", "VIGILS"]),
    fa(&["GATHERING", "GATHERINGS"]),
    fa(&["ASSEMBLY", "ASSEMBLIES"]),
    fa(&["CROWD", "CROWDS"]),
    fa(&["PARADE", "PARADES"]),
    fa(&["PROCESSION", "PROCESSIONS"]),
    fa(&["SECOND LINE", "SECONDLINE"]),
    fa(&["SIT IN", "SITIN", "SIT INS", "SITINS"]),
    BlockedTerm {
        kind: BlockKind::FirstAmendment,
        phrases: &["STRIKE", "STRIKES", "STRIKERS", "STRIKING WORKERS", "WALKOUT", "WALK OUT"],
        unless: &["LIGHTNING STRIKE", "LIGHTNING STRIKES", "BIRD STRIKE", "BIRD STRIKES"],
    },
    fa(&["BOYCOTT", "BOYCOTTS"]),
    fa(&["RIOT", "RIOTS", "RIOTING", "RIOTER", "RIOTERS", "ROUT"]),
    fa(&["CIVIL UNREST", "UNREST"]),
    fa(&["CIVIL DISTURBANCE", "CIVIL DISTURBANCES", "CIVIL DISORDER"]),
    fa(&["FAILURE TO DISPERSE", "DISPERSAL ORDER", "DISPERSE", "DISPERSAL"]),
    fa(&["FREE SPEECH", "FIRST AMENDMENT"]),
    im(&["IMMIGRATION", "IMMIGRANT", "IMMIGRANTS", "MIGRANT", "MIGRANTS", "INMIGRACION", "MIGRA"]),
    im(&["DEPORT", "DEPORTS", "DEPORTED", "DEPORTATION", "DEPORTATIONS", "DEPORTEE", "DEPORTACION"]),
    im(&["ALIEN", "ALIENS"]),
    im(&["UNDOCUMENTED"]),
    im(&["BORDER PATROL", "CBP", "CUSTOMS ENFORCEMENT", "CUSTOMS AND BORDER"]),
    im(&["HOMELAND SECURITY INVESTIGATIONS", "HSI", "ENFORCEMENT AND REMOVAL", "ERO"]),
    BlockedTerm {
        kind: BlockKind::Immigration,
        phrases: &["ICE"],
        unless: &[
            "ICE ON ROAD",
            "ICE ON ROADWAY",
            "ICE ON THE ROAD",
            "ICE ON THE ROADWAY",
            "ICE ON BRIDGE",
            "ICE ON SIDEWALK",
            "ICE ON STREET",
            "ROAD ICE",
            "BLACK ICE",
            "ICE STORM",
            "ICE HAZARD",
            "ICE CREAM",
            "ICE MACHINE",
            "ICE RINK",
            "THIN ICE",
            "THROUGH ICE",
            "THROUGH THE ICE",
            "ICE RESCUE",
        ],
    },
];

/// What a category needs in the type text: every group holds at least one phrase of the text.
#[derive(Debug, Clone, Copy)]
pub struct Evidence {
    pub category: Category,
    pub groups: &'static [&'static [&'static str]],
}

/// The corroborating vocabulary. Sources: APCO ANS 2.103 type names (BURGLARY, ROBBERY, SHOTS FIRED,
/// SHOOTING, STABBING, HOSTAGE and their alarm types), NIBRS offense names (220 Burglary/Breaking & Entering,
/// 120 Robbery, 23F Theft From Motor Vehicle), and the descriptions in real city code books: Metro Nashville
/// PD (BURGLARY - RESIDENCE, HOLDUP / ROBBERY, CUTTING / STABBING, SHOTS FIRED), Seattle PD (CAR PROWL),
/// Dallas PD (BMV: burglary of a motor vehicle), Chicago OEMC (PERSON SHOT), California PC descriptions
/// (BURGLARY FROM A VEHICLE, SHOOTING AT AN INHABITED DWELLING).
pub const CORROBORATING: &[Evidence] = &[
    Evidence {
        category: Category::Burglary,
        groups: &[&[
            "BURGLARY",
            "BURGLARIES",
            "BURGLAR",
            "BURGLARS",
            "BREAKING AND ENTERING",
            "BREAKING ENTERING",
            "BREAK AND ENTER",
            "HOME INVASION",
            "HOUSEBREAKING",
            "UNLAWFUL ENTRY",
        ]],
    },
    Evidence {
        category: Category::VehicleBreakIn,
        groups: &[&[
            "VEHICLE BURGLARY",
            "AUTO BURGLARY",
            "CAR BURGLARY",
            "BURGLARY FROM VEHICLE",
            "BURGLARY FROM A VEHICLE",
            "BURGLARY OF VEHICLE",
            "BURGLARY OF A VEHICLE",
            "BURGLARY OF MOTOR VEHICLE",
            "BURGLARY MOTOR VEHICLE",
            "BURGLARY VEHICLE",
            "BURGLARY AUTO",
            "BMV",
            "VEHICLE BREAK IN",
            "CAR BREAK IN",
            "AUTO BREAK IN",
            "VEHICLE BREAKIN",
            "CAR BREAKIN",
            "THEFT FROM MOTOR VEHICLE",
            "THEFT FROM VEHICLE",
            "THEFT FROM AUTO",
            "CAR PROWL",
            "VEHICLE PROWL",
            "AUTO PROWL",
            "VEHICLE PROWLING",
        ]],
    },
    Evidence {
        category: Category::Robbery,
        groups: &[&[
            "ROBBERY",
            "ROBBERIES",
            "HOLDUP",
            "HOLD UP",
            "ARMED ROBBERY",
            "STRONG ARM",
            "STRONGARM",
            "CARJACKING",
            "CARJACK",
            "MUGGING",
        ]],
    },
    Evidence {
        category: Category::ShotsFired,
        groups: &[&[
            "SHOTS FIRED",
            "SHOT FIRED",
            "SHOTS",
            "GUNSHOTS",
            "GUN SHOTS",
            "GUNFIRE",
            "SHOTSPOTTER",
            "SHOT SPOTTER",
            "DISCHARGING FIREARM",
            "DISCHARGING A FIREARM",
            "DISCHARGE OF FIREARM",
            "DISCHARGE OF A FIREARM",
            "FIREARM DISCHARGE",
            "WEAPON DISCHARGE",
            "SHOOTING INTO",
        ]],
    },
    Evidence {
        category: Category::Shooting,
        groups: &[&[
            "SHOOTING",
            "SHOOTINGS",
            "PERSON SHOT",
            "SUBJECT SHOT",
            "VICTIM SHOT",
            "SHOT PERSON",
            "GUNSHOT WOUND",
            "GUNSHOT VICTIM",
            "GSW",
            "DRIVE BY",
            "DRIVEBY",
        ]],
    },
    Evidence {
        category: Category::Stabbing,
        groups: &[&["STABBING", "STABBINGS", "STABBED", "STAB", "STAB WOUND", "CUTTING", "KNIFE WOUND"]],
    },
    Evidence { category: Category::Hostage, groups: &[&["HOSTAGE", "HOSTAGES", "HOSTAGE SITUATION"]] },
    // An alarm is evidence of what it guards only with the guarded crime named: ALARM alone (a suffix
    // column, a panic or fire alarm) corroborates nothing.
    Evidence {
        category: Category::Alarm,
        groups: &[
            &["ALARM", "ALARMS"],
            &["BURGLAR", "BURGLARY", "INTRUSION", "INTRUDER", "ROBBERY", "HOLDUP", "HOLD UP", "BREAK IN"],
        ],
    },
];

/// CAD abbreviations, expanded before matching (a word of the text equal to the first becomes the second).
pub const ABBREVIATIONS: &[(&str, &str)] = &[
    ("DEMO", "DEMONSTRATION"),
    ("DEMOS", "DEMONSTRATIONS"),
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

/// Text as words for matching (see the module documentation).
pub fn normalize(text: &str) -> Vec<String> {
    let folded: String = if text.is_ascii() {
        // Most CAD text: nothing to decompose.
        text.chars().filter(|c| *c != '\'').map(|c| c.to_ascii_uppercase()).collect()
    } else {
        text.nfkd()
            .filter(|c| !unicode_normalization::char::is_combining_mark(*c) && *c != '\'' && *c != '\u{2019}')
            .flat_map(char::to_uppercase)
            .collect()
    };
    let mut words: Vec<String> = Vec::new();
    let mut letters = String::new();
    for w in folded.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if w.chars().count() == 1 && w.chars().all(char::is_alphabetic) {
            letters.push_str(w);
            continue;
        }
        flush_letters(&mut letters, &mut words);
        expand(w, &mut words);
    }
    flush_letters(&mut letters, &mut words);
    words
}

fn flush_letters(letters: &mut String, words: &mut Vec<String>) {
    if !letters.is_empty() {
        expand(&std::mem::take(letters), words);
    }
}

fn expand(word: &str, words: &mut Vec<String>) {
    match ABBREVIATIONS.iter().find(|(a, _)| *a == word) {
        Some((_, long)) => words.extend(long.split(' ').map(String::from)),
        None => words.push(word.to_string()),
    }
}

/// Start indexes of the phrase (space-separated words) in `words`.
fn occurrences<'a>(words: &'a [String], phrase: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
    let n = phrase.split(' ').count();
    (0..words.len().saturating_sub(n - 1))
        .filter(move |&i| words[i..i + n].iter().zip(phrase.split(' ')).all(|(w, p)| w == p))
        .map(move |i| (i, i + n))
}

/// True when `words` hold the phrase.
pub fn holds(words: &[String], phrase: &str) -> bool {
    occurrences(words, phrase).next().is_some()
}

/// A blocked phrase as matched: which term, its place among the term's phrases, and its words.
struct BlockedPhrase {
    term: usize,
    index: usize,
    phrase: &'static str,
    words: Vec<&'static str>,
}

/// Every blocked phrase, by its first word: a text is scanned once, a hash look-up per word.
static BLOCKED_BY_FIRST_WORD: std::sync::LazyLock<std::collections::HashMap<&'static str, Vec<BlockedPhrase>>> =
    std::sync::LazyLock::new(|| {
        let mut m: std::collections::HashMap<&'static str, Vec<BlockedPhrase>> = std::collections::HashMap::new();
        for (term, t) in BLOCKED.iter().enumerate() {
            for (index, phrase) in t.phrases.iter().enumerate() {
                let words: Vec<&'static str> = phrase.split(' ').collect();
                m.entry(words[0]).or_default().push(BlockedPhrase { term, index, phrase, words });
            }
        }
        m
    });

/// The blocked term the words name, if any: its kind and the phrase found (the first term of [`BLOCKED`] that
/// matches). An occurrence inside one of the term's "unless" phrases does not count; any other does.
pub fn blocked(words: &[String]) -> Option<(BlockKind, &'static str)> {
    let mut found: Option<&BlockedPhrase> = None;
    for (i, w) in words.iter().enumerate() {
        for p in BLOCKED_BY_FIRST_WORD.get(w.as_str()).into_iter().flatten() {
            let (s, e) = (i, i + p.words.len());
            let here = e <= words.len() && words[s..e].iter().zip(&p.words).all(|(a, b)| a == b);
            let excused =
                || BLOCKED[p.term].unless.iter().any(|u| occurrences(words, u).any(|(us, ue)| us <= s && e <= ue));
            if here && found.is_none_or(|f| (p.term, p.index) < (f.term, f.index)) && !excused() {
                found = Some(p);
            }
        }
    }
    found.map(|p| (BLOCKED[p.term].kind, p.phrase))
}

/// The phrase of the category's vocabulary that the words hold (the first group's), if every group is held.
pub fn corroborates(category: Category, words: &[String]) -> Option<&'static str> {
    let evidence = CORROBORATING.iter().find(|e| e.category == category)?;
    let mut found = None;
    for group in evidence.groups {
        let p = group.iter().find(|p| holds(words, p))?;
        found.get_or_insert(*p);
    }
    found
}

/// The shipped vocabularies and the standards' blocked codes, as published: part of every classification
/// digest, so an audit record names the vocabulary it was decided under.
pub fn describe() -> serde_json::Value {
    serde_json::json!({
        "blocked": BLOCKED
            .iter()
            .map(|t| serde_json::json!({"kind": t.kind, "phrases": t.phrases, "unless": t.unless}))
            .collect::<Vec<_>>(),
        "blocked_codes": HARD_BLOCKED_CODES
            .iter()
            .map(|(code, kind, source)| serde_json::json!([code, kind, source]))
            .collect::<Vec<_>>(),
        "corroborating": CORROBORATING
            .iter()
            .map(|e| serde_json::json!({"category": e.category, "groups": e.groups}))
            .collect::<Vec<_>>(),
        "abbreviations": ABBREVIATIONS,
    })
}

// ---- The build-time review: a vocabulary that breaks a rule does not compile. ----

const fn is_normal(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() || b[0] == b' ' || b[b.len() - 1] == b' ' {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ok = b[i].is_ascii_uppercase() || b[i].is_ascii_digit() || (b[i] == b' ' && b[i - 1] != b' ');
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// Every word holds a letter.
const fn words_have_letters(p: &str) -> bool {
    let b = p.as_bytes();
    let (mut i, mut letter) = (0, false);
    while i <= b.len() {
        if i == b.len() || b[i] == b' ' {
            if !letter {
                return false;
            }
            letter = false;
        } else if b[i].is_ascii_uppercase() {
            letter = true;
        }
        i += 1;
    }
    true
}

/// `needle`'s words stand contiguously in `hay` (both normal).
const fn contains_words(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.len() > h.len() {
        return false;
    }
    let mut s = 0;
    while s + n.len() <= h.len() {
        let starts = s == 0 || h[s - 1] == b' ';
        let ends = s + n.len() == h.len() || h[s + n.len()] == b' ';
        if starts && ends {
            let mut k = 0;
            while k < n.len() && h[s + k] == n[k] {
                k += 1;
            }
            if k == n.len() {
                return true;
            }
        }
        s += 1;
    }
    false
}

const fn names_blocked(p: &str) -> bool {
    let mut t = 0;
    while t < BLOCKED.len() {
        let mut i = 0;
        while i < BLOCKED[t].phrases.len() {
            if contains_words(p, BLOCKED[t].phrases[i]) {
                return true;
            }
            i += 1;
        }
        t += 1;
    }
    false
}

const fn review() {
    let mut t = 0;
    while t < BLOCKED.len() {
        let mut i = 0;
        while i < BLOCKED[t].phrases.len() {
            assert!(is_normal(BLOCKED[t].phrases[i]), "a blocked phrase is not written as normal words");
            i += 1;
        }
        let mut u = 0;
        while u < BLOCKED[t].unless.len() {
            assert!(is_normal(BLOCKED[t].unless[u]), "an unless phrase is not written as normal words");
            u += 1;
        }
        t += 1;
    }
    let mut e = 0;
    while e < CORROBORATING.len() {
        let mut g = 0;
        while g < CORROBORATING[e].groups.len() {
            let group = CORROBORATING[e].groups[g];
            let mut i = 0;
            while i < group.len() {
                assert!(is_normal(group[i]), "a corroborating phrase is not written as normal words");
                assert!(words_have_letters(group[i]), "a corroborating phrase is a bare code number");
                assert!(!names_blocked(group[i]), "a corroborating phrase holds a blocked phrase");
                i += 1;
            }
            g += 1;
        }
        e += 1;
    }
    let mut a = 0;
    while a < ABBREVIATIONS.len() {
        assert!(is_normal(ABBREVIATIONS[a].0) && is_normal(ABBREVIATIONS[a].1), "an abbreviation is not normal");
        assert!(!names_blocked(ABBREVIATIONS[a].0), "an abbreviation hides a blocked word");
        a += 1;
    }
}

// Evaluated when the crate compiles: a vocabulary that breaks a rule of `review` is a compile error.
const _: () = review();

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        normalize(s)
    }

    #[test]
    fn normalising_folds_case_accents_punctuation_acronyms_and_abbreviations() {
        assert_eq!(w("Sit-in @ City Hall"), ["SIT", "IN", "CITY", "HALL"]);
        assert_eq!(w("I.C.E. assist"), ["ICE", "ASSIST"]);
        assert_eq!(w("Manifestación"), ["MANIFESTACION"]);
        assert_eq!(w("CIV DISTURB"), ["CIVIL", "DISTURBANCE"]);
        assert_eq!(w("DEMO/march"), ["DEMONSTRATION", "MARCH"]);
        assert_eq!(w("protesters' rally"), ["PROTESTERS", "RALLY"]);
    }

    #[test]
    fn blocked_terms_match_whole_words_and_excuse_only_the_listed_contexts() {
        for s in [
            "PUBLIC GATHERING",
            "civ unrest",
            "CIVIL DISTURBANCE",
            "ICE",
            "ice agents on scene",
            "SHOTS FIRED / ICE OPERATION",
            "SECOND LINE PARADE",
            "labor strike",
            "Demo in progress",
            "unlawful assembly",
            "BORDER PATROL ASSIST",
        ] {
            assert!(blocked(&w(s)).is_some(), "{s}");
        }
        for s in [
            "DOMESTIC DISTURBANCE",
            "DISTURBANCE (OTHER)",
            "ICE ON ROADWAY",
            "VEHICLE REMOVAL",
            "BURGLARY PATRIOT PRICE ST",
            "LIGHTNING STRIKE",
            "SHOTS FIRED",
        ] {
            assert_eq!(blocked(&w(s)), None, "{s}");
        }
        // An excused context excuses only itself: another ICE in the same text still blocks.
        assert!(blocked(&w("ICE ON ROADWAY / ASSIST ICE")).is_some());
    }

    #[test]
    fn corroboration_needs_the_category_words_and_alarm_needs_the_guarded_crime() {
        assert_eq!(corroborates(Category::Burglary, &w("BURGLARY - RESIDENCE")), Some("BURGLARY"));
        assert_eq!(corroborates(Category::ShotsFired, &w("REPORT TO FOLLOW")), None);
        assert_eq!(corroborates(Category::Stabbing, &w("CUTTING / STABBING")), Some("STABBING"));
        assert_eq!(corroborates(Category::Alarm, &w("ALARM")), None);
        assert_eq!(corroborates(Category::Alarm, &w("BURGLARY - RESIDENCE / ALARM")), Some("ALARM"));
        assert_eq!(corroborates(Category::VehicleBreakIn, &w("BURG VEH")), Some("BURGLARY VEHICLE"));
    }

    proptest::proptest! {
        /// Any text at all (any Unicode, any punctuation) is read without a panic, and reading it twice agrees.
        #[test]
        fn any_text_is_read_without_a_panic(text in "\\PC{0,80}") {
            let words = normalize(&text);
            proptest::prop_assert_eq!(&words, &normalize(&text));
            let _ = blocked(&words);
            for c in Category::ALL {
                let _ = corroborates(c, &words);
            }
        }
    }

    #[test]
    fn every_category_has_a_vocabulary() {
        for c in Category::ALL {
            assert!(CORROBORATING.iter().any(|e| e.category == c), "{c:?}");
        }
    }
}
