//! Automatic error analysis of every generation (docs/method.md, "Error analysis").
//!
//! **What is counted.** Every generation once: the engine writes the unpatched run of a
//! target prompt once per start layer (the rows of a unit are one per setting and start
//! layer), so unpatched rows that repeat a generation of their unit are left out of the counts
//! and the review sheet ([`unique_generations`]). A row without generated tokens (a sweep with
//! `max_new_tokens = 0`) is *not generated*, not unparseable.
//!
//! A generation's answer is the text before its closing quote, trimmed (the engine stops
//! generating at the first token holding a `"`). The answer is compared with the concept
//! table, ignoring case (`buch` counts as German `Buch`), and put in the first category that
//! fits, in this order:
//!
//! 0. not generated: no token was generated;
//! 1. unparseable: no closing quote within the generated tokens, an empty answer, or one
//!    running over a line;
//! 2. correct C_S / correct C_T: the preferred form of C_S / C_T in out_T;
//! 3. another synonym: another form the table lists for C_S or C_T in out_T;
//! 4. homograph: a word the model was shown (the target's input word, or a source prompt's
//!    word) is a cross-lingual homograph, and the answer either copies it into the language
//!    where it means something else (*copied*) or is that other meaning in out_T
//!    (*translated*);
//! 5. copy of the input word;
//! 6. another sense: a word the model was shown is polysemous in its language (a polysemy
//!    mark, or listed under two concepts) and the answer names its other sense in out_T;
//! 7. wrong language: a form of C_S or C_T in another language of the table;
//! 8. other: anything else (the detail says whether it is a word of the table).

use std::collections::{BTreeMap, HashSet};

use xlpatch_concepts::{ConceptTable, Lang, Meaning};
use xlpatch_results::{PromptRecord, Row, Setting};

use crate::input::{Results, item_of};

/// What a generation is, for the error analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// The preferred form of C_S in out_T: the patch carried the source concept across.
    CorrectSource,
    /// The preferred form of C_T in out_T: the target survived the patch.
    CorrectTarget,
    /// Another form the table lists for C_S or C_T in out_T.
    Synonym,
    /// The other sense of a polysemous word the model was shown.
    OtherSense,
    /// A copy of the target's input word.
    Copy,
    /// A cross-lingual homograph, copied or translated.
    Homograph,
    /// C_S or C_T, in another language than out_T.
    WrongLanguage,
    /// No answer could be read.
    Unparseable,
    /// Anything else.
    Other,
    /// No token was generated (the sweep's `max_new_tokens` is 0).
    NotGenerated,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 10] = [
        Category::CorrectSource,
        Category::CorrectTarget,
        Category::Synonym,
        Category::OtherSense,
        Category::Copy,
        Category::Homograph,
        Category::WrongLanguage,
        Category::Unparseable,
        Category::Other,
        Category::NotGenerated,
    ];

    /// The name in CSV files (`correct_src`, `wrong_language`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Category::CorrectSource => "correct_src",
            Category::CorrectTarget => "correct_tgt",
            Category::Synonym => "synonym",
            Category::OtherSense => "other_sense",
            Category::Copy => "copy",
            Category::Homograph => "homograph",
            Category::WrongLanguage => "wrong_language",
            Category::Unparseable => "unparseable",
            Category::Other => "other",
            Category::NotGenerated => "not_generated",
        }
    }

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Category::CorrectSource => "correct C_S in out_T",
            Category::CorrectTarget => "correct C_T in out_T",
            Category::Synonym => "another synonym",
            Category::OtherSense => "another sense",
            Category::Copy => "copy of the input word",
            Category::Homograph => "homograph",
            Category::WrongLanguage => "right concept, wrong language",
            Category::Unparseable => "unparseable",
            Category::Other => "other",
            Category::NotGenerated => "not generated",
        }
    }
}

/// A word the model was shown: the target's input word or a source prompt's word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    pub lang: Lang,
    pub word: String,
    pub concept: String,
}

/// One generation to classify.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub in_lang: Lang,
    pub out_lang: Lang,
    /// C_S's id.
    pub source: String,
    /// C_T's id.
    pub target: String,
    /// The target prompt's word (C_T in in_T).
    pub input_word: String,
    /// The words of the source prompts of the row's setting.
    pub source_words: Vec<Shown>,
    pub generation: String,
    /// How many tokens were generated.
    pub tokens: usize,
}

/// A generation's category, its answer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    pub category: Category,
    pub answer: Option<String>,
    pub detail: String,
}

