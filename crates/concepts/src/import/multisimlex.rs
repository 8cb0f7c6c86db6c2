//! Multi-SimLex (Vulić et al. 2020, <https://multisimlex.com>): 1,888 word pairs translated into
//! 12+ languages and rated for similarity; the concepts of Körner et al. come from it.
//!
//! # Format
//!
//! Two releases exist, and either (or both together) can be read:
//!
//! - **Per-language files** named by the language's ISO 639-3 code (`ENG.csv`, `SPA.csv`,
//!   `CMN.csv`, `CYM.csv`, ...), columns `ID`, `Word 1`, `Word 2`, `POS` and the annotators'
//!   scores (`Annotator 1`, ...). The same `ID` in two languages is the same pair.
//! - **`translation.csv`**, one row per pair, two columns per language named `<CODE> 1` and
//!   `<CODE> 2` (`ENG 1`, `ENG 2`, `CYM 1`, ...), and `ID` / `POS` columns.
//!
//! What was verified, and where: the file names `ENG.csv`, `SPA.csv`, `CMN.csv` and the columns
//! `Word 1`, `Word 2`, `Annotator *` of the per-language files (a gensim evaluation script that
//! downloads them from multisimlex.com); the files `translation.csv` and `scores.csv` and the
//! `<CODE> 1` / `<CODE> 2` columns (loaders in several public repositories, and the Concepticon
//! blog post "Mapping Multi-SimLex to Concepticon", which also states that pairs are identified
//! by a numeric id and that a word recurs across pairs, English *leg* in pairs 728 and 1025);
//! that pairs carry a part of speech and that translations of one English word vary across
//! pairs (`учитель` / `наставник` for *teacher*: Concepticon's list `Vulic-2020-2244`).
//! **Assumed, not seen in a released file:** the exact names `ID` and `POS` and the noun tag `N`
//! (as in SimLex-999). So columns are found by name ignoring case and padding; a file without
//! an `ID` column aligns pairs by row order (as `translation.csv` and `scores.csv` are aligned in
//! the loaders found); a noun is a POS of `N`, `NN`, `noun` or `nouns` (any case).
//!
//! # Import
//!
//! Pairs of all files are merged by id (the first file giving a word or a POS for a pair wins);
//! pairs whose POS is not a noun are dropped; a pair with no POS in any file is an error, since
//! nouns could not be told apart. Each word of a noun pair is a concept named by its English
//! word (lower-cased; so the English file, or the `ENG` columns, must be given). Its forms in a
//! language are the words the pairs give it there, most frequent first, ties in first-seen order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Collector, source_of};
use crate::text::{Header, parse_table, read_text};
use crate::{ConceptTable, Error, Lang, Location};

/// The combined file of the release.
pub const TRANSLATION_FILE: &str = "translation.csv";

/// The part-of-speech values read as "noun".
pub(super) const NOUN_TAGS: [&str; 4] = ["n", "nn", "noun", "nouns"];

/// One word pair, merged across files.
#[derive(Debug)]
struct Pair {
    at: Location,
    pos: Option<String>,
    /// (language, position 0 or 1) → the word.
    words: HashMap<(Lang, usize), String>,
}

#[derive(Debug, Default)]
struct Pairs {
    index: HashMap<String, usize>,
    pairs: Vec<Pair>,
    any_pos: bool,
    any_english: bool,
}

impl Pairs {
    fn pair(&mut self, id: &str, at: &Location) -> &mut Pair {
        let i = *self.index.entry(id.to_owned()).or_insert_with(|| {
            self.pairs.push(Pair {
                at: at.clone(),
                pos: None,
                words: HashMap::new(),
            });
            self.pairs.len() - 1
        });
        &mut self.pairs[i]
    }
}

