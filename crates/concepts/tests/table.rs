//! The project's own concept table, `fixtures/concepts/`, loaded through the public API: its
//! size, completeness, marks, and the errors a study sees when it asks for what is not there.

use std::path::PathBuf;

use xlpatch_concepts::{ConceptTable, Error, Lang, Meaning};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/concepts")
}

fn table() -> ConceptTable {
    ConceptTable::load(fixture_dir()).unwrap_or_else(|e| panic!("fixtures/concepts: {e}"))
}

fn lang(code: &str) -> Lang {
    Lang::from_code(code).unwrap()
}

#[test]
fn size_and_languages() {
    let t = table();
    assert!(t.concepts().len() >= 200, "{} concepts", t.concepts().len());
    assert!(
        t.languages().len() >= 12,
        "{} languages",
        t.languages().len()
    );
    for code in [
        "en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "zh", "ja", "fi",
    ] {
        assert!(
            t.languages().contains(&lang(code)),
            "the table lacks study language {code}"
        );
    }
    assert!(
        t.homographs().len() >= 15,
        "the error analysis needs at least 15 homographs"
    );
}

#[test]
fn every_concept_is_complete() {
    let t = table();
    let langs = t.languages().to_vec();
    for c in t.concepts() {
        assert!(c.is_complete(&langs), "{} lacks a language", c.id);
        for &l in &langs {
            let forms = t.require(&c.id, l).unwrap();
            assert!(
                forms.iter().all(|f| !f.is_empty() && f.trim() == f),
                "{} {l}: {forms:?}",
                c.id
            );
        }
    }
    assert_eq!(
        t.subset(&langs).unwrap().concepts().len(),
        t.concepts().len()
    );
}

#[test]
fn every_mark_resolves() {
    let t = table();
    for p in t.polysemy() {
        let forms = t
            .forms(&p.concept, p.lang)
            .unwrap_or_else(|| panic!("{p:?}"));
        assert!(forms.contains(&p.form), "{p:?}");
        assert!(t.is_polysemous(p.lang, &p.form), "{p:?}");
        match &p.other {
            Meaning::Concept(other) => {
                assert!(t.forms(other, p.lang).unwrap().contains(&p.form), "{p:?}");
                assert_ne!(other, &p.concept);
            }
            Meaning::Gloss(gloss) => assert!(!gloss.is_empty(), "{p:?}"),
        }
    }
    for h in t.homographs() {
        assert_ne!(h.lang_a, h.lang_b, "{h:?}");
        assert!(
            t.forms(&h.concept_a, h.lang_a).unwrap().contains(&h.form),
            "{h:?}"
        );
        if let Meaning::Concept(b) = &h.meaning_b {
            let folded = h.form.to_lowercase();
            let forms = t.forms(b, h.lang_b).unwrap_or_else(|| panic!("{h:?}"));
            assert!(forms.iter().any(|f| f.to_lowercase() == folded), "{h:?}");
        }
        assert!(t.homographs_of(&h.form).any(|x| x == h), "{h:?}");
    }
}

#[test]
fn a_form_under_two_concepts_is_marked() {
    // The README's rule: a form listed under two concepts of one language has a polysemy row.
    let t = table();
    for &l in t.languages() {
        for c in t.concepts() {
            for form in c.forms_in(l) {
                let owners: Vec<_> = t
                    .concepts_with_form(l, form)
                    .map(|c| c.id.as_str())
                    .collect();
                if owners.len() > 1 {
                    assert!(
                        t.polysemy_of(l, form).next().is_some(),
                        "{l} {form:?}: {owners:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_string_naming_different_concepts_in_two_languages_is_a_homograph() {
    // Same string (case-insensitive) in two languages under different concepts, and no concept
    // listing it in both (then it is polysemy on one side, as Dutch `man` 'man, husband' next
    // to English `man`): the error analysis needs a homograph row for that language pair.
    let t = table();
    let mut owners: std::collections::BTreeMap<String, Vec<(Lang, &str)>> = Default::default();
    for c in t.concepts() {
        for &l in t.languages() {
            for f in c.forms_in(l) {
                owners
                    .entry(f.to_lowercase())
                    .or_default()
                    .push((l, c.id.as_str()));
            }
        }
    }
    let mut missing = Vec::new();
    for (form, occ) in &owners {
        for &(l1, c1) in occ {
            for &(l2, c2) in occ {
                let shared = occ.iter().any(|&(l, c)| l == l1 && occ.contains(&(l2, c)));
                if l1 < l2 && c1 != c2 && !shared {
                    let marked = t.homographs_of(form).any(|h| {
                        (h.lang_a, h.lang_b) == (l1, l2) || (h.lang_a, h.lang_b) == (l2, l1)
                    });
                    if !marked {
                        missing.push(format!("{form}: {l1} {c1} / {l2} {c2}"));
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "unmarked homographs:\n{}",
        missing.join("\n")
    );
}

#[test]
fn known_entries() {
    let t = table();
    assert_eq!(
        t.concept("dog").unwrap().preferred(lang("de")),
        Some("Hund")
    );
    assert_eq!(t.forms("dog", lang("en")).unwrap()[0], "dog");
    let ids: Vec<_> = t
        .concepts_with_form(lang("de"), "See")
        .map(|c| c.id.as_str())
        .collect();
    assert!(ids.contains(&"lake") && ids.contains(&"sea"), "{ids:?}");
    assert!(t.is_polysemous(lang("ru"), "лук"));
    assert!(!t.is_polysemous(lang("de"), "Hund"));
    let pain: Vec<_> = t.homographs_of("pain").collect();
    assert!(
        pain.iter()
            .any(|h| h.lang_a == lang("fr") && h.concept_a == "bread"),
        "{pain:?}"
    );
    // Side b is compared case-insensitively: German `Meer` finds Dutch `meer`.
    assert!(
        t.homographs_of("Meer")
            .any(|h| h.meaning_b == Meaning::Concept("sea".into()))
    );
}

#[test]
fn require_fails_clearly_for_a_missing_language() {
    let t = table();
    let sw = lang("sw");
    let no_swahili: Vec<Lang> = t.languages().iter().copied().filter(|&l| l != sw).collect();
    let s = t.subset(&no_swahili).unwrap();
    assert_eq!(s.concepts().len(), t.concepts().len());
    assert!(s.polysemy().iter().all(|p| p.lang != sw));
    let err = s.require("dog", sw).unwrap_err();
    assert!(matches!(err, Error::MissingForm { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("concept \"dog\" has no form in \"sw\" ("),
        "{text}"
    );
    assert!(text.ends_with("nouns.tsv)"), "{text}");
    assert_eq!(s.forms("dog", sw), None);
    let missing = t.require("unicorn", lang("de")).unwrap_err().to_string();
    assert!(
        missing.starts_with("concept \"unicorn\" is not in the table ("),
        "{missing}"
    );
    assert!(matches!(
        s.subset(&[sw]),
        Err(Error::LanguageNotInTable { .. })
    ));
}

#[test]
fn a_missing_table_is_a_clear_error() {
    let err = ConceptTable::load(fixture_dir().join("no-such-folder"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("missing file ") && err.ends_with("nouns.tsv"),
        "{err}"
    );
}
