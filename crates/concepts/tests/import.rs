//! The importers on small hand-made samples of the prior work's formats (`tests/data/`).

use std::path::PathBuf;

use xlpatch_concepts::import::{dumas, multisimlex, wendler};
use xlpatch_concepts::{ConceptTable, Lang};

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn lang(code: &str) -> Lang {
    Lang::from_code(code).unwrap()
}

fn ids(t: &ConceptTable) -> Vec<&str> {
    t.concepts().iter().map(|c| c.id.as_str()).collect()
}

fn codes(t: &ConceptTable) -> Vec<&str> {
    t.languages().iter().map(|l| l.code()).collect()
}

#[test]
fn multisimlex_per_language_files() {
    let t = multisimlex::read_dir(data("multisimlex/languages")).unwrap();
    assert_eq!(codes(&t), ["en", "es", "zh", "cy"]);
    // Nouns only (pairs 3 and 6 are a verb and an adjective), one concept per English word.
    assert_eq!(
        ids(&t),
        ["dog", "cat", "river", "lake", "bread", "butter", "tiger"]
    );
    // `cat` is word 2 of pair 1 and word 1 of pair 5: both translations, first seen first.
    assert_eq!(t.forms("cat", lang("es")).unwrap(), ["gato", "gata"]);
    assert_eq!(t.forms("cat", lang("zh")).unwrap(), ["猫"]);
    assert_eq!(t.forms("river", lang("cy")).unwrap(), ["afon"]);
    assert!(t.concepts().iter().all(|c| c.is_complete(t.languages())));
}

#[test]
fn multisimlex_translation_csv() {
    let path = data("multisimlex/combined/translation.csv");
    let t = multisimlex::read_files(&[path]).unwrap();
    assert_eq!(codes(&t), ["en", "fr", "ru", "et"]);
    assert!(t.concept("run").is_none() && t.concept("walk").is_none());
    assert_eq!(t.forms("cat", lang("ru")).unwrap(), ["кошка", "кот"]);
    // Ids are lower-cased English words; the English form keeps its spelling.
    assert_eq!(t.forms("teacher", lang("en")).unwrap(), ["Teacher"]);
    assert_eq!(t.forms("lake", lang("et")).unwrap(), ["järv"]);
}

#[test]
fn multisimlex_both_releases_together() {
    let t = multisimlex::read_files(&[
        data("multisimlex/combined/translation.csv"),
        data("multisimlex/languages/SPA.csv"),
        data("multisimlex/languages/CYM.csv"),
    ])
    .unwrap();
    assert_eq!(codes(&t), ["en", "fr", "es", "ru", "et", "cy"]);
    assert_eq!(t.forms("bread", lang("cy")).unwrap(), ["bara"]);
    // Pair 6 is an adjective in SPA.csv but a noun in translation.csv, which came first.
    assert_eq!(t.forms("teacher", lang("es")).unwrap(), ["feliz"]);
}

#[test]
fn dumas_one_file() {
    let t = dumas::read_file(data("dumas/de/word_translation.csv")).unwrap();
    assert_eq!(ids(&t), ["dog", "water", "moon"]);
    assert_eq!(t.languages().len(), 13);
    assert_eq!(t.forms("dog", lang("de")).unwrap(), ["Hund", "Köter"]);
    assert_eq!(t.forms("water", lang("fr")).unwrap(), ["eau", "l'eau"]);
    assert_eq!(t.forms("moon", lang("fr")), None, "an empty list");
    assert_eq!(t.forms("moon", lang("en")).unwrap(), ["moon", "Moon"]);
    assert_eq!(t.forms("dog", lang("hi")).unwrap(), ["कुत्ता"]);
    let subset = t.subset(&[lang("en"), lang("fr")]).unwrap();
    assert_eq!(ids(&subset), ["dog", "water"]);
}

#[test]
fn dumas_data_folder() {
    let t = dumas::read_dir(data("dumas")).unwrap();
    assert_eq!(ids(&t), ["dog", "water", "moon", "bread"]);
    // Each language's forms come from that language's own file when it has them ...
    assert_eq!(t.forms("dog", lang("es")).unwrap(), ["perro", "can"]);
    assert_eq!(t.forms("dog", lang("de")).unwrap(), ["Hund", "Köter"]);
    // ... else from the first file, in folder order, that has them.
    assert_eq!(t.forms("dog", lang("fr")).unwrap(), ["chien"]);
    assert_eq!(t.forms("dog", lang("en")).unwrap(), ["dog", "domestic dog"]);
    // The padded file of `es/` reads like any other.
    assert_eq!(t.forms("bread", lang("nl")).unwrap(), ["brood"]);
}

#[test]
fn wendler_clean_csv() {
    let t = wendler::read_dir(data("wendler")).unwrap();
    assert_eq!(codes(&t), ["en", "fr", "zh"]);
    assert_eq!(
        ids(&t),
        ["dog", "bread", "moon"],
        "the flagged `spring` row is skipped"
    );
    assert_eq!(t.forms("bread", lang("fr")).unwrap(), ["pain"]);
    assert_eq!(t.forms("dog", lang("zh")).unwrap(), ["狗"]);
    assert_eq!(t.forms("moon", lang("en")).unwrap(), ["moon"]);
    assert_eq!(t.forms("moon", lang("fr")), None);
    let one = wendler::read_files(&[data("wendler/zh/clean.csv")]).unwrap();
    assert_eq!(codes(&one), ["en", "zh"]);
}

#[test]
fn missing_inputs_are_errors() {
    let err = |r: Result<ConceptTable, xlpatch_concepts::Error>| r.unwrap_err().to_string();
    let e = err(dumas::read_dir(data("nowhere")));
    assert!(
        e.starts_with("missing file ") && e.ends_with("nowhere"),
        "{e}"
    );
    let e = err(wendler::read_dir(data("multisimlex")));
    assert!(
        e.starts_with("missing file ") && e.ends_with("<lang>/clean.csv"),
        "{e}"
    );
    let e = err(multisimlex::read_files(&[data("multisimlex/none.csv")]));
    assert!(
        e.starts_with("missing file ") && e.ends_with("none.csv"),
        "{e}"
    );
    let e = err(dumas::read_file(data("dumas/notes/word_translation.csv")));
    assert!(
        e.ends_with("notes/word_translation.csv:2: unterminated quoted field (field 3)"),
        "{e}"
    );
}
