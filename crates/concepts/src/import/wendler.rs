//! Wendler et al.'s word lists ("Do Llamas Work in English?", repository
//! `epfl-dlab/llm-latent-language`): `data/langs/<lang>/clean.csv`.
//!
//! # Format (verified against `data/langs/{en,fr,zh}/clean.csv` of that repository)
//!
//! One pandas-written CSV per language, header
//! `lang,word_original,word_translation,blank_prompt_original,blank_prompt_translation,blank_prompt_translation_masked`,
//! in some languages followed by `error` (values such as `no error`). `lang` is the ISO 639-1
//! code of the row's language, `word_original` the English word (`cloud`), `word_translation`
//! its translation (`nuage`; the English file repeats the word). The prompt columns are quoted
//! text with doubled quotes and are not used here.
//!
//! # Import
//!
//! Rows are grouped by `word_original` into concepts, whose id is `word_original` as written
//! (`Han` stays capitalised) and whose English forms start with it. Each row adds its
//! `word_translation` to its language; a repeated pair adds nothing. Columns are found by name
//! (case and padding ignored); extra columns are ignored. A row whose `error` cell is neither
//! empty nor `no error` is skipped: that column marks rows the authors found wrong.

use std::path::{Path, PathBuf};

use super::{Collector, language_dirs, source_of};
use crate::text::{parse_table, read_text};
use crate::{ConceptTable, Error, Lang, Location};

/// The file name in each language folder.
pub const FILE: &str = "clean.csv";

const NEEDED: [&str; 3] = ["lang", "word_original", "word_translation"];

/// Imports one or more `clean.csv` files (typically one per language) into one table.
pub fn read_files(paths: &[PathBuf]) -> Result<ConceptTable, Error> {
    let mut out = Collector::default();
    for path in paths {
        read_into(&mut out, path, &read_text(path)?)?;
    }
    out.finish(source_of(paths))
}

/// Imports every `<dir>/<lang>/clean.csv` (the layout of `data/langs/`).
pub fn read_dir(dir: impl AsRef<Path>) -> Result<ConceptTable, Error> {
    let dir = dir.as_ref();
    let mut out = Collector::default();
    for (_, path) in language_dirs(dir, FILE)? {
        read_into(&mut out, &path, &read_text(&path)?)?;
    }
    out.finish(dir.to_owned())
}

fn read_into(out: &mut Collector, path: &Path, text: &str) -> Result<(), Error> {
    let (header, at, rows) = parse_table(text, path)?;
    let [lang_col, original_col, translation_col] =
        NEEDED.map(|name| header.require(name, &at, &NEEDED));
    let (lang_col, original_col, translation_col) = (lang_col?, original_col?, translation_col?);
    let error_col = header.find("error");
    for row in &rows {
        header.check_width(row, path)?;
        let at = Location::line(path, row.line);
        let cell = |col: usize| row.fields[col].trim();
        if let Some(col) = error_col {
            let flag = cell(col);
            if !flag.is_empty() && !flag.eq_ignore_ascii_case("no error") {
                continue;
            }
        }
        for col in [lang_col, original_col, translation_col] {
            if cell(col).is_empty() {
                return Err(Error::EmptyCell {
                    at,
                    column: header.names()[col].clone(),
                });
            }
        }
        let code = cell(lang_col);
        let lang = Lang::from_code(code).ok_or_else(|| Error::UnknownLanguageIn {
            at: at.clone(),
            code: code.into(),
        })?;
        let id = cell(original_col);
        out.english_first(id, &at, id);
        out.add(id, &at, lang, cell(translation_col));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> Result<ConceptTable, String> {
        let mut out = Collector::default();
        read_into(&mut out, Path::new("clean.csv"), text).map_err(|e| e.to_string())?;
        out.finish("clean.csv".into()).map_err(|e| e.to_string())
    }

    const HEAD: &str = "lang,word_original,word_translation,blank_prompt_original,blank_prompt_translation,blank_prompt_translation_masked,error\n";

    #[test]
    fn groups_rows_and_skips_flagged_ones() {
        let text = format!(
            "{HEAD}fr,cloud,nuage,\"A \"\"cloud\"\" is.\",\"Un \"\"nuage\"\".\",\"Un \"\"___\"\".\",no error\n\
             fr,cloud,nuage,x,y,z,no error\n\
             fr,spring,printemps,x,y,z,wrong sense\n"
        );
        let t = import(&text).unwrap();
        let fr = Lang::from_code("fr").unwrap();
        let en = Lang::from_code("en").unwrap();
        assert_eq!(t.concepts().len(), 1);
        assert_eq!(t.forms("cloud", fr).unwrap(), ["nuage"]);
        assert_eq!(t.forms("cloud", en).unwrap(), ["cloud"]);
        assert_eq!(t.languages(), [en, fr]);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let err = |body: &str| import(&format!("{HEAD}{body}")).unwrap_err();
        assert_eq!(
            err("xx,cloud,nuage,a,b,c,no error\n"),
            "clean.csv:2: unknown language \"xx\""
        );
        assert_eq!(
            err("fr,,nuage,a,b,c,no error\n"),
            "clean.csv:2: empty cell in column \"word_original\""
        );
        assert_eq!(
            err("fr,cloud,nuage\n"),
            "clean.csv:2: 3 columns, expected 7"
        );
        assert_eq!(
            err("fr,cloud,\"nuage,a,b,c,no error\n"),
            "clean.csv:2: unterminated quoted field (field 3)"
        );
        let no_col = import("lang,word,word_translation\nfr,a,b\n").unwrap_err();
        assert!(
            no_col.starts_with("clean.csv:1: header is [\"lang\", \"word\", \"word_translation\"]"),
            "{no_col}"
        );
        assert_eq!(
            import("").unwrap_err(),
            "clean.csv: empty file, expected a header row"
        );
    }
}
