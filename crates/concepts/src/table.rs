//! The concept table: concepts with a synonym list per language, polysemy and homograph
//! marks, and the lookups the engine and the error analysis need.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::{Error, Lang, Location};

/// One concept: a stable id and, per language, its forms, the preferred one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concept {
    /// A stable id (`dog`); in the project's table a lowercase English identifier, in an
    /// imported table the source's key (Multi-SimLex's English word, Dumas et al.'s and
    /// Wendler et al.'s `word_original`).
    pub id: String,
    /// Forms per language, preferred first. A language without forms is absent.
    pub forms: BTreeMap<Lang, Vec<String>>,
}

impl Concept {
    /// The forms in `lang`, preferred first; empty when there are none.
    pub fn forms_in(&self, lang: Lang) -> &[String] {
        self.forms.get(&lang).map_or(&[], Vec::as_slice)
    }

    /// The preferred form in `lang`.
    pub fn preferred(&self, lang: Lang) -> Option<&str> {
        self.forms_in(lang).first().map(String::as_str)
    }

    /// Whether the concept has at least one form in every language of `langs`.
    pub fn is_complete(&self, langs: &[Lang]) -> bool {
        langs.iter().all(|&l| !self.forms_in(l).is_empty())
    }
}

/// What the other meaning of a polysemous form or a homograph is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// A concept of the table (the form is then listed under it too).
    Concept(String),
    /// A meaning outside the table, as a short English gloss (written `gloss:...` in files).
    Gloss(String),
}

impl Meaning {
    /// Reads `gloss:...` as a gloss and anything else as a concept id.
    pub fn parse(text: &str) -> Meaning {
        match text.strip_prefix("gloss:") {
            Some(gloss) => Meaning::Gloss(gloss.trim().to_owned()),
            None => Meaning::Concept(text.to_owned()),
        }
    }

    /// The concept id, if the meaning is a concept of the table.
    pub fn concept(&self) -> Option<&str> {
        match self {
            Meaning::Concept(id) => Some(id),
            Meaning::Gloss(_) => None,
        }
    }
}

/// A form of the table that also names something else in the same language (`ru лук`: onion,
/// and a bow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polysemy {
    /// The language.
    pub lang: Lang,
    /// The form, as listed in the table.
    pub form: String,
    /// The concept the table lists the form under.
    pub concept: String,
    /// The other meaning.
    pub other: Meaning,
    /// A free note for the human reader.
    pub note: String,
}

/// The same string naming different things in two languages (French *pain* 'bread', English
/// *pain*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Homograph {
    /// The string. Side a lists it exactly; side b is compared case-insensitively, so that
    /// Dutch `meer` 'lake' and German `Meer` 'sea' count.
    pub form: String,
    /// The language in which the table lists `form`.
    pub lang_a: Lang,
    /// The concept `form` is listed under in `lang_a`.
    pub concept_a: String,
    /// The other language.
    pub lang_b: Lang,
    /// What the string means in `lang_b`.
    pub meaning_b: Meaning,
    /// A free note for the human reader.
    pub note: String,
}

/// Where each item of a table came from, for error messages.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    pub concepts: Vec<Location>,
    pub polysemy: Vec<Location>,
    pub homographs: Vec<Location>,
}

/// A multilingual concept table (docs/method.md, "Concept pairs"): one row per concept, a synonym
/// list per language, and the polysemy and homograph marks the error analysis rests on.
///
/// A table is validated when it is built: concept ids are unique, every form is non-empty and
/// in a language of the table, and every polysemy and homograph row resolves to forms and
/// concepts of the table. Its parts are read through accessors so that the lookup indexes
/// cannot go stale.
#[derive(Debug, Clone)]
pub struct ConceptTable {
    source: PathBuf,
    languages: Vec<Lang>,
    concepts: Vec<Concept>,
    polysemy: Vec<Polysemy>,
    homographs: Vec<Homograph>,
    by_id: HashMap<String, usize>,
    by_form: HashMap<(Lang, String), Vec<usize>>,
    polysemy_by_form: HashMap<(Lang, String), Vec<usize>>,
    homographs_by_form: HashMap<String, Vec<usize>>,
}

