//! The hub client against the stand-in hub on 127.0.0.1: refs, selection, paginated trees,
//! downloads into the `huggingface_hub` cache layout, refused corrupt downloads, missing
//! files, and offline runs from the cache.

use std::path::{Path, PathBuf};

use xlpatch_hub::{Hub, HubOptions, SeriesSpec};
use xlpatch_hub_standin::{File, StandIn, checkpoint_files};

const REPO: &str = "xlpatch/fixture-series";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The stand-in with four fixture checkpoints as branches, a `main` branch and a tag.
fn hub() -> StandIn {
    let root = repo_root().join("fixtures/series");
    let tok = root.join("tokenizer.json");
    let hub = StandIn::start(REPO);
    for step in [0, 64, 256, 2000] {
        let dir = root.join(format!("step_{step}"));
        hub.add(
            &format!("step_{step}"),
            false,
            checkpoint_files(&dir, Some(&tok)),
        );
    }
    hub.add(
        "main",
        false,
        checkpoint_files(&root.join("step_2000"), Some(&tok)),
    );
    hub.add(
        "v1.0",
        true,
        checkpoint_files(&root.join("step_2000"), Some(&tok)),
    );
    hub
}

fn client(hub: &StandIn, cache: &Path) -> Hub {
    Hub::new(HubOptions {
        endpoint: Some(hub.endpoint().to_string()),
        cache: cache.to_path_buf(),
        token: None,
        offline: false,
        tries: 3,
    })
    .unwrap()
}

#[test]
fn lists_selects_and_downloads_into_the_shared_cache_layout() {
    let stand = hub();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&stand, cache.path());
    let refs = hub.list_refs(REPO).unwrap();
    assert_eq!(refs.len(), 6);

    let spec = SeriesSpec::parse(&format!("hf://{REPO}?log=3")).unwrap();
    let (sel, cks) = hub.resolve(&spec).unwrap();
    let names: Vec<&str> = cks.iter().map(|c| c.revision.as_str()).collect();
    assert_eq!(names, ["step_0", "step_64", "step_2000"]);
    assert_eq!(
        sel.unparsed,
        ["main"],
        "main is listed as skipped, not dropped"
    );
    assert_eq!(sel.thinned, 1);
    // The tree came in pages of two (three files: config, weights, tokenizer).
    let log = stand.log();
    assert!(
        log.iter()
            .any(|l| l.contains("/tree/") && l.contains("cursor=2")),
        "{log:?}"
    );
    assert_eq!(cks[0].files.len(), 3);

    let ck = &cks[1];
    let snap = hub.download(ck, &mut |_| {}).unwrap();
    // models--org--name/{blobs/<etag>, snapshots/<commit>/file -> blob, refs/<revision>}
    let repo_dir = cache.path().join("models--xlpatch--fixture-series");
    assert_eq!(snap, repo_dir.join("snapshots").join(&ck.commit));
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/step_64")).unwrap(),
        ck.commit
    );
    let weights = snap.join("model.safetensors");
    let link = std::fs::read_link(&weights).unwrap();
    let sha = ck
        .files
        .iter()
        .find(|f| f.path == "model.safetensors")
        .unwrap()
        .sha256
        .clone()
        .unwrap();
    assert_eq!(link, Path::new("../../blobs").join(&sha));
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        std::fs::read(repo_root().join("fixtures/series/step_64/model.safetensors")).unwrap()
    );
    assert!(hub.is_cached(ck));

    // A second download fetches nothing.
    let before = stand.log().len();
    hub.download(ck, &mut |_| {}).unwrap();
    assert_eq!(stand.log().len(), before, "{:?}", &stand.log()[before..]);

    // Offline, the same series resolves from the cache alone.
    let offline = Hub::new(HubOptions {
        offline: true,
        ..hub.options().clone()
    })
    .unwrap();
    let one = SeriesSpec::parse(&format!("hf://{REPO}@step_64")).unwrap();
    let (_, off) = offline.resolve(&one).unwrap();
    assert_eq!(off[0].commit, ck.commit);
    assert_eq!(
        off[0].weights_hash, ck.weights_hash,
        "same hash from the cache"
    );
    assert_eq!(offline.download(&off[0], &mut |_| {}).unwrap(), snap);
    assert_eq!(stand.log().len(), before, "offline touches no network");
    let e = offline
        .resolve(&SeriesSpec::parse(&format!("hf://{REPO}@step_0")).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("offline") && e.contains("xlpatch series fetch"),
        "{e}"
    );

    // Deleting frees the blobs and the links.
    let freed = hub.remove(ck).unwrap();
    assert_eq!(freed, ck.download_bytes());
    assert!(!hub.is_cached(ck));
}

