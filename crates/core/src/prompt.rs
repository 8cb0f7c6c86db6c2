//! Prompts from templates (docs/method.md, "Prompts"): few-shot word translation, copy
//! prompts (a language to itself), source prompts cut right after the concept word, and the
//! token position of that word's last token.
//!
//! A [`Template`] is data: one line with the placeholders `{in_lang}`, `{in_word}`,
//! `{out_lang}` and `{out_word}`, and the separator between lines. The default is the format
//! of Dumas et al. and docs/method.md:
//!
//! ```text
//! Français: "jour" - Deutsch: "Tag"
//! ...
//! Français: "livre" - Deutsch: "
//! ```
//!
//! A prompt is built as a string while the byte span of its query word is recorded, so the
//! word's tokens are found from the tokenizer's offsets, never by tokenizing the word on its
//! own (which can split differently from the word in context).
//!
//! **Where a word's last token is.** [`locate_word_end`] takes the last non-special token
//! whose offsets contain the word's last byte. A word split into several tokens is thus
//! located at its last piece. A tokenizer without a punctuation pre-tokenizer (SentencePiece
//! style) can merge the word's end with the closing quote into one token (`ch"`); the token
//! containing the word's last character is then used, since it is the first position whose
//! residual has read the whole word, and [`WordEnd::merged`] records that it reaches past the
//! word so that a study can count or drop such prompts. Source prompts are cut right after
//! the word, so there the merge cannot happen.

use std::ops::Range;

use xlpatch_concepts::{ConceptTable, Lang};

use crate::rng::Rng;
use crate::{Error, PromptError, TemplateProblem, TokenizerError};

/// The default number of demonstrations before the query.
pub const DEFAULT_SHOTS: usize = 5;

/// A placeholder of a template line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    InLang,
    InWord,
    OutLang,
    OutWord,
}

impl Slot {
    const ALL: [(Slot, &'static str); 4] = [
        (Slot::InLang, "in_lang"),
        (Slot::InWord, "in_word"),
        (Slot::OutLang, "out_lang"),
        (Slot::OutWord, "out_word"),
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Slot(Slot),
}

/// How a prompt line is written: a line with the four placeholders, and what separates lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    line: String,
    sep: String,
    pieces: Vec<Piece>,
}

impl Default for Template {
    fn default() -> Self {
        Template::new(Template::DEFAULT_LINE, "\n").expect("the default template is valid")
    }
}

/// Where the query line of a prompt stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The whole line.
    Full,
    /// Right before `{out_word}`: a translation prompt asking for the answer.
    BeforeOutWord,
    /// Right after `{in_word}`: a cut source prompt.
    AfterInWord,
}

impl Template {
    /// The line of docs/method.md, "Prompts".
    pub const DEFAULT_LINE: &'static str = "{in_lang}: \"{in_word}\" - {out_lang}: \"{out_word}\"";

    /// A template from its line and separator. Every placeholder must occur exactly once,
    /// `{in_word}` before `{out_word}`, and no other `{name}` may occur.
    pub fn new(line: &str, sep: &str) -> Result<Template, Error> {
        let bad = |problem: TemplateProblem| {
            Error::Prompt(PromptError::Template {
                line: line.to_string(),
                problem,
            })
        };
        let mut pieces = Vec::new();
        let mut rest = line;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| bad(TemplateProblem::Unclosed))?;
            let name = &rest[open + 1..close];
            let slot = Slot::ALL
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(s, _)| *s)
                .ok_or_else(|| bad(TemplateProblem::UnknownPlaceholder(name.to_string())))?;
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            pieces.push(Piece::Slot(slot));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        let index = |slot: Slot| {
            let at: Vec<usize> = (0..pieces.len())
                .filter(|&i| pieces[i] == Piece::Slot(slot))
                .collect();
            match at.as_slice() {
                [i] => Ok(*i),
                _ => Err(bad(TemplateProblem::NotOnce {
                    name: Slot::ALL.iter().find(|(s, _)| *s == slot).expect("known").1,
                    count: at.len(),
                })),
            }
        };
        let (_, in_word, _, out_word) = (
            index(Slot::InLang)?,
            index(Slot::InWord)?,
            index(Slot::OutLang)?,
            index(Slot::OutWord)?,
        );
        if in_word > out_word {
            return Err(bad(TemplateProblem::Order));
        }
        Ok(Template {
            line: line.to_string(),
            sep: sep.to_string(),
            pieces,
        })
    }

    /// The line with its placeholders.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// What separates lines.
    pub fn sep(&self) -> &str {
        &self.sep
    }

    /// Appends one line to `out`; returns the byte span of `{in_word}` in `out`.
    fn render(&self, out: &mut String, vals: [&str; 4], until: Until) -> Range<usize> {
        let mut span = 0..0;
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Slot(slot) => {
                    if *slot == Slot::OutWord && until == Until::BeforeOutWord {
                        break;
                    }
                    let v = match slot {
                        Slot::InLang => vals[0],
                        Slot::InWord => vals[1],
                        Slot::OutLang => vals[2],
                        Slot::OutWord => vals[3],
                    };
                    let start = out.len();
                    out.push_str(v);
                    if *slot == Slot::InWord {
                        span = start..out.len();
                        if until == Until::AfterInWord {
                            break;
                        }
                    }
                }
            }
        }
        span
    }
}