impl ConceptTable {
    /// Builds and validates a table from its parts. `source` names where the data came from
    /// (a file or a short description); errors cite it.
    pub fn new(
        source: impl Into<PathBuf>,
        languages: Vec<Lang>,
        concepts: Vec<Concept>,
        polysemy: Vec<Polysemy>,
        homographs: Vec<Homograph>,
    ) -> Result<ConceptTable, Error> {
        let source = source.into();
        let at = Location::file(&source);
        let origins = Origins {
            concepts: vec![at.clone(); concepts.len()],
            polysemy: vec![at.clone(); polysemy.len()],
            homographs: vec![at; homographs.len()],
        };
        ConceptTable::build(source, languages, concepts, polysemy, homographs, &origins)
    }

    pub(crate) fn build(
        source: PathBuf,
        languages: Vec<Lang>,
        concepts: Vec<Concept>,
        polysemy: Vec<Polysemy>,
        homographs: Vec<Homograph>,
        origins: &Origins,
    ) -> Result<ConceptTable, Error> {
        for (i, lang) in languages.iter().enumerate() {
            if languages[..i].contains(lang) {
                return Err(Error::malformed(
                    Location::file(&source),
                    format!("language {:?} is listed twice", lang.code()),
                ));
            }
        }
        let mut by_id = HashMap::new();
        let mut by_form: HashMap<(Lang, String), Vec<usize>> = HashMap::new();
        for (i, concept) in concepts.iter().enumerate() {
            let at = || origins.concepts[i].clone();
            if concept.id.is_empty() {
                return Err(Error::EmptyCell {
                    at: at(),
                    column: "concept".into(),
                });
            }
            if let Some(first) = by_id.insert(concept.id.clone(), i) {
                let first: &Location = &origins.concepts[first];
                return Err(Error::DuplicateConcept {
                    at: at(),
                    id: concept.id.clone(),
                    first: first.line.is_some().then(|| first.clone()),
                });
            }
            for (&lang, forms) in &concept.forms {
                if !languages.contains(&lang) {
                    return Err(Error::LanguageNotInTable {
                        lang,
                        table: source.clone(),
                    });
                }
                for (j, form) in forms.iter().enumerate() {
                    if form.trim().is_empty() {
                        return Err(Error::EmptyForm {
                            at: at(),
                            column: lang.code().into(),
                        });
                    }
                    if forms[..j].contains(form) {
                        return Err(Error::malformed(
                            at(),
                            format!("{lang}: form {form:?} is listed twice for {:?}", concept.id),
                        ));
                    }
                    by_form.entry((lang, form.clone())).or_default().push(i);
                }
            }
        }
        let mut table = ConceptTable {
            source,
            languages,
            concepts,
            polysemy: Vec::new(),
            homographs: Vec::new(),
            by_id,
            by_form,
            polysemy_by_form: HashMap::new(),
            homographs_by_form: HashMap::new(),
        };
        for (i, row) in polysemy.iter().enumerate() {
            table.check_polysemy(row, &origins.polysemy[i])?;
        }
        for (i, row) in homographs.iter().enumerate() {
            table.check_homograph(row, &origins.homographs[i])?;
        }
        for (i, row) in polysemy.iter().enumerate() {
            table
                .polysemy_by_form
                .entry((row.lang, row.form.clone()))
                .or_default()
                .push(i);
        }
        for (i, row) in homographs.iter().enumerate() {
            table
                .homographs_by_form
                .entry(row.form.to_lowercase())
                .or_default()
                .push(i);
        }
        table.polysemy = polysemy;
        table.homographs = homographs;
        Ok(table)
    }

