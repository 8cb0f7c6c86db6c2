//! Languages: a small newtype over the ISO 639-1 code, with the name a prompt writes.
//!
//! The languages xlpatch knows are a `const` table. Prompts name languages in their own
//! language (`Deutsch`, `Français`, `中文`), as Dumas et al. do, so the table carries that name
//! next to the code. The ISO 639-3 codes are there for Multi-SimLex, whose files are named by
//! them (`ENG.csv`, `CMN.csv`).

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// One row of the language table.
struct LangInfo {
    /// ISO 639-1 (or 639-3 where there is no 639-1 code, as for Cantonese).
    code: &'static str,
    /// ISO 639-3 codes that denote this language (the first is the canonical one).
    iso3: &'static [&'static str],
    /// The language's name in the language itself, as written in prompts.
    name: &'static str,
    /// The English name.
    english: &'static str,
}

/// The known languages. The order is the order of `fixtures/concepts/nouns.tsv` followed by
/// the further languages of the prior work's data sets; [`Lang`] sorts in this order.
const LANGUAGES: &[LangInfo] = &[
    LangInfo {
        code: "en",
        iso3: &["eng"],
        name: "English",
        english: "English",
    },
    LangInfo {
        code: "de",
        iso3: &["deu"],
        name: "Deutsch",
        english: "German",
    },
    LangInfo {
        code: "fr",
        iso3: &["fra"],
        name: "Français",
        english: "French",
    },
    LangInfo {
        code: "es",
        iso3: &["spa"],
        name: "Español",
        english: "Spanish",
    },
    LangInfo {
        code: "it",
        iso3: &["ita"],
        name: "Italiano",
        english: "Italian",
    },
    LangInfo {
        code: "pt",
        iso3: &["por"],
        name: "Português",
        english: "Portuguese",
    },
    LangInfo {
        code: "nl",
        iso3: &["nld"],
        name: "Nederlands",
        english: "Dutch",
    },
    LangInfo {
        code: "pl",
        iso3: &["pol"],
        name: "Polski",
        english: "Polish",
    },
    LangInfo {
        code: "ru",
        iso3: &["rus"],
        name: "Русский",
        english: "Russian",
    },
    LangInfo {
        code: "zh",
        iso3: &["zho", "cmn"],
        name: "中文",
        english: "Chinese",
    },
    LangInfo {
        code: "ja",
        iso3: &["jpn"],
        name: "日本語",
        english: "Japanese",
    },
    LangInfo {
        code: "fi",
        iso3: &["fin"],
        name: "Suomi",
        english: "Finnish",
    },
    LangInfo {
        code: "et",
        iso3: &["est", "ekk"],
        name: "Eesti",
        english: "Estonian",
    },
    LangInfo {
        code: "sw",
        iso3: &["swa", "swh"],
        name: "Kiswahili",
        english: "Swahili",
    },
    LangInfo {
        code: "cy",
        iso3: &["cym"],
        name: "Cymraeg",
        english: "Welsh",
    },
    LangInfo {
        code: "ar",
        iso3: &["ara", "arb"],
        name: "العربية",
        english: "Arabic",
    },
    LangInfo {
        code: "he",
        iso3: &["heb"],
        name: "עברית",
        english: "Hebrew",
    },
    LangInfo {
        code: "hi",
        iso3: &["hin"],
        name: "हिन्दी",
        english: "Hindi",
    },
    LangInfo {
        code: "ko",
        iso3: &["kor"],
        name: "한국어",
        english: "Korean",
    },
    LangInfo {
        code: "yue",
        iso3: &["yue"],
        name: "粵語",
        english: "Cantonese",
    },
];

/// A language xlpatch knows, named by its ISO 639-1 code (`de`, `zh`; `yue` for Cantonese).
///
/// Only codes of the built-in table can be made into a `Lang`, so every `Lang` has a name for
/// prompts. Ordering follows the table (`en`, `de`, `fr`, ...), which is also the column order
/// of the project's concept table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lang(u8);

impl Lang {
    /// The language with this ISO 639-1 code (ASCII case ignored), if xlpatch knows it.
    pub fn from_code(code: &str) -> Option<Lang> {
        LANGUAGES
            .iter()
            .position(|l| l.code.eq_ignore_ascii_case(code))
            .map(|i| Lang(i as u8))
    }

    /// The language with this ISO 639-3 code (`eng`, `cmn`, `cym`; ASCII case ignored).
    pub fn from_iso639_3(code: &str) -> Option<Lang> {
        LANGUAGES
            .iter()
            .position(|l| l.iso3.iter().any(|c| c.eq_ignore_ascii_case(code)))
            .map(|i| Lang(i as u8))
    }

    /// Every known language, in table order.
    pub fn all() -> impl Iterator<Item = Lang> {
        (0..LANGUAGES.len()).map(|i| Lang(i as u8))
    }

    fn info(self) -> &'static LangInfo {
        &LANGUAGES[usize::from(self.0)]
    }

    /// The ISO code (`de`).
    pub fn code(self) -> &'static str {
        self.info().code
    }

    /// The canonical ISO 639-3 code (`deu`).
    pub fn iso639_3(self) -> &'static str {
        self.info().iso3[0]
    }

    /// The language's own name, as prompts write it (`Deutsch`, `中文`).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The English name (`German`).
    pub fn english_name(self) -> &'static str {
        self.info().english
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lang({:?})", self.code())
    }
}

impl FromStr for Lang {
    type Err = Error;

    fn from_str(s: &str) -> Result<Lang, Error> {
        Lang::from_code(s).ok_or_else(|| Error::UnknownLanguage { code: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for lang in Lang::all() {
            assert_eq!(Lang::from_code(lang.code()), Some(lang));
            assert_eq!(Lang::from_iso639_3(lang.iso639_3()), Some(lang));
            assert!(seen.insert(lang.code()), "duplicate code {lang}");
            assert!(!lang.name().is_empty());
        }
    }

    #[test]
    fn names_are_endonyms() {
        let name = |c: &str| Lang::from_code(c).unwrap().name();
        assert_eq!(name("de"), "Deutsch");
        assert_eq!(name("fr"), "Français");
        assert_eq!(name("ru"), "Русский");
        assert_eq!(name("zh"), "中文");
        assert_eq!(name("sw"), "Kiswahili");
        assert_eq!(name("cy"), "Cymraeg");
    }

    #[test]
    fn lookup_and_order() {
        assert_eq!(Lang::from_code("DE").map(Lang::code), Some("de"));
        assert_eq!(Lang::from_iso639_3("CMN").map(Lang::code), Some("zh"));
        assert_eq!(Lang::from_code("xx"), None);
        let en: Lang = "en".parse().unwrap();
        let cy: Lang = "cy".parse().unwrap();
        assert!(en < cy, "table order, not alphabetical");
        assert_eq!(
            "xx".parse::<Lang>().unwrap_err().to_string(),
            "unknown language \"xx\""
        );
        assert_eq!(format!("{en} {en:?}"), "en Lang(\"en\")");
    }
}