/// Imports Multi-SimLex files: any mix of per-language files (`ENG.csv`, ...) and
/// `translation.csv`.
pub fn read_files(paths: &[PathBuf]) -> Result<ConceptTable, Error> {
    let mut pairs = Pairs::default();
    for path in paths {
        read_into(&mut pairs, path, &read_text(path)?)?;
    }
    into_table(pairs, source_of(paths))
}

/// Imports a folder holding the release: `translation.csv` if present, then every file named
/// `<ISO 639-3 code>.csv` (in name order). Other files (`scores.csv`) are ignored.
pub fn read_dir(dir: impl AsRef<Path>) -> Result<ConceptTable, Error> {
    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::MissingFile {
            path: dir.to_owned(),
        },
        _ => Error::Io {
            path: dir.to_owned(),
            source,
        },
    })?;
    let mut per_language = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?
            .path();
        let is_csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if is_csv
            && path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(Lang::from_iso639_3)
                .is_some()
        {
            per_language.push(path);
        }
    }
    per_language.sort();
    let combined = dir.join(TRANSLATION_FILE);
    let mut paths: Vec<PathBuf> = combined.is_file().then_some(combined).into_iter().collect();
    paths.extend(per_language);
    if paths.is_empty() {
        return Err(Error::MissingFile {
            path: dir.join(TRANSLATION_FILE),
        });
    }
    let mut pairs = Pairs::default();
    for path in &paths {
        read_into(&mut pairs, path, &read_text(path)?)?;
    }
    into_table(pairs, dir.to_owned())
}

/// The word columns of a header: (column, language, position).
fn word_columns(
    header: &Header,
    path: &Path,
    at: &Location,
) -> Result<Vec<(usize, Lang, usize)>, Error> {
    if let (Some(w1), Some(w2)) = (header.find("Word 1"), header.find("Word 2")) {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let lang = Lang::from_iso639_3(stem)
            .or_else(|| Lang::from_code(stem))
            .ok_or_else(|| Error::UnknownLanguageIn {
                at: Location::file(path),
                code: stem.to_owned(),
            })?;
        return Ok(vec![(w1, lang, 0), (w2, lang, 1)]);
    }
    let mut columns = Vec::new();
    for (col, name) in header.names().iter().enumerate() {
        let Some((code, position)) = name.rsplit_once(' ') else {
            continue;
        };
        let position = match position {
            "1" => 0,
            "2" => 1,
            _ => continue,
        };
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
            continue;
        }
        let lang = Lang::from_iso639_3(code).ok_or_else(|| Error::UnknownLanguageIn {
            at: at.clone(),
            code: code.to_owned(),
        })?;
        columns.push((col, lang, position));
    }
    for &(_, lang, position) in &columns {
        if !columns.iter().any(|&(_, l, p)| l == lang && p != position) {
            let code = lang.iso639_3().to_uppercase();
            return Err(Error::malformed(
                at.clone(),
                format!(
                    "column \"{code} {}\" has no partner \"{code} {}\"",
                    position + 1,
                    2 - position
                ),
            ));
        }
    }
    if columns.is_empty() {
        return Err(Error::BadHeader {
            at: at.clone(),
            found: header.names().to_vec(),
            expected: vec![
                "ID".into(),
                "Word 1".into(),
                "Word 2".into(),
                "POS".into(),
                "(or <LANG> 1, <LANG> 2 per language)".into(),
            ],
        });
    }
    Ok(columns)
}