/// The answer of a generation: the text before the closing quote, trimmed; `None` when
/// there is no closing quote, or the answer is empty or spans lines.
pub(crate) fn answer_of(generation: &str) -> Option<&str> {
    let (before, _) = generation.split_once('"')?;
    let answer = before.trim();
    (!answer.is_empty() && !answer.contains(['\n', '\r'])).then_some(answer)
}

fn same(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

fn forms<'t>(table: &'t ConceptTable, concept: &str, lang: Lang) -> &'t [String] {
    table.forms(concept, lang).unwrap_or(&[])
}

/// The position of `answer` among the forms of `concept` in `lang`.
fn form_index(table: &ConceptTable, concept: &str, lang: Lang, answer: &str) -> Option<usize> {
    forms(table, concept, lang)
        .iter()
        .position(|f| same(f, answer))
}

/// The concepts whose forms in `lang` include `answer` (case ignored).
fn concepts_named(table: &ConceptTable, lang: Lang, answer: &str) -> Vec<String> {
    table
        .concepts()
        .iter()
        .filter(|c| c.forms_in(lang).iter().any(|f| same(f, answer)))
        .map(|c| c.id.clone())
        .collect()
}

/// The other meaning of a homograph mark for a shown word: the language where the string
/// means something else, and that meaning.
fn homograph_others(table: &ConceptTable, shown: &Shown) -> Vec<(Lang, Meaning)> {
    let mut out = Vec::new();
    for h in table.homographs_of(&shown.word) {
        if h.lang_a == shown.lang && same(&h.form, &shown.word) && h.concept_a == shown.concept {
            out.push((h.lang_b, h.meaning_b.clone()));
        } else if h.lang_b == shown.lang && h.meaning_b.concept() == Some(shown.concept.as_str()) {
            out.push((h.lang_a, Meaning::Concept(h.concept_a.clone())));
        }
    }
    out
}