pub use xlpatch_results::PromptKind;

/// A built prompt: its text, what it asks, and where the query word is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The prompt text.
    pub text: String,
    /// Where the prompt ends.
    pub kind: PromptKind,
    /// The query concept's id.
    pub concept: String,
    /// The query's input language.
    pub in_lang: Lang,
    /// The query's output language (equal to `in_lang` for a copy prompt).
    pub out_lang: Lang,
    /// The query word: the concept's preferred form in `in_lang`.
    pub word: String,
    /// The expected answer: the concept's preferred form in `out_lang`.
    pub answer: String,
    /// The byte span of `word` in `text`.
    pub word_span: Range<usize>,
    /// The concepts of the demonstrations, in order.
    pub demos: Vec<String>,
    /// The byte length of the demonstrations (with their separators): `text[..prefix_len]` is
    /// shared by every prompt with the same demonstrations and languages.
    pub prefix_len: usize,
}

/// Builds prompts over a concept table with a template.
#[derive(Debug, Clone, Copy)]
pub struct PromptBuilder<'a> {
    table: &'a ConceptTable,
    template: &'a Template,
    n_shots: usize,
}

impl<'a> PromptBuilder<'a> {
    /// A builder writing `n_shots` demonstrations before each query.
    pub fn new(table: &'a ConceptTable, template: &'a Template, n_shots: usize) -> Self {
        PromptBuilder {
            table,
            template,
            n_shots,
        }
    }

    /// The number of demonstrations per prompt.
    pub fn n_shots(&self) -> usize {
        self.n_shots
    }

    /// Draws the demonstrations of one prompt: `n_shots` distinct concepts with a form in
    /// both languages, none of them in `exclude` (the query concept, and the other concept of
    /// a patched pair so that the demonstrations cannot prime it).
    pub fn draw_demos(
        &self,
        rng: &mut Rng,
        in_lang: Lang,
        out_lang: Lang,
        exclude: &[&str],
    ) -> Result<Vec<String>, Error> {
        let pool: Vec<&str> = self
            .table
            .concepts()
            .iter()
            .filter(|c| c.is_complete(&[in_lang, out_lang]) && !exclude.contains(&c.id.as_str()))
            .map(|c| c.id.as_str())
            .collect();
        if pool.len() < self.n_shots {
            return Err(Error::Prompt(PromptError::TooFewDemos {
                table: self.table.source().to_path_buf(),
                available: pool.len(),
                in_lang: in_lang.to_string(),
                out_lang: out_lang.to_string(),
                excluded: exclude.iter().map(|e| e.to_string()).collect(),
                wanted: self.n_shots,
            }));
        }
        Ok(rng
            .sample(pool.len(), self.n_shots)
            .into_iter()
            .map(|i| pool[i].to_string())
            .collect())
    }

    fn preferred(&self, concept: &str, lang: Lang) -> Result<&'a str, Error> {
        Ok(self.table.require(concept, lang)?[0].as_str())
    }

    /// The prompt translating `concept` from `in_lang` to `out_lang` after `demos`, ending as
    /// `kind` says. A copy prompt has `in_lang == out_lang`.
    pub fn build(
        &self,
        kind: PromptKind,
        concept: &str,
        in_lang: Lang,
        out_lang: Lang,
        demos: &[String],
    ) -> Result<Prompt, Error> {
        if demos.iter().any(|d| d == concept) {
            return Err(Error::Prompt(PromptError::QueryInDemos(
                concept.to_string(),
            )));
        }
        let mut text = String::new();
        for demo in demos {
            let vals = [
                in_lang.name(),
                self.preferred(demo, in_lang)?,
                out_lang.name(),
                self.preferred(demo, out_lang)?,
            ];
            self.template.render(&mut text, vals, Until::Full);
            text.push_str(&self.template.sep);
        }
        let prefix_len = text.len();
        let word = self.preferred(concept, in_lang)?;
        let answer = self.preferred(concept, out_lang)?;
        let until = match kind {
            PromptKind::Translation => Until::BeforeOutWord,
            PromptKind::Cut => Until::AfterInWord,
        };
        let word_span = self.template.render(
            &mut text,
            [in_lang.name(), word, out_lang.name(), answer],
            until,
        );
        Ok(Prompt {
            text,
            kind,
            concept: concept.to_string(),
            in_lang,
            out_lang,
            word: word.to_string(),
            answer: answer.to_string(),
            word_span,
            demos: demos.to_vec(),
            prefix_len,
        })
    }
}

