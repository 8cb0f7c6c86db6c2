//! Dumas et al.'s BabelNet word lists ("Separating Tongue from Thought", repository
//! `Butanium/llm-lang-agnostic`): `data/<lang>/word_translation.csv`.
//!
//! # Format (verified against `data/de/word_translation.csv` and `data/es/word_translation.csv`
//! of that repository, and its loader `src/load_dataset.py`)
//!
//! One pandas-written CSV per source language `<lang>`. The header holds one column per
//! language code (`fr,de,ru,en,zh,es,ja,ko,et,fi,nl,hi,...`, in no fixed order) and
//! `word_original`, the English word naming the row (`book`). Each language cell is a Python
//! list literal of strings, `['Buch', 'totes Holz', 'Papier']`, quoted by the CSV when it holds
//! a comma; a string holding `'` is written in double quotes (`"ventiquattr'ore"`, which the CSV
//! doubles). The loader runs `ast.literal_eval` on the cells. Per the repository's README, the
//! first form in the `<lang>` column of `data/<lang>/` is the direct translation of
//! `word_original`; the rest of every list are BabelNet lemmas of its senses. Some files pad
//! every cell and header name with spaces to a fixed width (`data/es/`).
//!
//! # Import
//!
//! One concept per `word_original` (rows repeating it are merged), with the lists as its forms
//! in list order, deduplicated, empty strings dropped; the English forms start with
//! `word_original`. Cells and names are trimmed; an empty cell is an empty list. Language
//! columns are recognised by code; a two-letter lower-case column name that is not a known
//! language is an error (it is almost surely a language xlpatch lacks), other columns are
//! ignored. [`read_dir`] merges the languages' files: for a concept and language `l` it takes
//! the forms from `data/l/` (whose first form is the direct translation) when that file has
//! them, else from the first file, in folder order, that does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Collector, language_dirs, pylist};
use crate::text::{parse_table, read_text};
use crate::{ConceptTable, Error, Lang, Location};

/// The file name in each language folder.
pub const FILE: &str = "word_translation.csv";

/// One parsed file: its source language (from the folder name, if it is a language code) and
/// its rows.
#[derive(Debug)]
struct DumasFile {
    own: Option<Lang>,
    languages: Vec<Lang>,
    rows: Vec<Row>,
}

#[derive(Debug)]
struct Row {
    at: Location,
    id: String,
    forms: BTreeMap<Lang, Vec<String>>,
}

/// Imports one `word_translation.csv`.
pub fn read_file(path: impl AsRef<Path>) -> Result<ConceptTable, Error> {
    let path = path.as_ref();
    let file = parse_file(path, &read_text(path)?)?;
    merge(vec![file], path.to_owned())
}

/// Imports every `<dir>/<lang>/word_translation.csv` (the layout of the repository's `data/`)
/// and merges them as described in the module documentation.
pub fn read_dir(dir: impl AsRef<Path>) -> Result<ConceptTable, Error> {
    let dir = dir.as_ref();
    let mut files = Vec::new();
    for (_, path) in language_dirs(dir, FILE)? {
        files.push(parse_file(&path, &read_text(&path)?)?);
    }
    merge(files, dir.to_owned())
}

fn is_language_like(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_lowercase())
}

fn parse_file(path: &Path, text: &str) -> Result<DumasFile, Error> {
    let own = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .and_then(Lang::from_code);
    let (header, head_at, records) = parse_table(text, path)?;
    let id_col = header.require(
        "word_original",
        &head_at,
        &["word_original", "<language code>..."],
    )?;
    let mut columns = Vec::new();
    for (col, name) in header.names().iter().enumerate() {
        match Lang::from_code(name) {
            Some(lang) if columns.iter().any(|&(_, l)| l == lang) => {
                return Err(Error::malformed(
                    head_at,
                    format!("language column {name:?} appears twice"),
                ));
            }
            Some(lang) => columns.push((col, lang)),
            None if is_language_like(name) => {
                return Err(Error::UnknownLanguageIn {
                    at: head_at,
                    code: name.clone(),
                });
            }
            None => {}
        }
    }
    let mut rows = Vec::new();
    for record in &records {
        header.check_width(record, path)?;
        let at = Location::line(path, record.line);
        let id = record.fields[id_col].trim();
        if id.is_empty() {
            return Err(Error::EmptyCell {
                at,
                column: "word_original".into(),
            });
        }
        let mut forms = BTreeMap::new();
        for &(col, lang) in &columns {
            let cell = record.fields[col].trim();
            if cell.is_empty() {
                continue;
            }
            let list = pylist::parse(cell).map_err(|message| {
                Error::malformed(
                    at.clone(),
                    format!("column {:?}: {message}", header.names()[col]),
                )
            })?;
            forms.insert(lang, list);
        }
        rows.push(Row {
            at,
            id: id.to_owned(),
            forms,
        });
    }
    Ok(DumasFile {
        own,
        languages: columns.into_iter().map(|(_, l)| l).collect(),
        rows,
    })
}