    /// A form listed under `concept` in `lang`: the concept must exist and list it.
    fn check_listed(
        &self,
        at: &Location,
        lang: Lang,
        form: &str,
        concept: &str,
        fold_case: bool,
    ) -> Result<(), Error> {
        let Some(c) = self.concept(concept) else {
            return Err(Error::UnknownConcept {
                at: at.clone(),
                concept: concept.into(),
            });
        };
        let listed = if fold_case {
            let form = form.to_lowercase();
            c.forms_in(lang).iter().any(|f| f.to_lowercase() == form)
        } else {
            c.forms_in(lang).iter().any(|f| f == form)
        };
        if listed {
            Ok(())
        } else {
            Err(Error::FormNotInTable {
                at: at.clone(),
                lang,
                form: form.into(),
                concept: concept.into(),
            })
        }
    }

    fn check_meaning(&self, at: &Location, meaning: &Meaning, own: &str) -> Result<(), Error> {
        match meaning {
            Meaning::Gloss(g) if g.trim().is_empty() => {
                Err(Error::malformed(at.clone(), "empty gloss after \"gloss:\""))
            }
            Meaning::Concept(id) if id == own => Err(Error::malformed(
                at.clone(),
                format!("the other meaning {id:?} is the concept itself"),
            )),
            _ => Ok(()),
        }
    }

    fn check_polysemy(&self, row: &Polysemy, at: &Location) -> Result<(), Error> {
        if !self.languages.contains(&row.lang) {
            return Err(Error::LanguageNotInTable {
                lang: row.lang,
                table: at.file.clone(),
            });
        }
        self.check_listed(at, row.lang, &row.form, &row.concept, false)?;
        self.check_meaning(at, &row.other, &row.concept)?;
        if let Meaning::Concept(other) = &row.other {
            self.check_listed(at, row.lang, &row.form, other, false)?;
        }
        Ok(())
    }

    fn check_homograph(&self, row: &Homograph, at: &Location) -> Result<(), Error> {
        if row.lang_a == row.lang_b {
            return Err(Error::malformed(
                at.clone(),
                "lang_a equals lang_b (that is polysemy, not a homograph)",
            ));
        }
        if !self.languages.contains(&row.lang_a) {
            return Err(Error::LanguageNotInTable {
                lang: row.lang_a,
                table: at.file.clone(),
            });
        }
        self.check_listed(at, row.lang_a, &row.form, &row.concept_a, false)?;
        self.check_meaning(at, &row.meaning_b, "")?;
        if let Meaning::Concept(other) = &row.meaning_b {
            self.check_listed(at, row.lang_b, &row.form, other, true)?;
        }
        Ok(())
    }

    /// Where the table came from: `nouns.tsv` for a loaded table, the imported file or
    /// folder for an imported one.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The table's languages, in column order.
    pub fn languages(&self) -> &[Lang] {
        &self.languages
    }

    /// Every concept, in file order.
    pub fn concepts(&self) -> &[Concept] {
        &self.concepts
    }

    /// Every polysemy mark.
    pub fn polysemy(&self) -> &[Polysemy] {
        &self.polysemy
    }

    /// Every homograph mark.
    pub fn homographs(&self) -> &[Homograph] {
        &self.homographs
    }

    /// The concept with this id.
    pub fn concept(&self, id: &str) -> Option<&Concept> {
        self.by_id.get(id).map(|&i| &self.concepts[i])
    }

    /// The forms of concept `id` in `lang`, preferred first; `None` when the concept is not in
    /// the table or has no form in `lang`.
    pub fn forms(&self, id: &str, lang: Lang) -> Option<&[String]> {
        let forms = self.concept(id)?.forms_in(lang);
        (!forms.is_empty()).then_some(forms)
    }