/// The token that ends a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordEnd {
    /// Its index in the encoding (special tokens such as BOS included).
    pub token: usize,
    /// Whether the token reaches past the word (the word merged with what follows).
    pub merged: bool,
}

/// The last token of the word at byte span `span`, from an encoding's byte `offsets` and its
/// special-token mask (special tokens, e.g. BOS at `(0, 0)`, are never chosen). See the
/// module documentation for the rule.
pub fn locate_word_end(
    offsets: &[(usize, usize)],
    special: &[u32],
    span: &Range<usize>,
) -> Option<WordEnd> {
    if span.is_empty() {
        return None;
    }
    let last = span.end - 1;
    (0..offsets.len())
        .rev()
        .find(|&i| {
            special.get(i).copied().unwrap_or(0) == 0 && offsets[i].0 <= last && last < offsets[i].1
        })
        .map(|i| WordEnd {
            token: i,
            merged: offsets[i].1 > span.end,
        })
}

/// A prompt as token ids, with the position of its query word's last token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokenized {
    /// Token ids, with the tokenizer's special tokens (e.g. BOS).
    pub ids: Vec<u32>,
    /// Where the query word ends.
    pub word_end: WordEnd,
    /// How many leading tokens encode the demonstrations alone, exactly as they are encoded
    /// on their own (0 when unknown): a run of them can be computed once and shared by every
    /// prompt with the same demonstrations (docs/method.md, "Shared prefixes").
    pub prefix: usize,
}

/// Encodes `text` (special tokens added, as the model saw in training) and locates the last
/// token of the word at `span`.
pub fn tokenize(
    tokenizer: &tokenizers::Tokenizer,
    text: &str,
    span: &Range<usize>,
) -> Result<Tokenized, Error> {
    let enc = tokenizer
        .encode(text, true)
        .map_err(|source| Error::Tokenizer {
            path: None,
            source: TokenizerError::Encode {
                text: text.to_string(),
                source,
            },
        })?;
    let word_end = locate_word_end(enc.get_offsets(), enc.get_special_tokens_mask(), span)
        .ok_or_else(|| {
            Error::Prompt(PromptError::WordEnd {
                word: text.get(span.clone()).unwrap_or("?").to_string(),
                start: span.start,
                end: span.end,
                text: text.to_string(),
            })
        })?;
    Ok(Tokenized {
        ids: enc.get_ids().to_vec(),
        word_end,
        prefix: 0,
    })
}