fn read_into(pairs: &mut Pairs, path: &Path, text: &str) -> Result<(), Error> {
    let (header, head_at, rows) = parse_table(text, path)?;
    let words = word_columns(&header, path, &head_at)?;
    let id_col = header.find("ID");
    let pos_col = header.find("POS");
    pairs.any_pos |= pos_col.is_some();
    pairs.any_english |= words.iter().any(|&(_, l, _)| l.code() == "en");
    for (n, row) in rows.iter().enumerate() {
        header.check_width(row, path)?;
        let at = Location::line(path, row.line);
        let id = match id_col {
            Some(col) => row.fields[col].trim().to_owned(),
            None => (n + 1).to_string(),
        };
        if id.is_empty() {
            return Err(Error::EmptyCell {
                at,
                column: header.names()[id_col.unwrap_or(0)].clone(),
            });
        }
        let pair = pairs.pair(&id, &at);
        if let Some(col) = pos_col {
            let pos = row.fields[col].trim();
            if !pos.is_empty() && pair.pos.is_none() {
                pair.pos = Some(pos.to_owned());
            }
        }
        for &(col, lang, position) in &words {
            let word = row.fields[col].trim();
            if !word.is_empty() {
                pair.words
                    .entry((lang, position))
                    .or_insert_with(|| word.to_owned());
            }
        }
    }
    Ok(())
}

/// For one concept in one language: form → (how many pairs give it, when it was first seen).
type FormCounts = HashMap<String, (usize, usize)>;

