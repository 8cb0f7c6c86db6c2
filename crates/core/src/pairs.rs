//! Concept pairs and the token sets that measure concepts (docs/method.md, "Concept pairs",
//! "Metrics").
//!
//! P(concept in language) is the next-token probability mass on the **first tokens** of every
//! synonym of the concept in that language, each tokenized both as `word` and as ` word`
//! ([`ConceptTokens`]; a bare space token is skipped, see [`first_token`]). A pair (C_S, C_T)
//! is usable only if these sets cannot be confused: no first token of any form of C_S equals a
//! first token of any form of C_T. By default this is
//! checked across all languages of the study at once ([`Collision::AnyLanguage`], the strict
//! reading: a leak of C_S into another language must not be counted as C_T either);
//! [`Collision::SameLanguage`] only compares the sets of one language with each other.
//!
//! [`draw_pairs`] draws pairs so that every concept is used about equally often as source and
//! as target: each draw takes a least-used target, then a least-used compatible source not yet
//! paired with it, breaking ties with a seeded generator.

use std::collections::{BTreeMap, BTreeSet};

use xlpatch_concepts::{ConceptTable, Lang};

use crate::rng::Rng;
use crate::{Error, PromptError, TokenizerError};

/// The first token of `text` encoded without special tokens that is more than whitespace;
/// `None` when there is none.
///
/// A tokenizer that has no merge of the space with a word's first letters encodes ` word` as
/// a bare space token followed by the word's tokens; that space token says nothing about the
/// concept (it would be the "first token" of almost every ` word` and make every pair
/// collide), so it is skipped and the word's own first token taken.
pub fn first_token(tokenizer: &tokenizers::Tokenizer, text: &str) -> Result<Option<u32>, Error> {
    let enc = tokenizer
        .encode(text, false)
        .map_err(|source| Error::Tokenizer {
            path: None,
            source: TokenizerError::Encode {
                text: text.to_string(),
                source,
            },
        })?;
    for &id in enc.get_ids() {
        let piece = tokenizer
            .decode(&[id], false)
            .map_err(|source| Error::Tokenizer {
                path: None,
                source: TokenizerError::Decode { id, source },
            })?;
        if !piece.trim().is_empty() {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The text of every token of the vocabulary decoded alone, indexed by id: decoded once per
/// tokenizer for everything that looks tokens up by their text (augmented sets, stop tokens).
pub(crate) fn vocab_pieces(tokenizer: &tokenizers::Tokenizer) -> Result<Vec<String>, Error> {
    (0..tokenizer.get_vocab_size(true) as u32)
        .map(|id| {
            tokenizer
                .decode(&[id], false)
                .map_err(|source| Error::Tokenizer {
                    path: None,
                    source: TokenizerError::Decode { id, source },
                })
        })
        .collect()
}

/// The augmented sets of the concepts of `first` (see [`ConceptTokens`]), each a superset of
/// its first-token set: one pass over the vocabulary, looking every token's text up among
/// the prefixes of every form.
#[allow(clippy::type_complexity)]
fn augmented_sets(
    pieces: &[String],
    table: &ConceptTable,
    langs: &[Lang],
    first: &BTreeMap<String, BTreeMap<Lang, Vec<u32>>>,
) -> Result<BTreeMap<String, BTreeMap<Lang, Vec<u32>>>, Error> {
    // prefix text -> (concept, language) that have it
    let mut prefixes: std::collections::HashMap<String, Vec<(&str, Lang)>> = Default::default();
    for concept in table
        .concepts()
        .iter()
        .filter(|c| first.contains_key(&c.id))
    {
        for &lang in langs {
            for form in concept.forms_in(lang) {
                for text in [form.clone(), format!(" {form}")] {
                    for (end, c) in text.char_indices() {
                        let prefix = &text[..end + c.len_utf8()];
                        if prefix.trim().is_empty() {
                            continue;
                        }
                        let owners = prefixes.entry(prefix.to_string()).or_default();
                        if !owners.contains(&(concept.id.as_str(), lang)) {
                            owners.push((concept.id.as_str(), lang));
                        }
                    }
                }
            }
        }
    }
    let mut out: BTreeMap<String, BTreeMap<Lang, Vec<u32>>> = first.clone();
    for (id, piece) in pieces.iter().enumerate() {
        for &(concept, lang) in prefixes.get(piece).into_iter().flatten() {
            if let Some(ids) = out.get_mut(concept).and_then(|m| m.get_mut(&lang)) {
                ids.push(id as u32);
            }
        }
    }
    for ids in out.values_mut().flat_map(|m| m.values_mut()) {
        ids.sort_unstable();
        ids.dedup();
    }
    Ok(out)
}

/// Which token sets a pair's two concepts must not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Collision {
    /// No token of C_S in any study language equals a token of C_T in any study language.
    #[default]
    AnyLanguage,
    /// For each study language, the two concepts' sets in that language are disjoint.
    SameLanguage,
}

/// The first-token sets of each concept in each study language, and their augmented
/// variant: every vocabulary token whose text is a prefix of `word` or ` word`
/// (docs/method.md, "Metrics"), so that a model that starts the word with a
/// shorter piece than the tokenizer's own first token is still counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConceptTokens {
    langs: Vec<Lang>,
    sets: BTreeMap<String, BTreeMap<Lang, Vec<u32>>>,
    augmented: BTreeMap<String, BTreeMap<Lang, Vec<u32>>>,
}

impl ConceptTokens {
    /// The sets of every concept of `table` that has a form in each of `langs`: for each
    /// synonym `w`, the first token of `w` and of ` w`, sorted and deduplicated.
    pub fn build(
        tokenizer: &tokenizers::Tokenizer,
        table: &ConceptTable,
        langs: &[Lang],
    ) -> Result<ConceptTokens, Error> {
        Self::build_with(tokenizer, table, langs, &vocab_pieces(tokenizer)?)
    }

    /// [`ConceptTokens::build`] with the tokenizer's [`vocab_pieces`] already decoded.
    pub(crate) fn build_with(
        tokenizer: &tokenizers::Tokenizer,
        table: &ConceptTable,
        langs: &[Lang],
        pieces: &[String],
    ) -> Result<ConceptTokens, Error> {
        let mut sets = BTreeMap::new();
        for concept in table.concepts().iter().filter(|c| c.is_complete(langs)) {
            let mut per_lang = BTreeMap::new();
            for &lang in langs {
                let mut ids = Vec::new();
                for form in concept.forms_in(lang) {
                    for text in [form.clone(), format!(" {form}")] {
                        ids.extend(first_token(tokenizer, &text)?);
                    }
                }
                ids.sort_unstable();
                ids.dedup();
                per_lang.insert(lang, ids);
            }
            sets.insert(concept.id.clone(), per_lang);
        }
        let augmented = augmented_sets(pieces, table, langs, &sets)?;
        Ok(ConceptTokens {
            langs: langs.to_vec(),
            sets,
            augmented,
        })
    }

    /// The augmented set of `concept` in `lang`: every token whose text is a non-blank
    /// prefix of a form or of the form after a space (a superset of [`Self::get`]).
    pub fn augmented(&self, concept: &str, lang: Lang) -> &[u32] {
        self.augmented
            .get(concept)
            .and_then(|m| m.get(&lang))
            .map_or(&[], Vec::as_slice)
    }

    /// The study languages.
    pub fn langs(&self) -> &[Lang] {
        &self.langs
    }

    /// The concepts with a set in every study language, sorted by id.
    pub fn concepts(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    /// The token set of `concept` in `lang` (empty for an unknown concept or language).
    pub fn get(&self, concept: &str, lang: Lang) -> &[u32] {
        self.sets
            .get(concept)
            .and_then(|m| m.get(&lang))
            .map_or(&[], Vec::as_slice)
    }

    /// The union of `concept`'s sets over the study languages.
    pub fn all(&self, concept: &str) -> BTreeSet<u32> {
        self.sets
            .get(concept)
            .into_iter()
            .flat_map(|m| m.values().flatten().copied())
            .collect()
    }

    /// Whether `a` and `b` share a token under `rule`.
    pub fn collide(&self, a: &str, b: &str, rule: Collision) -> bool {
        match rule {
            Collision::AnyLanguage => !self.all(a).is_disjoint(&self.all(b)),
            Collision::SameLanguage => self.langs.iter().any(|&l| {
                let sb = self.get(b, l);
                self.get(a, l).iter().any(|t| sb.binary_search(t).is_ok())
            }),
        }
    }
}

/// A source concept patched into a target prompt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConceptPair {
    /// C_S, whose latent is patched in.
    pub source: String,
    /// C_T, the concept the target prompt asks for.
    pub target: String,
}

/// Draws `n` distinct pairs of distinct, non-colliding concepts among `concepts`, each
/// concept about equally often a target and a source (seeded). Fails when fewer than `n`
/// such pairs exist.
pub fn draw_pairs(
    tokens: &ConceptTokens,
    concepts: &[String],
    n: usize,
    rule: Collision,
    seed: u64,
) -> Result<Vec<ConceptPair>, Error> {
    let mut rng = Rng::stream(seed, "pairs");
    let k = concepts.len();
    let ok: Vec<Vec<bool>> = (0..k)
        .map(|t| {
            (0..k)
                .map(|s| s != t && !tokens.collide(&concepts[s], &concepts[t], rule))
                .collect()
        })
        .collect();
    let mut used = vec![vec![false; k]; k];
    let (mut as_target, mut as_source) = (vec![0usize; k], vec![0usize; k]);
    let mut pairs = Vec::with_capacity(n);
    // Picks uniformly among the indices minimising `key`.
    let pick = |rng: &mut Rng, cands: &[usize], key: &dyn Fn(usize) -> (usize, usize)| {
        let best = cands.iter().map(|&i| key(i)).min()?;
        let tied: Vec<usize> = cands.iter().copied().filter(|&i| key(i) == best).collect();
        rng.choose(&tied).copied()
    };
    while pairs.len() < n {
        let open = |t: usize| (0..k).any(|s| ok[t][s] && !used[t][s]);
        let targets: Vec<usize> = (0..k).filter(|&t| open(t)).collect();
        let Some(t) = pick(&mut rng, &targets, &|i| {
            (as_target[i], as_target[i] + as_source[i])
        }) else {
            return Err(Error::Prompt(PromptError::TooFewPairs {
                found: pairs.len(),
                concepts: k,
                wanted: n,
            }));
        };
        let sources: Vec<usize> = (0..k).filter(|&s| ok[t][s] && !used[t][s]).collect();
        let s = pick(&mut rng, &sources, &|i| {
            (as_source[i], as_target[i] + as_source[i])
        })
        .expect("an open target has a source");
        used[t][s] = true;
        as_target[t] += 1;
        as_source[s] += 1;
        pairs.push(ConceptPair {
            source: concepts[s].clone(),
            target: concepts[t].clone(),
        });
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(code: &str) -> Lang {
        Lang::from_code(code).unwrap()
    }

    /// Sets written by hand: concept `i` has tokens {i, 100 + i} in `en` and {200 + i} in
    /// `de`, except that `c3` and `c4` share token 7 in `de` and `c5` shares `c0`'s `en` token
    /// 0 in `de`.
    fn tokens() -> ConceptTokens {
        let mut sets = BTreeMap::new();
        for i in 0..8u32 {
            let mut de = vec![200 + i];
            if i == 3 || i == 4 {
                de.push(7);
            }
            if i == 5 {
                de.push(0);
            }
            de.sort_unstable();
            sets.insert(
                format!("c{i}"),
                [(lang("en"), vec![i, 100 + i]), (lang("de"), de)]
                    .into_iter()
                    .collect(),
            );
        }
        ConceptTokens {
            langs: vec![lang("en"), lang("de")],
            sets,
            augmented: BTreeMap::new(),
        }
    }

    #[test]
    fn collisions_follow_the_rule() {
        let t = tokens();
        assert!(t.collide("c3", "c4", Collision::SameLanguage));
        assert!(t.collide("c3", "c4", Collision::AnyLanguage));
        // c5's `de` token 0 is c0's `en` token: a cross-language collision only.
        assert!(!t.collide("c0", "c5", Collision::SameLanguage));
        assert!(t.collide("c0", "c5", Collision::AnyLanguage));
        // c3's `de` token 7 is c7's `en` token 7.
        assert!(t.collide("c7", "c3", Collision::AnyLanguage));
        assert!(!t.collide("c1", "c2", Collision::AnyLanguage));
        assert_eq!(t.get("c1", lang("de")), &[201]);
        assert_eq!(t.get("nope", lang("de")), &[] as &[u32]);
    }

    #[test]
    fn pairs_are_compatible_distinct_balanced_and_seeded() {
        let t = tokens();
        let concepts: Vec<String> = t.concepts().map(str::to_string).collect();
        let pairs = draw_pairs(&t, &concepts, 24, Collision::AnyLanguage, 5).unwrap();
        assert_eq!(
            pairs,
            draw_pairs(&t, &concepts, 24, Collision::AnyLanguage, 5).unwrap()
        );
        assert_ne!(
            pairs,
            draw_pairs(&t, &concepts, 24, Collision::AnyLanguage, 6).unwrap()
        );
        let mut distinct = pairs.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 24);
        for p in &pairs {
            assert_ne!(p.source, p.target);
            assert!(
                !t.collide(&p.source, &p.target, Collision::AnyLanguage),
                "{p:?}"
            );
        }
        // 8 concepts, 24 pairs: each concept is a target 3 times and a source about 3 times.
        for c in &concepts {
            let nt = pairs.iter().filter(|p| &p.target == c).count();
            let ns = pairs.iter().filter(|p| &p.source == c).count();
            assert!(nt == 3 && (2..=4).contains(&ns), "{c}: {nt} {ns} {pairs:?}");
        }
    }

    #[test]
    fn too_many_pairs_is_an_error() {
        let t = tokens();
        let concepts: Vec<String> = ["c3", "c4", "c1"].map(String::from).to_vec();
        // c3-c4 collide; c1 with either, both ways, remains.
        assert_eq!(
            draw_pairs(&t, &concepts, 4, Collision::AnyLanguage, 1)
                .unwrap()
                .len(),
            4
        );
        let err = draw_pairs(&t, &concepts, 5, Collision::AnyLanguage, 1).unwrap_err();
        assert!(err.to_string().contains("only 4 concept pairs"), "{err}");
    }
}