    /// The forms of concept `id` in `lang`, or an error saying which is missing, e.g.
    /// `concept "dog" has no form in "sw" (fixtures/concepts/nouns.tsv)`.
    pub fn require(&self, id: &str, lang: Lang) -> Result<&[String], Error> {
        let Some(concept) = self.concept(id) else {
            return Err(Error::NoSuchConcept {
                concept: id.into(),
                table: self.source.clone(),
            });
        };
        let forms = concept.forms_in(lang);
        if forms.is_empty() {
            return Err(Error::MissingForm {
                concept: id.into(),
                lang,
                table: self.source.clone(),
            });
        }
        Ok(forms)
    }

    /// The concepts that list `form` (exactly, case included) in `lang`, in table order.
    pub fn concepts_with_form(&self, lang: Lang, form: &str) -> impl Iterator<Item = &Concept> {
        self.by_form
            .get(&(lang, form.to_owned()))
            .into_iter()
            .flatten()
            .map(|&i| &self.concepts[i])
    }

    /// Whether `form` has more than one meaning in `lang`: it has a polysemy mark, or the
    /// table lists it under two or more concepts.
    pub fn is_polysemous(&self, lang: Lang, form: &str) -> bool {
        let key = (lang, form.to_owned());
        self.polysemy_by_form.contains_key(&key)
            || self.by_form.get(&key).is_some_and(|c| c.len() > 1)
    }

    /// The polysemy marks of `form` in `lang`.
    pub fn polysemy_of(&self, lang: Lang, form: &str) -> impl Iterator<Item = &Polysemy> {
        self.polysemy_by_form
            .get(&(lang, form.to_owned()))
            .into_iter()
            .flatten()
            .map(|&i| &self.polysemy[i])
    }

    /// The homograph marks of `form`, compared case-insensitively (`Meer` finds the row of
    /// Dutch `meer`).
    pub fn homographs_of(&self, form: &str) -> impl Iterator<Item = &Homograph> {
        self.homographs_by_form
            .get(&form.to_lowercase())
            .into_iter()
            .flatten()
            .map(|&i| &self.homographs[i])
    }

    /// The table restricted to `langs` (in that order), keeping only the concepts that have a
    /// form in every one of them.
    ///
    /// Polysemy marks of other languages or of dropped concepts are dropped; homograph marks
    /// are kept when their side a survives. A mark whose other meaning is a concept that no
    /// longer resolves (dropped, or in a language outside `langs`) keeps that meaning as a
    /// gloss holding the concept id, so the error analysis still sees the other sense.
    pub fn subset(&self, langs: &[Lang]) -> Result<ConceptTable, Error> {
        for (i, &lang) in langs.iter().enumerate() {
            if !self.languages.contains(&lang) {
                return Err(Error::LanguageNotInTable {
                    lang,
                    table: self.source.clone(),
                });
            }
            if langs[..i].contains(&lang) {
                return Err(Error::malformed(
                    Location::file(&self.source),
                    format!("language {:?} is asked for twice", lang.code()),
                ));
            }
        }
        self.restrict(langs, |c| c.is_complete(langs))
    }

    /// The table with only the concepts `ids` (in every language of the table), polysemy and
    /// homograph marks degraded as in [`ConceptTable::subset`]. An id that is not in the table
    /// is an error: a study restricted to the concepts a model was trained on must not lose
    /// one silently.
    pub fn only(&self, ids: &[String]) -> Result<ConceptTable, Error> {
        if let Some(missing) = ids.iter().find(|id| !self.by_id.contains_key(*id)) {
            return Err(Error::NoSuchConcept {
                concept: missing.clone(),
                table: self.source.clone(),
            });
        }
        let langs = self.languages.clone();
        self.restrict(&langs, |c| ids.contains(&c.id))
    }