/// The other concepts a shown word names in its own language.
fn other_senses(table: &ConceptTable, shown: &Shown) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in table.polysemy_of(shown.lang, &shown.word) {
        let other = if p.concept == shown.concept {
            p.other.concept().map(str::to_string)
        } else if p.other.concept() == Some(shown.concept.as_str()) {
            Some(p.concept.clone())
        } else {
            None
        };
        out.extend(other);
    }
    for c in table.concepts_with_form(shown.lang, &shown.word) {
        if c.id != shown.concept {
            out.push(c.id.clone());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Classifies one generation (see the module documentation for the order of the rules).
pub(crate) fn classify(table: &ConceptTable, case: &Case) -> Classified {
    let done = |category, answer: &str, detail: String| Classified {
        category,
        answer: Some(answer.to_string()),
        detail,
    };
    if case.tokens == 0 && case.generation.is_empty() {
        return Classified {
            category: Category::NotGenerated,
            answer: None,
            detail: "no token generated (max_new_tokens = 0)".into(),
        };
    }
    let Some(answer) = answer_of(&case.generation) else {
        let detail = if case.generation.contains('"') {
            "the answer is empty or spans lines"
        } else {
            "no closing quote in the generated tokens"
        };
        return Classified {
            category: Category::Unparseable,
            answer: None,
            detail: detail.into(),
        };
    };
    let out = case.out_lang;
    for (role, concept, correct) in [
        ("C_S", &case.source, Category::CorrectSource),
        ("C_T", &case.target, Category::CorrectTarget),
    ] {
        match form_index(table, concept, out, answer) {
            Some(0) => return done(correct, answer, format!("{role} ({concept}) in {out}")),
            Some(_) => {
                return done(
                    Category::Synonym,
                    answer,
                    format!(
                        "a synonym of {role} ({concept}) in {out}; preferred: {}",
                        forms(table, concept, out)[0]
                    ),
                );
            }
            None => {}
        }
    }
    let input = Shown {
        lang: case.in_lang,
        word: case.input_word.clone(),
        concept: case.target.clone(),
    };
    let shown: Vec<&Shown> = std::iter::once(&input)
        .chain(case.source_words.iter())
        .collect();
    for s in &shown {
        for (lang, meaning) in homograph_others(table, s) {
            let what = match &meaning {
                Meaning::Concept(id) => id.clone(),
                Meaning::Gloss(g) => g.clone(),
            };
            if same(answer, &s.word) && lang == out {
                return done(
                    Category::Homograph,
                    answer,
                    format!(
                        "copied: {} '{}' ({}) is also {lang} for {what}",
                        s.lang, s.word, s.concept
                    ),
                );
            }
            if let Meaning::Concept(id) = &meaning
                && form_index(table, id, out, answer).is_some()
            {
                return done(
                    Category::Homograph,
                    answer,
                    format!(
                        "translated: {} '{}' ({}) read as {lang} '{}' ({id})",
                        s.lang, s.word, s.concept, s.word
                    ),
                );
            }
        }
    }
    if same(answer, &case.input_word) {
        return done(
            Category::Copy,
            answer,
            format!("copy of the {} input word", case.in_lang),
        );
    }
    for s in &shown {
        for other in other_senses(table, s) {
            if form_index(table, &other, out, answer).is_some() {
                return done(
                    Category::OtherSense,
                    answer,
                    format!(
                        "{other}, another sense of {} '{}' ({})",
                        s.lang, s.word, s.concept
                    ),
                );
            }
        }
    }
    for (role, concept) in [("C_S", &case.source), ("C_T", &case.target)] {
        if let Some(lang) = table
            .languages()
            .iter()
            .find(|&&l| l != out && form_index(table, concept, l, answer).is_some())
        {
            return done(
                Category::WrongLanguage,
                answer,
                format!("{role} ({concept}) in {lang}, not {out}"),
            );
        }
    }
    let named = concepts_named(table, out, answer);
    let detail = if named.is_empty() {
        format!("not a form of the table in {out}")
    } else {
        format!("{} in {out}", named.join(", "))
    };
    done(Category::Other, answer, detail)
}

/// The case of a result row, from the prompts of its item; `None` when a language is
/// unknown to xlpatch.
fn case_of(results: &Results, row: &Row) -> Option<Case> {
    let item = item_of(row);
    let shown = |rec: &PromptRecord| {
        Some(Shown {
            lang: Lang::from_code(&rec.in_lang)?,
            word: rec.word.clone(),
            concept: rec.concept.clone(),
        })
    };
    Some(Case {
        in_lang: Lang::from_code(&row.in_lang)?,
        out_lang: Lang::from_code(&row.out_lang)?,
        source: row.source.clone(),
        target: row.target.clone(),
        input_word: results
            .prompts
            .target(&item)
            .map(|t| t.word.clone())
            .unwrap_or_default(),
        source_words: results
            .prompts
            .sources(&item, row.setting)
            .iter()
            .filter_map(shown)
            .collect(),
        generation: row.generation.clone(),
        tokens: row.generation_ids.len(),
    })
}

/// The rows that are distinct generations, in row order: every patched row, and of the
/// unpatched rows of a unit (one per start layer, the same run) the first of each generation.
pub(crate) fn unique_generations(results: &Results) -> Vec<usize> {
    let mut seen = HashSet::new();
    (0..results.rows.len())
        .filter(|&i| {
            let r = &results.rows[i];
            r.setting != Setting::Unpatched
                || seen.insert((&r.unit, &r.generation, &r.generation_ids))
        })
        .collect()
}

/// Classifies the generations of the rows `which`, in that order.
pub(crate) fn classify_rows(
    results: &Results,
    table: &ConceptTable,
    which: &[usize],
) -> Vec<Classified> {
    which
        .iter()
        .map(|&i| &results.rows[i])
        .map(|row| match case_of(results, row) {
            Some(case) => classify(table, &case),
            None if row.generation_ids.is_empty() && row.generation.is_empty() => Classified {
                category: Category::NotGenerated,
                answer: None,
                detail: "no token generated (max_new_tokens = 0)".into(),
            },
            None => Classified {
                category: Category::Other,
                answer: answer_of(&row.generation).map(str::to_string),
                detail: format!(
                    "language {} or {} unknown to xlpatch",
                    row.in_lang, row.out_lang
                ),
            },
        })
        .collect()
}

/// One cell of the counts. Ordered field by field: training order, then report order of
/// settings, then start layer (none for unpatched generations, which have none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cell {
    /// The checkpoint's place in training order.
    pub checkpoint_order: usize,
    /// The checkpoint.
    pub checkpoint: String,
    /// The setting's place in report order.
    pub setting_order: usize,
    /// The setting.
    pub setting: Setting,
    /// The start layer; `None` for an unpatched generation.
    pub layer: Option<usize>,
}

/// Counts per (checkpoint, setting, start layer) and category.
#[derive(Debug)]
pub(crate) struct Counts {
    /// The counts of each cell, one per category.
    pub cells: BTreeMap<Cell, [usize; Category::ALL.len()]>,
}

impl Counts {
    /// The counts of `classified`, the categories of the rows `which`.
    pub fn new(results: &Results, which: &[usize], classified: &[Classified]) -> Counts {
        let checkpoints = results.checkpoints();
        let mut cells: BTreeMap<_, [usize; Category::ALL.len()]> = BTreeMap::new();
        for (row, c) in which.iter().map(|&i| &results.rows[i]).zip(classified) {
            let ck = checkpoints
                .iter()
                .position(|x| *x == row.checkpoint)
                .unwrap_or(usize::MAX);
            let st = results
                .settings
                .iter()
                .position(|x| *x == row.setting)
                .unwrap_or(usize::MAX);
            let key = Cell {
                checkpoint_order: ck,
                checkpoint: row.checkpoint.clone(),
                setting_order: st,
                setting: row.setting,
                layer: (row.setting != Setting::Unpatched).then_some(row.start_layer),
            };
            let i = Category::ALL
                .iter()
                .position(|x| *x == c.category)
                .expect("every category is in ALL");
            cells.entry(key).or_default()[i] += 1;
        }
        Counts { cells }
    }

    /// How many generations fell in `category` in all.
    pub fn total(&self, category: Category) -> usize {
        let i = Category::ALL
            .iter()
            .position(|x| *x == category)
            .expect("every category is in ALL");
        self.cells.values().map(|c| c[i]).sum()
    }

    /// Per (checkpoint, setting), summed over start layers, in report order.
    pub fn by_checkpoint_setting(&self) -> Vec<(String, Setting, [usize; Category::ALL.len()])> {
        // The same cells with every start layer at 0: summed per (checkpoint, setting).
        let mut acc: BTreeMap<Cell, [usize; Category::ALL.len()]> = BTreeMap::new();
        for (cell, counts) in &self.cells {
            let e = acc
                .entry(Cell {
                    layer: None,
                    ..cell.clone()
                })
                .or_default();
            for (a, b) in e.iter_mut().zip(counts) {
                *a += b;
            }
        }
        acc.into_iter()
            .map(|(cell, counts)| (cell.checkpoint, cell.setting, counts))
            .collect()
    }

    /// The counts as CSV: checkpoint, setting, start layer (empty for unpatched generations),
    /// then one column per category.
    pub fn to_csv(&self) -> String {
        let header: Vec<&str> = ["checkpoint", "setting", "start_layer"]
            .into_iter()
            .chain(Category::ALL.iter().map(|c| c.name()))
            .collect();
        let records = self.cells.iter().map(|(cell, counts)| {
            [
                cell.checkpoint.clone(),
                cell.setting.to_string(),
                cell.layer.map_or(String::new(), |j| j.to_string()),
            ]
            .into_iter()
            .chain(counts.iter().map(|n| n.to_string()))
            .collect::<Vec<_>>()
        });
        crate::csv_text(&header, records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ConceptTable {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/concepts");
        ConceptTable::load(dir).expect("the project's concept table in fixtures/concepts")
    }

    fn lang(code: &str) -> Lang {
        Lang::from_code(code).unwrap()
    }

    /// A target prompt `in_lang → out_lang` translating `target`'s word `input_word`,
    /// patched with `source`, that generated `generation`.
    fn case(
        pair: (&str, &str),
        source: &str,
        target: &str,
        input_word: &str,
        generation: &str,
    ) -> Case {
        Case {
            in_lang: lang(pair.0),
            out_lang: lang(pair.1),
            source: source.into(),
            target: target.into(),
            input_word: input_word.into(),
            source_words: Vec::new(),
            generation: generation.into(),
            tokens: 2,
        }
    }

    fn check(case: &Case, category: Category, detail: &str) {
        let got = classify(&table(), case);
        assert_eq!(got.category, category, "{case:?} → {got:?}");
        assert!(
            got.detail.contains(detail),
            "{case:?}: detail {:?} lacks {detail:?}",
            got.detail
        );
    }

    #[test]
    fn the_answer_is_the_text_before_the_closing_quote() {
        assert_eq!(answer_of(" Buch\"\n"), Some("Buch"));
        assert_eq!(answer_of("pomme de terre\" - x"), Some("pomme de terre"));
        assert_eq!(answer_of("Buch"), None);
        assert_eq!(answer_of("  \""), None);
        assert_eq!(answer_of("Buch\nFrançais: \"x\""), None);
    }

    #[test]
    fn correct_source_is_the_preferred_form_of_c_s_in_out_t() {
        check(
            &case(("fr", "de"), "book", "tree", "arbre", "Buch\""),
            Category::CorrectSource,
            "C_S (book) in de",
        );
        // Case is ignored.
        check(
            &case(("fr", "de"), "book", "tree", "arbre", "buch\""),
            Category::CorrectSource,
            "C_S",
        );
    }

    #[test]
    fn correct_target_is_the_preferred_form_of_c_t_in_out_t() {
        check(
            &case(("fr", "de"), "book", "tree", "arbre", "Baum\"\n"),
            Category::CorrectTarget,
            "C_T (tree) in de",
        );
    }

    #[test]
    fn another_listed_form_is_a_synonym() {
        // German boy: Junge|Knabe.
        check(
            &case(("fr", "de"), "book", "boy", "garçon", "Knabe\""),
            Category::Synonym,
            "preferred: Junge",
        );
        // Spanish boy: chico|niño|muchacho, as C_S.
        check(
            &case(("fr", "es"), "boy", "tree", "arbre", "muchacho\""),
            Category::Synonym,
            "C_S (boy)",
        );
    }

    #[test]
    fn a_copied_input_word_is_a_copy() {
        check(
            &case(("fr", "de"), "book", "tree", "arbre", "arbre\""),
            Category::Copy,
            "copy of the fr input word",
        );
    }

    #[test]
    fn a_copied_homograph_is_a_homograph() {
        // French sol 'floor' is Spanish sol 'sun': copying it into Spanish names the sun.
        check(
            &case(("fr", "es"), "book", "floor", "sol", "sol\""),
            Category::Homograph,
            "copied: fr 'sol' (floor) is also es for sun",
        );
        // Copied into a language where it means nothing else: a plain copy.
        check(
            &case(("fr", "de"), "book", "floor", "sol", "sol\""),
            Category::Copy,
            "copy",
        );
    }

    #[test]
    fn a_translated_homograph_is_a_homograph() {
        // Spanish papa 'potato' is German Papa 'dad': translating the German sense.
        check(
            &case(("es", "it"), "book", "potato", "papa", "padre\""),
            Category::Homograph,
            "translated: es 'papa' (potato) read as",
        );
        // Through a source prompt's word: Italian camera 'room' read as English 'camera'.
        let mut c = case(("de", "fr"), "room", "tree", "Baum", "appareil photo\"");
        c.source_words = vec![Shown {
            lang: lang("it"),
            word: "camera".into(),
            concept: "room".into(),
        }];
        check(&c, Category::Homograph, "it 'camera' (room) read as");
    }

    #[test]
    fn the_other_sense_of_a_polysemous_word_is_another_sense() {
        // German See is lake and sea: patched with lake from a German source prompt, the
        // model answers Italian mare 'sea'.
        let mut c = case(("fr", "it"), "lake", "tree", "arbre", "mare\"");
        c.source_words = vec![Shown {
            lang: lang("de"),
            word: "See".into(),
            concept: "lake".into(),
        }];
        check(
            &c,
            Category::OtherSense,
            "sea, another sense of de 'See' (lake)",
        );
    }

    #[test]
    fn the_right_concept_in_another_language_is_wrong_language() {
        check(
            &case(("fr", "de"), "book", "tree", "arbre", "book\""),
            Category::WrongLanguage,
            "C_S (book) in en, not de",
        );
        check(
            &case(("fr", "de"), "book", "tree", "arbre", "albero\""),
            Category::WrongLanguage,
            "C_T (tree) in it",
        );
    }

    #[test]
    fn no_closing_quote_or_an_empty_answer_is_unparseable() {
        check(
            &case(
                ("fr", "de"),
                "book",
                "tree",
                "arbre",
                "BlulagoDeutschDeutsch",
            ),
            Category::Unparseable,
            "no closing quote",
        );
        check(
            &case(("fr", "de"), "book", "tree", "arbre", " \""),
            Category::Unparseable,
            "empty",
        );
    }

    #[test]
    fn no_generated_token_is_not_generated() {
        let mut c = case(("fr", "de"), "book", "tree", "arbre", "");
        c.tokens = 0;
        check(&c, Category::NotGenerated, "max_new_tokens = 0");
        // A generated token without text (say, end of sequence) is unparseable.
        c.tokens = 1;
        check(&c, Category::Unparseable, "no closing quote");
    }

    #[test]
    fn anything_else_is_other() {
        check(
            &case(("fr", "de"), "friend", "duck", "canard", "Uhr\""),
            Category::Other,
            "clock in de",
        );
        check(
            &case(("fr", "de"), "friend", "duck", "canard", "Blulago\""),
            Category::Other,
            "not a form of the table",
        );
    }
}