/// Merges parsed files into one table (see the module documentation for which file wins).
fn merge(files: Vec<DumasFile>, source: PathBuf) -> Result<ConceptTable, Error> {
    let mut out = Collector::default();
    // For each (concept, language): the index of the file its forms come from.
    let mut chosen: BTreeMap<(String, Lang), usize> = BTreeMap::new();
    for (i, file) in files.iter().enumerate() {
        for &lang in &file.languages {
            out.language(lang);
        }
        for row in &file.rows {
            out.concept(&row.id, &row.at);
            for (&lang, list) in &row.forms {
                if list.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                let key = (row.id.clone(), lang);
                match chosen.get(&key) {
                    None => {
                        chosen.insert(key, i);
                    }
                    Some(&j) if j != i && file.own == Some(lang) && files[j].own != Some(lang) => {
                        chosen.insert(key, i);
                    }
                    Some(_) => {}
                }
            }
        }
    }
    for (i, file) in files.iter().enumerate() {
        for row in &file.rows {
            for (&lang, list) in &row.forms {
                if chosen.get(&(row.id.clone(), lang)) == Some(&i) {
                    for form in list {
                        out.add(&row.id, &row.at, lang, form);
                    }
                }
            }
            out.english_first(&row.id, &row.at, &row.id);
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

    fn parse(path: &str, text: &str) -> Result<DumasFile, String> {
        parse_file(Path::new(path), text).map_err(|e| e.to_string())
    }

    fn import(files: &[(&str, &str)]) -> Result<ConceptTable, String> {
        let files = files
            .iter()
            .map(|(p, t)| parse(p, t))
            .collect::<Result<Vec<_>, _>>()?;
        merge(files, "data".into()).map_err(|e| e.to_string())
    }

    #[test]
    fn one_file() {
        let t = import(&[(
            "data/de/word_translation.csv",
            "fr,de,en,word_original,it\n\
             \"['livre', 'papier']\",\"['Buch', 'Papier']\",\"['paper']\",book,\"['libro', \"\"ventiquattr'ore\"\"]\"\n\
             [],['Hand'],\"['manus', 'paw']\",hand,['mano']\n",
        )])
        .unwrap();
        assert_eq!(
            t.languages(),
            [lang("en"), lang("de"), lang("fr"), lang("it")]
        );
        assert_eq!(t.forms("book", lang("de")).unwrap(), ["Buch", "Papier"]);
        assert_eq!(t.forms("book", lang("en")).unwrap(), ["book", "paper"]);
        assert_eq!(
            t.forms("book", lang("it")).unwrap(),
            ["libro", "ventiquattr'ore"]
        );
        assert_eq!(
            t.forms("hand", lang("fr")),
            None,
            "an empty list is no forms"
        );
        assert_eq!(
            t.forms("hand", lang("en")).unwrap(),
            ["hand", "manus", "paw"]
        );
    }

    #[test]
    fn own_language_file_wins_for_its_language() {
        let de = (
            "data/de/word_translation.csv",
            "de,es,word_original\n['Hund'],['perro'],dog\n",
        );
        let es = (
            "data/es/word_translation.csv",
            "de,es,word_original\n['Köter'],\"['can', 'perro']\",dog\n",
        );
        let t = import(&[de, es]).unwrap();
        assert_eq!(t.forms("dog", lang("de")).unwrap(), ["Hund"]);
        assert_eq!(t.forms("dog", lang("es")).unwrap(), ["can", "perro"]);
        // Folder order does not matter.
        let t = import(&[es, de]).unwrap();
        assert_eq!(t.forms("dog", lang("de")).unwrap(), ["Hund"]);
    }

    #[test]
    fn padded_cells_and_repeated_rows() {
        let t = import(&[(
            "x/word_translation.csv",
            "fr     ,word_original ,de\n['nuage']   ,cloud   ,\"['Wolke']\"   \n['nue']  ,cloud,['Wolke']\n",
        )])
        .unwrap();
        assert_eq!(t.concepts().len(), 1);
        assert_eq!(t.forms("cloud", lang("fr")).unwrap(), ["nuage", "nue"]);
    }

    #[test]
    fn bad_input_names_file_and_line() {
        let err = |text: &str| parse("data/de/word_translation.csv", text).unwrap_err();
        assert_eq!(
            err("de,word_original\n['Hund',dog\n"),
            "data/de/word_translation.csv:2: column \"de\": unterminated list: missing ']'"
        );
        assert_eq!(
            err("de,word_original\nHund,dog\n"),
            "data/de/word_translation.csv:2: column \"de\": expected a Python list like ['a', 'b'], found \"Hund\""
        );
        assert_eq!(
            err("de,word_original\n['Hund'],\n"),
            "data/de/word_translation.csv:2: empty cell in column \"word_original\""
        );
        assert_eq!(
            err("de,xx,word_original\n"),
            "data/de/word_translation.csv:1: unknown language \"xx\""
        );
        assert!(
            err("de,en\n['a'],['b']\n").starts_with("data/de/word_translation.csv:1: header is")
        );
        assert_eq!(
            err("de,word_original\n['a']\n"),
            "data/de/word_translation.csv:2: 1 columns, expected 2"
        );
        assert!(
            import(&[("w.csv", "de,word_original\n\"['']\",dog\n")]).is_ok(),
            "blank forms are dropped"
        );
    }
}