    /// The table in `langs` with the concepts `keep` accepts.
    fn restrict(
        &self,
        langs: &[Lang],
        keep: impl Fn(&Concept) -> bool,
    ) -> Result<ConceptTable, Error> {
        let concepts: Vec<Concept> = self
            .concepts
            .iter()
            .filter(|c| keep(c))
            .map(|c| Concept {
                id: c.id.clone(),
                forms: langs.iter().map(|&l| (l, c.forms_in(l).to_vec())).collect(),
            })
            .collect();
        let kept =
            |id: &str, lang: Lang| langs.contains(&lang) && concepts.iter().any(|c| c.id == id);
        let resolve = |meaning: &Meaning, lang: Lang| match meaning {
            Meaning::Concept(id) if !kept(id, lang) => Meaning::Gloss(id.clone()),
            other => other.clone(),
        };
        let polysemy = self
            .polysemy
            .iter()
            .filter(|p| kept(&p.concept, p.lang))
            .map(|p| Polysemy {
                other: resolve(&p.other, p.lang),
                ..p.clone()
            })
            .collect();
        let homographs = self
            .homographs
            .iter()
            .filter(|h| kept(&h.concept_a, h.lang_a))
            .map(|h| Homograph {
                meaning_b: resolve(&h.meaning_b, h.lang_b),
                ..h.clone()
            })
            .collect();
        ConceptTable::new(
            self.source.clone(),
            langs.to_vec(),
            concepts,
            polysemy,
            homographs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(code: &str) -> Lang {
        Lang::from_code(code).unwrap()
    }

    fn concept(id: &str, forms: &[(&str, &[&str])]) -> Concept {
        Concept {
            id: id.into(),
            forms: forms
                .iter()
                .map(|(l, f)| (lang(l), f.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    /// en/de/fr: bread, lake, sea (de `See` is both lake and sea), plus a homograph.
    fn sample() -> ConceptTable {
        let langs = vec![lang("en"), lang("de"), lang("fr")];
        let concepts = vec![
            concept(
                "bread",
                &[("en", &["bread"]), ("de", &["Brot"]), ("fr", &["pain"])],
            ),
            concept(
                "lake",
                &[("en", &["lake"]), ("de", &["See"]), ("fr", &["lac"])],
            ),
            concept("sea", &[("en", &["sea"]), ("de", &["Meer", "See"])]),
        ];
        let polysemy = vec![Polysemy {
            lang: lang("de"),
            form: "See".into(),
            concept: "lake".into(),
            other: Meaning::Concept("sea".into()),
            note: String::new(),
        }];
        let homographs = vec![Homograph {
            form: "pain".into(),
            lang_a: lang("fr"),
            concept_a: "bread".into(),
            lang_b: lang("en"),
            meaning_b: Meaning::Gloss("pain (ache)".into()),
            note: String::new(),
        }];
        ConceptTable::new("sample", langs, concepts, polysemy, homographs).unwrap()
    }

    #[test]
    fn lookups() {
        let t = sample();
        assert_eq!(
            t.concept("bread").unwrap().preferred(lang("fr")),
            Some("pain")
        );
        assert_eq!(t.forms("sea", lang("de")).unwrap(), ["Meer", "See"]);
        assert_eq!(t.forms("sea", lang("fr")), None);
        assert_eq!(t.forms("nope", lang("fr")), None);
        let ids: Vec<_> = t
            .concepts_with_form(lang("de"), "See")
            .map(|c| &c.id)
            .collect();
        assert_eq!(ids, ["lake", "sea"]);
        assert_eq!(t.concepts_with_form(lang("en"), "See").count(), 0);
        assert!(t.is_polysemous(lang("de"), "See"));
        assert!(!t.is_polysemous(lang("de"), "Brot"));
        assert_eq!(t.polysemy_of(lang("de"), "See").count(), 1);
        assert_eq!(
            t.homographs_of("PAIN")
                .map(|h| h.lang_a)
                .collect::<Vec<_>>(),
            [lang("fr")]
        );
        assert_eq!(t.homographs_of("bread").count(), 0);
    }

    #[test]
    fn shared_form_without_mark_is_polysemous() {
        let t = ConceptTable::new(
            "x",
            vec![lang("sw")],
            vec![
                concept("bird", &[("sw", &["ndege"])]),
                concept("plane", &[("sw", &["ndege"])]),
            ],
            vec![],
            vec![],
        )
        .unwrap();
        assert!(t.is_polysemous(lang("sw"), "ndege"));
    }

    #[test]
    fn require_names_concept_language_and_source() {
        let t = sample();
        assert_eq!(t.require("lake", lang("fr")).unwrap(), ["lac"]);
        assert_eq!(
            t.require("sea", lang("fr")).unwrap_err().to_string(),
            "concept \"sea\" has no form in \"fr\" (sample)"
        );
        assert_eq!(
            t.require("cow", lang("fr")).unwrap_err().to_string(),
            "concept \"cow\" is not in the table (sample)"
        );
    }

    #[test]
    fn subset_keeps_complete_concepts_and_degrades_links() {
        let t = sample();
        let s = t.subset(&[lang("fr"), lang("de")]).unwrap();
        assert_eq!(s.languages(), [lang("fr"), lang("de")]);
        let ids: Vec<_> = s.concepts().iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["bread", "lake"]);
        assert_eq!(s.concept("bread").unwrap().forms.len(), 2);
        // `sea` is gone, so the mark of `See` keeps it as a gloss.
        assert_eq!(s.polysemy()[0].other, Meaning::Gloss("sea".into()));
        // French `pain` survives; its English side is a gloss already.
        assert_eq!(s.homographs().len(), 1);
        assert!(t.subset(&[lang("ja")]).is_err());
        let only = t.only(&["lake".into(), "sea".into()]).unwrap();
        let ids: Vec<_> = only.concepts().iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["lake", "sea"]);
        assert_eq!(only.languages(), t.languages());
        let err = t.only(&["lake".into(), "moon".into()]).unwrap_err();
        assert!(
            err.to_string().contains("\"moon\" is not in the table"),
            "{err}"
        );
        assert!(t.subset(&[lang("fr"), lang("fr")]).is_err());
    }

    #[test]
    fn invalid_tables_are_refused() {
        let langs = || vec![lang("en"), lang("de")];
        let dup = ConceptTable::new(
            "t",
            langs(),
            vec![
                concept("a", &[("en", &["x"])]),
                concept("a", &[("en", &["y"])]),
            ],
            vec![],
            vec![],
        );
        assert_eq!(
            dup.unwrap_err().to_string(),
            "t: duplicate concept id \"a\""
        );
        let empty = ConceptTable::new(
            "t",
            langs(),
            vec![concept("a", &[("en", &[""])])],
            vec![],
            vec![],
        );
        assert_eq!(
            empty.unwrap_err().to_string(),
            "t: empty form in column \"en\""
        );
        let other_lang = ConceptTable::new(
            "t",
            langs(),
            vec![concept("a", &[("fr", &["x"])])],
            vec![],
            vec![],
        );
        assert_eq!(
            other_lang.unwrap_err().to_string(),
            "language \"fr\" is not in the table (t)"
        );
        let bad_mark = ConceptTable::new(
            "t",
            langs(),
            vec![concept("a", &[("en", &["x"])])],
            vec![Polysemy {
                lang: lang("en"),
                form: "y".into(),
                concept: "a".into(),
                other: Meaning::Gloss("z".into()),
                note: String::new(),
            }],
            vec![],
        );
        assert_eq!(
            bad_mark.unwrap_err().to_string(),
            "t: \"y\" is not a form of \"a\" in \"en\""
        );
    }

    #[test]
    fn meaning_parse() {
        assert_eq!(
            Meaning::parse("gloss: a bow"),
            Meaning::Gloss("a bow".into())
        );
        assert_eq!(Meaning::parse("sea"), Meaning::Concept("sea".into()));
        assert_eq!(Meaning::parse("sea").concept(), Some("sea"));
    }
}