fn into_table(pairs: Pairs, source: PathBuf) -> Result<ConceptTable, Error> {
    let first = pairs
        .pairs
        .first()
        .map_or_else(|| Location::file(&source), |p| p.at.clone());
    if !pairs.any_pos {
        return Err(Error::malformed(
            first,
            "no file has a POS column, so nouns cannot be told apart",
        ));
    }
    if !pairs.any_english {
        return Err(Error::malformed(
            first,
            "no English words (ENG.csv or ENG 1/ENG 2 columns): Multi-SimLex concepts are named by their English word",
        ));
    }
    let en = Lang::from_code("en").expect("English is in the language table");
    let mut out = Collector::default();
    let mut counts: HashMap<(String, Lang), FormCounts> = HashMap::new();
    let mut seen = 0;
    let mut languages: Vec<Lang> = pairs
        .pairs
        .iter()
        .flat_map(|p| p.words.keys().map(|k| k.0))
        .collect();
    languages.sort();
    languages.dedup();
    for &lang in &languages {
        out.language(lang);
    }
    for pair in &pairs.pairs {
        let Some(pos) = &pair.pos else {
            return Err(Error::malformed(
                pair.at.clone(),
                "no file gives this pair a POS",
            ));
        };
        if !NOUN_TAGS.iter().any(|t| pos.eq_ignore_ascii_case(t)) {
            continue;
        }
        for position in 0..2 {
            let Some(english) = pair.words.get(&(en, position)) else {
                return Err(Error::malformed(
                    pair.at.clone(),
                    format!("noun pair has no English word {}", position + 1),
                ));
            };
            let id = english.to_lowercase();
            out.english_first(&id, &pair.at, english);
            for &lang in &languages {
                if lang == en {
                    continue;
                }
                if let Some(word) = pair.words.get(&(lang, position)) {
                    let slot = counts.entry((id.clone(), lang)).or_default();
                    let entry = slot.entry(word.clone()).or_insert((0, seen));
                    entry.0 += 1;
                    seen += 1;
                }
            }
        }
    }
    let mut counted: Vec<((String, Lang), FormCounts)> = counts.into_iter().collect();
    counted.sort_by(|a, b| a.0.cmp(&b.0));
    for ((id, lang), forms) in counted {
        let mut forms: Vec<(String, (usize, usize))> = forms.into_iter().collect();
        forms.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
        let at = Location::file(&source);
        for (form, _) in forms {
            out.add(&id, &at, lang, &form);
        }
    }
    out.finish(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(code: &str) -> Lang {
        Lang::from_code(code).unwrap()
    }

    fn import(files: &[(&str, &str)]) -> Result<ConceptTable, String> {
        let mut pairs = Pairs::default();
        for (path, text) in files {
            read_into(&mut pairs, Path::new(path), text).map_err(|e| e.to_string())?;
        }
        into_table(pairs, "msl".into()).map_err(|e| e.to_string())
    }

    const ENG: &str =
        "ID,Word 1,Word 2,POS,Annotator 1\n1,leg,arm,N,3\n2,limb,leg,N,5\n3,shut,vomit,V,0\n";
    const RUS: &str = "ID,Word 1,Word 2,POS,Annotator 1\n1,нога,рука,N,2\n2,конечность,нога,N,4\n3,закрыть,рвать,V,0\n";

    #[test]
    fn per_language_files_align_by_id_and_keep_nouns() {
        let t = import(&[("ENG.csv", ENG), ("RUS.csv", RUS)]).unwrap();
        let ids: Vec<_> = t.concepts().iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["leg", "arm", "limb"]);
        assert_eq!(t.forms("leg", lang("ru")).unwrap(), ["нога"]);
        assert_eq!(t.languages(), [lang("en"), lang("ru")]);
        assert!(t.concept("shut").is_none(), "verbs are dropped");
    }

    #[test]
    fn translations_most_frequent_first() {
        let combined = "ID,POS,ENG 1,ENG 2,RUS 1,RUS 2\n\
                        1,N,teacher,student,учитель,студент\n\
                        2,N,teacher,friend,наставник,друг\n\
                        3,N,rabbi,teacher,раввин,наставник\n";
        let t = import(&[("translation.csv", combined)]).unwrap();
        assert_eq!(
            t.forms("teacher", lang("ru")).unwrap(),
            ["наставник", "учитель"]
        );
    }

    #[test]
    fn rows_align_by_order_without_id() {
        let combined = "ENG 1,ENG 2,CYM 1,CYM 2\nbrick,wall,bricsen,wal\n";
        let pos = "ID,Word 1,Word 2,POS\n1,brick,wall,N\n";
        let t = import(&[("translation.csv", combined), ("ENG.csv", pos)]).unwrap();
        assert_eq!(t.forms("brick", lang("cy")).unwrap(), ["bricsen"]);
    }

    #[test]
    fn bad_input_names_file_and_line() {
        let err = |files: &[(&str, &str)]| import(files).unwrap_err();
        assert_eq!(
            err(&[("XYZ.csv", "ID,Word 1,Word 2,POS\n")]),
            "XYZ.csv: unknown language \"XYZ\""
        );
        assert_eq!(
            err(&[("t.csv", "ID,POS,ENG 1,ENG 2,QQQ 1,QQQ 2\n")]),
            "t.csv:1: unknown language \"QQQ\""
        );
        assert_eq!(
            err(&[("t.csv", "ID,POS,ENG 1,ENG 2,RUS 1\n")]),
            "t.csv:1: column \"RUS 1\" has no partner \"RUS 2\""
        );
        assert!(err(&[("t.csv", "ID,score\n")]).starts_with("t.csv:1: header is"));
        assert_eq!(
            err(&[("ENG.csv", "ID,Word 1,Word 2\n1,leg,arm\n")]),
            "ENG.csv:2: no file has a POS column, so nouns cannot be told apart"
        );
        assert_eq!(
            err(&[("RUS.csv", RUS)]),
            "RUS.csv:2: no English words (ENG.csv or ENG 1/ENG 2 columns): Multi-SimLex concepts are named by their English word"
        );
        assert_eq!(
            err(&[
                ("ENG.csv", "ID,Word 1,Word 2,POS\n1,leg,arm,N\n"),
                ("RUS.csv", "ID,Word 1,Word 2,POS\n2,нога,рука,N\n")
            ]),
            "RUS.csv:2: noun pair has no English word 1"
        );
        assert_eq!(
            err(&[
                ("ENG.csv", "ID,Word 1,Word 2,POS\n1,leg,arm,N\n"),
                ("ENG2.csv", "")
            ]),
            "ENG2.csv: empty file, expected a header row"
        );
        assert_eq!(
            err(&[("ENG.csv", "ID,Word 1,Word 2,POS\n1,leg,arm\n")]),
            "ENG.csv:2: 3 columns, expected 4"
        );
    }
}
