//! `xlpatch concepts import` for every format of the prior work, and a sweep that reads those
//! formats directly (`concepts_from`) while replaying a prompt set written by hand here (not by
//! xlpatch) with its own `metric_ids`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use xlpatch_core::concepts::{ConceptTable, Lang};

fn xlpatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xlpatch"))
        .args(args)
        .env_remove("XLPATCH_PLUGIN_PATH")
        .output()
        .expect("the xlpatch binary runs")
}

fn ok(args: &[&str]) -> (String, String) {
    let out = xlpatch(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "xlpatch {args:?} failed: {stderr}");
    (stdout, stderr)
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// One source per format, each naming dog, book and cat in English, German and French.
fn sources(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let wendler = dir.join("wendler/langs");
    for (lang, words) in [
        ("en", ["dog", "book", "cat"]),
        ("de", ["Hund", "Buch", "Katze"]),
        ("fr", ["chien", "livre", "chat"]),
    ] {
        let mut text = String::from("lang,word_original,word_translation,blank_prompt_original\n");
        for (en, w) in ["dog", "book", "cat"].iter().zip(words) {
            text.push_str(&format!("{lang},{en},{w},\"x \"\"y\"\"\"\n"));
        }
        write(&wendler.join(lang).join("clean.csv"), &text);
    }
    vec![
        (
            "multisimlex",
            write(
                &dir.join("msl/translation.csv"),
                "ID,POS,ENG 1,ENG 2,DEU 1,DEU 2,FRA 1,FRA 2\n\
                 1,N,dog,book,Hund,Buch,chien,livre\n\
                 2,N,cat,dog,Katze,Hund,chat,chien\n\
                 3,V,run,walk,laufen,gehen,courir,marcher\n",
            ),
        ),
        (
            "dumas",
            write(
                &dir.join("dumas/de/word_translation.csv"),
                "fr,de,en,word_original\n\
                 ['chien'],['Hund'],['dog'],dog\n\
                 ['livre'],['Buch'],['book'],book\n\
                 ['chat'],\"['Katze', 'Kater']\",['cat'],cat\n",
            ),
        ),
        ("wendler", wendler),
        (
            "clap",
            write(
                &dir.join("clap/multisimlex.csv"),
                "word_original,en,de,fr,ID,PoS\n\
                 dog,['dog'],['Hund'],['chien'],1,N\n\
                 book,['book'],['Buch'],['livre'],2,N\n\
                 cat,['cat'],\"['Katze', 'Kater']\",['chat'],3,N\n\
                 run,['run'],['laufen'],['courir'],4,V\n",
            ),
        ),
    ]
}

/// A tokenizer written here for the test series' character tokenizer (`xlpatch_testkit`):
/// BOS, then one token per character, a space merged with the character after it where the
/// vocabulary has that pair.
struct Chars {
    vocab: BTreeMap<String, u32>,
    bos: u32,
}

impl Chars {
    fn read(model: &Path) -> Chars {
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(model.join("manifest.json")).unwrap())
                .unwrap();
        let file = model.join(manifest["tokenizer"].as_str().unwrap());
        let tok: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let vocab = tok["model"]["vocab"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as u32))
            .collect();
        let bos = tok["added_tokens"][0]["id"].as_u64().unwrap() as u32;
        Chars { vocab, bos }
    }

    fn ids(&self, text: &str) -> Vec<u32> {
        let chars: Vec<char> = text.chars().collect();
        let mut ids = vec![self.bos];
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == ' '
                && let Some(&id) = chars
                    .get(i + 1)
                    .and_then(|c| self.vocab.get(&format!(" {c}")))
            {
                ids.push(id);
                i += 2;
                continue;
            }
            ids.push(self.vocab[&chars[i].to_string()]);
            i += 1;
        }
        ids
    }

    fn id(&self, piece: &str) -> Option<u32> {
        self.vocab.get(piece).copied()
    }
}

/// A record of `prompts.jsonl` for `text`, whose query word is the last occurrence of `word`.
#[allow(clippy::too_many_arguments)]
fn record(
    tok: &Chars,
    item: &str,
    role: &str,
    setting: Option<&str>,
    kind: &str,
    concept: &str,
    word: &str,
    answer: &str,
    text: &str,
) -> Value {
    let start = text.rfind(word).unwrap();
    let end = start + word.len();
    json!({
        "answer": answer, "concept": concept, "demos": ["cat"], "ids": tok.ids(text),
        "in_lang": "fr", "item": item, "kind": kind, "merged": false, "out_lang": "de",
        "role": role, "setting": setting, "text": text, "word": word,
        "word_end": tok.ids(&text[..end]).len() - 1, "word_span": [start, end],
    })
}

