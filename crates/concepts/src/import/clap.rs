//! The processed Multi-SimLex table that the code of Körner et al. (the seed paper) reads:
//! one CSV file.
//!
//! # Format
//!
//! A pandas-written CSV with the columns `word_original`, one column per language named by its
//! ISO 639-1 code (`en`, `de`, `fr`, ...), `ID` and `PoS`, in any order. `word_original` is the
//! English word naming the row, each language cell a Python list literal of its translations
//! (`['Buch', 'Band']`, preferred first; empty or `[]`: none), `ID` the Multi-SimLex id and
//! `PoS` the part of speech.
//!
//! # Import
//!
//! Rows whose `PoS` is not a noun (`N`, `NN`, `noun`, `nouns`, any case) are dropped, as the
//! study uses nouns only; an empty `PoS` is an error. One concept per `word_original` (rows
//! repeating it are merged), its forms in list order, deduplicated; its English forms start
//! with `word_original`. Columns are found by name (case and padding ignored); a two-letter
//! lower-case column that is not a known language is an error, other columns are ignored.

use std::path::Path;

use super::multisimlex::NOUN_TAGS;
use super::{Collector, pylist};
use crate::text::{parse_table, read_text};
use crate::{ConceptTable, Error, Lang, Location};

const NEEDED: [&str; 3] = ["word_original", "<language code>...", "PoS"];

/// Imports one processed Multi-SimLex CSV.
pub fn read_file(path: impl AsRef<Path>) -> Result<ConceptTable, Error> {
    let path = path.as_ref();
    let mut out = Collector::default();
    read_into(&mut out, path, &read_text(path)?)?;
    out.finish(path.to_owned())
}

fn read_into(out: &mut Collector, path: &Path, text: &str) -> Result<(), Error> {
    let (header, head_at, rows) = parse_table(text, path)?;
    let word_col = header.require("word_original", &head_at, &NEEDED)?;
    let pos_col = header.require("pos", &head_at, &NEEDED)?;
    let id_col = header.find("id");
    let mut columns = Vec::new();
    for (col, name) in header.names().iter().enumerate() {
        if col == word_col || col == pos_col || Some(col) == id_col {
            continue;
        }
        match Lang::from_code(name) {
            Some(lang) if columns.iter().any(|&(_, l)| l == lang) => {
                return Err(Error::malformed(
                    head_at,
                    format!("language column {name:?} appears twice"),
                ));
            }
            Some(lang) => columns.push((col, lang)),
            None if name.len() == 2 && name.bytes().all(|b| b.is_ascii_lowercase()) => {
                return Err(Error::UnknownLanguageIn {
                    at: head_at,
                    code: name.clone(),
                });
            }
            None => {}
        }
    }
    if columns.is_empty() {
        return Err(Error::BadHeader {
            at: head_at,
            found: header.names().to_vec(),
            expected: NEEDED.map(String::from).to_vec(),
        });
    }
    for &(_, lang) in &columns {
        out.language(lang);
    }
    for record in &rows {
        header.check_width(record, path)?;
        let at = Location::line(path, record.line);
        let cell = |col: usize| record.fields[col].trim();
        let word = cell(word_col);
        if word.is_empty() {
            return Err(Error::EmptyCell {
                at,
                column: "word_original".into(),
            });
        }
        let pos = cell(pos_col);
        if pos.is_empty() {
            return Err(Error::EmptyCell {
                at,
                column: "PoS".into(),
            });
        }
        if !NOUN_TAGS.iter().any(|t| pos.eq_ignore_ascii_case(t)) {
            continue;
        }
        for &(col, lang) in &columns {
            let text = cell(col);
            if text.is_empty() {
                continue;
            }
            let list = pylist::parse(text).map_err(|message| {
                Error::malformed(
                    at.clone(),
                    format!("column {:?}: {message}", header.names()[col]),
                )
            })?;
            for form in list {
                out.add(word, &at, lang, &form);
            }
        }
        out.english_first(word, &at, word);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> Result<ConceptTable, String> {
        let mut out = Collector::default();
        read_into(&mut out, Path::new("msl.csv"), text).map_err(|e| e.to_string())?;
        out.finish("msl.csv".into()).map_err(|e| e.to_string())
    }

    fn lang(code: &str) -> Lang {
        Lang::from_code(code).unwrap()
    }

    #[test]
    fn nouns_with_their_lists() {
        let t = import(
            "word_original,en,de,fr,ID,PoS\n\
             book,['book'],\"['Buch', 'Band']\",['livre'],12,N\n\
             run,['run'],['laufen'],['courir'],13,V\n\
             book,\"['book', 'volume']\",['Buch'],[],40,N\n\
             dog,['dog'],['Hund'],\"[\"\"chien\"\"]\",41,n\n",
        )
        .unwrap();
        let ids: Vec<&str> = t.concepts().iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["book", "dog"], "verbs dropped, repeated rows merged");
        assert_eq!(t.forms("book", lang("de")).unwrap(), ["Buch", "Band"]);
        assert_eq!(t.forms("book", lang("en")).unwrap(), ["book", "volume"]);
        assert_eq!(t.forms("dog", lang("fr")).unwrap(), ["chien"]);
        assert_eq!(t.languages(), [lang("en"), lang("de"), lang("fr")]);
    }

    #[test]
    fn bad_input_names_file_and_line() {
        let err = |t: &str| import(t).unwrap_err();
        assert_eq!(
            err("word_original,de,PoS\ndog,Hund,N\n"),
            "msl.csv:2: column \"de\": expected a Python list like ['a', 'b'], found \"Hund\""
        );
        assert_eq!(
            err("word_original,de,PoS\ndog,['Hund'],\n"),
            "msl.csv:2: empty cell in column \"PoS\""
        );
        assert!(err("word_original,de\ndog,['Hund']\n").starts_with("msl.csv:1: header is"));
        assert_eq!(
            err("word_original,xx,PoS\n"),
            "msl.csv:1: unknown language \"xx\""
        );
    }
}