impl Prompt {
    /// The prompt's token ids, the position of the query word's last token, and the tokens
    /// shared with the demonstrations encoded alone.
    pub fn tokenize(&self, tokenizer: &tokenizers::Tokenizer) -> Result<Tokenized, Error> {
        let mut tokens = tokenize(tokenizer, &self.text, &self.word_span)?;
        if self.prefix_len > 0 {
            let prefix = &self.text[..self.prefix_len];
            let enc = tokenizer
                .encode(prefix, true)
                .map_err(|source| Error::Tokenizer {
                    path: None,
                    source: TokenizerError::Encode {
                        text: prefix.to_string(),
                        source,
                    },
                })?;
            // Tokens merged across the boundary, or an end-of-sequence token added after the
            // prefix alone, end the shared part; the word itself is never in it.
            let shared = enc
                .get_ids()
                .iter()
                .zip(&tokens.ids)
                .take_while(|(a, b)| a == b)
                .count();
            tokens.prefix = shared.min(tokens.word_end.token);
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xlpatch_concepts::Concept;

    fn lang(code: &str) -> Lang {
        Lang::from_code(code).unwrap()
    }

    fn table() -> ConceptTable {
        let rows: &[(&str, &[&str], &[&str])] = &[
            ("day", &["day"], &["Tag"]),
            ("book", &["book"], &["Buch"]),
            ("dog", &["dog"], &["Hund"]),
            ("cat", &["cat"], &["Katze"]),
            ("house", &["house", "home"], &["Haus"]),
            ("tree", &["tree"], &["Baum"]),
            ("water", &["water"], &["Wasser"]),
        ];
        let concepts = rows
            .iter()
            .map(|(id, en, de)| Concept {
                id: id.to_string(),
                forms: [
                    (lang("en"), en.iter().map(|s| s.to_string()).collect()),
                    (lang("de"), de.iter().map(|s| s.to_string()).collect()),
                ]
                .into_iter()
                .collect(),
            })
            .collect();
        ConceptTable::new(
            "test",
            vec![lang("en"), lang("de")],
            concepts,
            vec![],
            vec![],
        )
        .unwrap()
    }

    #[test]
    fn the_default_template_writes_design_s_format() {
        let t = Template::default();
        let table = table();
        let b = PromptBuilder::new(&table, &t, 2);
        let demos = vec!["day".to_string(), "dog".to_string()];
        let p = b
            .build(
                PromptKind::Translation,
                "book",
                lang("en"),
                lang("de"),
                &demos,
            )
            .unwrap();
        assert_eq!(
            p.text,
            "English: \"day\" - Deutsch: \"Tag\"\nEnglish: \"dog\" - Deutsch: \"Hund\"\nEnglish: \"book\" - Deutsch: \""
        );
        assert_eq!(&p.text[p.word_span.clone()], "book");
        assert_eq!(p.answer, "Buch");
        let cut = b
            .build(PromptKind::Cut, "book", lang("de"), lang("en"), &demos)
            .unwrap();
        assert!(cut.text.ends_with("\nDeutsch: \"Buch"), "{:?}", cut.text);
        assert_eq!(cut.word_span.end, cut.text.len());
        let copy = b
            .build(PromptKind::Translation, "book", lang("de"), lang("de"), &[])
            .unwrap();
        assert_eq!(copy.text, "Deutsch: \"Buch\" - Deutsch: \"");
    }

    #[test]
    fn templates_are_validated() {
        assert!(Template::new("{in_word} {out_word}", "\n").is_err());
        let err = Template::new("{in_lang} {in_word} {out_lang} {out_word} {x}", "\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown placeholder {x}"), "{err}");
        assert!(Template::new("{in_lang} {out_word} {out_lang} {in_word}", "\n").is_err());
        assert!(Template::new("{in_lang} {in_word {out_lang} {out_word}", "\n").is_err());
        let t = Template::new("{in_lang}={in_word}; {out_lang}={out_word}.", " | ").unwrap();
        let table = table();
        let p = PromptBuilder::new(&table, &t, 1)
            .build(
                PromptKind::Translation,
                "tree",
                lang("en"),
                lang("de"),
                &["cat".into()],
            )
            .unwrap();
        assert_eq!(
            p.text,
            "English=cat; Deutsch=Katze. | English=tree; Deutsch="
        );
    }

    #[test]
    fn demos_are_seeded_distinct_and_exclude_the_query() {
        let t = Template::default();
        let table = table();
        let b = PromptBuilder::new(&table, &t, 5);
        let a = b
            .draw_demos(&mut Rng::new(1), lang("en"), lang("de"), &["book", "dog"])
            .unwrap();
        assert_eq!(
            a,
            b.draw_demos(&mut Rng::new(1), lang("en"), lang("de"), &["book", "dog"])
                .unwrap()
        );
        assert_eq!(a.len(), 5);
        assert!(!a.contains(&"book".to_string()) && !a.contains(&"dog".to_string()));
        let mut d = a.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 5);
        let err = b
            .draw_demos(
                &mut Rng::new(1),
                lang("en"),
                lang("de"),
                &["book", "dog", "cat"],
            )
            .unwrap_err();
        assert!(err.to_string().contains("only 4 concepts"), "{err}");
        assert!(
            b.build(
                PromptKind::Cut,
                "book",
                lang("en"),
                lang("de"),
                &["book".into()]
            )
            .is_err()
        );
    }

    #[test]
    fn word_ends_are_found_from_offsets() {
        // BOS, `Deutsch`, `:`, ` "`, `Bu`, `ch`, `"`: the word `Buch` is bytes 10..14.
        let offsets = [
            (0, 0),
            (0, 7),
            (7, 8),
            (8, 10),
            (10, 12),
            (12, 14),
            (14, 15),
        ];
        let special = [1, 0, 0, 0, 0, 0, 0];
        let end = locate_word_end(&offsets, &special, &(10..14)).unwrap();
        assert_eq!(
            end,
            WordEnd {
                token: 5,
                merged: false
            }
        );
        // `ch"` merged with the closing quote.
        let merged = [(0, 0), (0, 7), (7, 8), (8, 10), (10, 12), (12, 15)];
        let end = locate_word_end(&merged, &special[..6], &(10..14)).unwrap();
        assert_eq!(
            end,
            WordEnd {
                token: 5,
                merged: true
            }
        );
        // Byte-level pieces of one character share its offsets: the last piece wins.
        let pieces = [(0, 0), (0, 3), (0, 3)];
        assert_eq!(
            locate_word_end(&pieces, &[1, 0, 0], &(0..3)).unwrap().token,
            2
        );
        // A special token never counts, an empty span has no end.
        assert_eq!(locate_word_end(&[(0, 4)], &[1], &(0..4)), None);
        assert_eq!(locate_word_end(&offsets, &special, &(3..3)), None);
    }
}