#[test]
fn every_format_imports_and_sweeps_replay_a_hand_written_prompt_set() {
    let root = tempfile::tempdir().unwrap();
    let series = xlpatch_testkit::series(root.path());
    let l = |c: &str| Lang::from_code(c).unwrap();

    // The hand-written prompt set: one target (fr→de, C_T book, C_S dog) with a `tgt` source,
    // whose p_src_out sums over the same tokens as its p_tgt_out (the first tokens of Buch).
    let tok = Chars::read(&series.join("step_1"));
    let buch: Vec<u32> = ["B", " B"].iter().filter_map(|p| tok.id(p)).collect();
    assert!(!buch.is_empty());
    let item = "fr-de/dog>book";
    let mut target = record(
        &tok,
        item,
        "target",
        None,
        "translation",
        "book",
        "livre",
        "Buch",
        "Français: \"chat\" - Deutsch: \"Katze\"\nFrançais: \"livre\" - Deutsch: \"",
    );
    target["metric_ids"] = json!({"p_src_out": buch, "p_tgt_out": buch});
    let source = record(
        &tok,
        item,
        "source",
        Some("tgt"),
        "cut",
        "dog",
        "chien",
        "Hund",
        "Français: \"chat\" - Deutsch: \"Katze\"\nFrançais: \"chien",
    );
    let prompts = write(
        &root.path().join("hand.jsonl"),
        &format!("{target}\n{source}\n"),
    );

    let study = |concepts: &str, from: Option<&str>| {
        format!(
            "models = [{:?}]\nconcepts = {concepts:?}\n{}languages = [\"en\", \"de\", \"fr\"]\n\
             settings = [\"tgt\", \"unpatched\"]\nprompts = {:?}\nmax_new_tokens = 3\n\
             stop = \"max_new_tokens\"\nthreads = 1\n",
            series.join("step_*").display().to_string(),
            from.map(|f| format!("concepts_from = {f:?}\n"))
                .unwrap_or_default(),
            prompts.display().to_string(),
        )
    };
    let check_sweep = |out: &Path, stderr: &str| {
        let rows: Vec<Value> = std::fs::read_to_string(out.join("results.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // 2 settings x 6 layers on each of the two checkpoints (tiny Gemma 3).
        assert_eq!(rows.len(), 2 * (6 + 6), "{rows:?}");
        for r in &rows {
            assert_eq!(r["unit"].as_str().unwrap().split_once('/').unwrap().1, item);
            assert_eq!(r["p_src_out"], r["p_tgt_out"], "{r}");
            assert_eq!(r["rank_src_out"], r["rank_tgt_out"], "{r}");
            assert_eq!(r["generation_ids"].as_array().unwrap().len(), 3);
        }
        assert!(rows.iter().any(|r| r["p_src_out"] != r["p_src_in"]));
        let written: Vec<Value> = std::fs::read_to_string(out.join("prompts.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(written[0]["metric_ids"]["p_src_out"], json!(buch));
        assert_eq!(written[0]["ids"], target["ids"]);
        // Written without tokenizer hashes: replayed with a warning.
        assert!(
            stderr.contains("warning:") && stderr.contains("hand.jsonl"),
            "{stderr}"
        );
    };

    for (format, path) in sources(root.path()) {
        let out = root.path().join(format!("{format}-table"));
        let (stdout, _) = ok(&[
            "concepts",
            "import",
            "--from",
            format,
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            stdout.contains("imported 3 concepts in 3 languages"),
            "{format}: {stdout}"
        );
        let table = ConceptTable::load(&out).unwrap();
        let mut ids: Vec<&str> = table.concepts().iter().map(|c| c.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["book", "cat", "dog"], "{format}");
        assert_eq!(table.forms("dog", l("de")).unwrap()[0], "Hund", "{format}");
        assert_eq!(
            table.forms("book", l("fr")).unwrap()[0],
            "livre",
            "{format}"
        );

        // The same source read by the sweep itself.
        let config = write(
            &root.path().join(format!("{format}.toml")),
            &study(path.to_str().unwrap(), Some(format)),
        );
        let results = root.path().join(format!("{format}-results"));
        let (_, stderr) = ok(&[
            "sweep",
            "--config",
            config.to_str().unwrap(),
            "--out",
            results.to_str().unwrap(),
        ]);
        check_sweep(&results, &stderr);
    }

    // The imported folder as the project's own table.
    let config = write(
        &root.path().join("table.toml"),
        &study(root.path().join("clap-table").to_str().unwrap(), None),
    );
    let results = root.path().join("table-results");
    let (_, stderr) = ok(&[
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--out",
        results.to_str().unwrap(),
    ]);
    check_sweep(&results, &stderr);

    // A format xlpatch does not know is a usage error naming the known ones.
    let out = xlpatch(&[
        "concepts", "import", "--from", "babel", "x.csv", "--out", "t",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("multisimlex, dumas, wendler, clap"));
    // Languages the source lacks leave nothing to write: refused with the fix.
    let (_, clap) = &sources(&root.path().join("again"))[3];
    let out = xlpatch(&[
        "concepts",
        "import",
        "--from",
        "clap",
        clap.to_str().unwrap(),
        "--out",
        root.path().join("none").to_str().unwrap(),
        "--languages",
        "de,es",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("\"es\""),
        "{stderr}"
    );
}