#[test]
fn a_corrupt_download_is_refused_and_retried_and_duplicates_share_a_hash() {
    let stand = hub();
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&stand, cache.path());
    let spec = SeriesSpec::parse(&format!("hf://{REPO}@step_2000,main,v1.0")).unwrap();
    let (_, cks) = hub.resolve(&spec).unwrap();
    assert_eq!(cks.len(), 3);
    assert_eq!(cks[0].weights_hash, cks[1].weights_hash);
    assert_eq!(cks[1].weights_hash, cks[2].weights_hash);

    // Once corrupt: refused, deleted, downloaded again.
    stand.corrupt("step_2000", "model.safetensors", 1);
    let mut msgs = Vec::new();
    let snap = hub
        .download(&cks[0], &mut |m| msgs.push(m.to_string()))
        .unwrap();
    assert!(
        msgs.iter()
            .any(|m| m.contains("model.safetensors refused (sha256")),
        "{msgs:?}"
    );
    assert_eq!(
        std::fs::read(snap.join("model.safetensors")).unwrap(),
        std::fs::read(repo_root().join("fixtures/series/step_2000/model.safetensors")).unwrap()
    );

    // Always corrupt: an error naming revision and file, and nothing left in the cache.
    let other = &hub
        .resolve(&SeriesSpec::parse(&format!("hf://{REPO}@step_0")).unwrap())
        .unwrap()
        .1[0];
    stand.corrupt("step_0", "model.safetensors", 100);
    let e = hub.download(other, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("xlpatch/fixture-series@step_0: model.safetensors does not match"),
        "{e}"
    );
    assert!(e.contains("after 3 tries; refused"), "{e}");
    assert!(!hub.is_cached(other));
}

#[test]
fn missing_weight_files_name_revision_and_file() {
    let stand = StandIn::start(REPO);
    stand.add(
        "step1000",
        false,
        vec![
            File {
                path: "config.json".into(),
                bytes: b"{}".to_vec(),
            },
            File {
                path: "pytorch_model.bin".into(),
                bytes: vec![0; 8],
            },
        ],
    );
    stand.add(
        "step2000",
        false,
        vec![
            File { path: "config.json".into(), bytes: b"{}".to_vec() },
            File {
                path: "model.safetensors.index.json".into(),
                bytes: br#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#.to_vec(),
            },
            File { path: "model-00001-of-00002.safetensors".into(), bytes: vec![1; 8] },
        ],
    );
    let cache = tempfile::tempdir().unwrap();
    let hub = client(&stand, cache.path());
    let e = hub
        .resolve(&SeriesSpec::parse(&format!("hf://{REPO}@step1000")).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("@step1000: model.safetensors is missing"), "{e}");
    assert!(e.contains("pytorch_model.bin"), "{e}");
    let (_, cks) = hub
        .resolve(&SeriesSpec::parse(&format!("hf://{REPO}@step2000")).unwrap())
        .unwrap();
    let e = hub.download(&cks[0], &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("@step2000: model-00002-of-00002.safetensors is missing"),
        "{e}"
    );
}

#[test]
fn the_standin_answers_head_as_the_hub_does() {
    let stand = hub();
    let url = format!(
        "{}/{REPO}/resolve/step_64/model.safetensors",
        stand.endpoint()
    );
    let resp = ureq::head(&url).call().unwrap();
    let want =
        std::fs::read(repo_root().join("fixtures/series/step_64/model.safetensors")).unwrap();
    assert_eq!(
        resp.header("Content-Length"),
        Some(want.len().to_string().as_str())
    );
    let etag = resp.header("ETag").unwrap().trim_matches('"').to_string();
    assert_eq!(etag.len(), 64, "the sha256 of an LFS file: {etag}");
    assert_eq!(resp.header("X-Repo-Commit").map(str::len), Some(40));
    assert!(resp.header("X-Xet-Hash").is_none());
    let missing = ureq::head(&format!(
        "{}/{REPO}/resolve/step_64/nope.bin",
        stand.endpoint()
    ))
    .call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
}
