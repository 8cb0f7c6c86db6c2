//! The hub client: refs, commits, file trees and verified downloads into the shared cache.

use std::io::Read;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Cache, Repo, RepoType};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::select::{HubRef, RefKind, Selected, Selection, select};
use crate::spec::SeriesSpec;
use crate::{HubError, io_err};

/// Where the hub is and where its files go, as `huggingface_hub` reads them from the
/// environment.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// The hub's URL (`HF_ENDPOINT`); none: `hf-hub`'s default.
    pub endpoint: Option<String>,
    /// The cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
    /// The access token (`HF_TOKEN`, else the token file beside the cache).
    pub token: Option<String>,
    /// Never touch the network (`HF_HUB_OFFLINE=1`): everything comes from the cache.
    pub offline: bool,
    /// Downloads of one file tried before a size or hash mismatch is final.
    pub tries: usize,
}

impl HubOptions {
    /// The options the environment gives.
    pub fn from_env() -> HubOptions {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let cache = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|h| Path::new(&h).join("hub")))
            .unwrap_or_else(|| Cache::default().path().clone());
        let token = var("HF_TOKEN").or_else(|| Cache::new(cache.clone()).token());
        let offline = var("HF_HUB_OFFLINE")
            .is_some_and(|v| ["1", "on", "yes", "true"].contains(&v.to_lowercase().as_str()));
        HubOptions {
            endpoint: var("HF_ENDPOINT").map(|e| e.trim_end_matches('/').to_string()),
            cache,
            token,
            offline,
            tries: 3,
        }
    }
}

/// One file of a revision's tree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct TreeEntry {
    /// Its path in the repository.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its git object id.
    pub oid: String,
    /// Its sha256, when it is stored in LFS (weights are).
    pub sha256: Option<String>,
}

/// A revision resolved to a commit and the files a checkpoint needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Checkpoint {
    /// `org/name`.
    pub repo: String,
    /// The revision as selected.
    pub revision: String,
    /// Its commit.
    pub commit: String,
    /// The training step the name gives.
    pub step: Option<u64>,
    /// The tokens seen the name gives.
    pub tokens: Option<u64>,
    /// `config.json`, the weights (and their index), `tokenizer.json` if the revision has it.
    pub files: Vec<TreeEntry>,
    /// A hash of the weight files' contents (their LFS sha256s): equal weights, equal hash.
    pub weights_hash: String,
}

impl Checkpoint {
    /// The bytes its files take.
    pub fn download_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The bytes its weight files take.
    pub fn weight_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.path.ends_with(".safetensors"))
            .map(|f| f.size)
            .sum()
    }
}

/// A client of one hub and one cache.
#[derive(Debug)]
pub struct Hub {
    opts: HubOptions,
    api: Api,
    agent: ureq::Agent,
    endpoint: String,
}

#[derive(Deserialize)]
struct RefsJson {
    #[serde(default)]
    branches: Vec<RefJson>,
    #[serde(default)]
    tags: Vec<RefJson>,
}

#[derive(Deserialize)]
struct RefJson {
    name: String,
    #[serde(rename = "targetCommit")]
    target_commit: String,
}

#[derive(Deserialize)]
struct TreeJson {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: String,
    lfs: Option<LfsJson>,
}

#[derive(Deserialize)]
struct LfsJson {
    oid: String,
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

fn sha256_file(path: &Path) -> Result<String, HubError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The files of a checkpoint in `tree`, or the first one missing.
fn checkpoint_files(
    repo: &str,
    revision: &str,
    tree: &[TreeEntry],
) -> Result<Vec<TreeEntry>, HubError> {
    let has = |p: &str| tree.iter().find(|e| e.path == p).cloned();
    let missing = |file: &str, found: String| HubError::MissingFile {
        repo: repo.into(),
        revision: revision.into(),
        file: file.into(),
        found,
    };
    let mut files = vec![has("config.json").ok_or_else(|| missing("config.json", String::new()))?];
    if let Some(index) = has("model.safetensors.index.json") {
        files.push(index);
        files.extend(
            tree.iter()
                .filter(|e| !e.path.contains('/') && e.path.ends_with(".safetensors"))
                .cloned(),
        );
    } else if let Some(w) = has("model.safetensors") {
        files.push(w);
    } else {
        let others: Vec<&str> = tree
            .iter()
            .map(|e| e.path.as_str())
            .filter(|p| p.ends_with(".bin") || p.ends_with(".pt") || p.ends_with(".safetensors"))
            .collect();
        let found = if others.is_empty() {
            "; the revision has no weight files".to_string()
        } else {
            format!(
                "; the revision has {} (xlpatch reads safetensors: convert it, or pick another revision)",
                others.join(", ")
            )
        };
        return Err(missing("model.safetensors", found));
    }
    if let Some(t) = has("tokenizer.json") {
        files.push(t);
    }
    Ok(files)
}

fn weights_hash(files: &[TreeEntry]) -> String {
    let mut h = Sha256::new();
    for f in files.iter().filter(|f| f.path.ends_with(".safetensors")) {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.sha256.as_deref().unwrap_or(&f.oid).as_bytes());
        h.update([b'\n']);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Hub {
    /// A client with `opts`.
    pub fn new(opts: HubOptions) -> Result<Hub, HubError> {
        let mut builder = ApiBuilder::from_cache(Cache::new(opts.cache.clone()))
            .with_progress(false)
            .with_token(opts.token.clone())
            .with_retries(2);
        if let Some(e) = &opts.endpoint {
            builder = builder.with_endpoint(e.clone());
        }
        let api = builder.build().map_err(|e| HubError::Http {
            url: opts.endpoint.clone().unwrap_or_default(),
            what: e.to_string(),
        })?;
        // hf-hub knows its default endpoint; take it from a URL it builds.
        let probe = api.model("o/n".into()).url("f");
        let endpoint = probe.trim_end_matches("/o/n/resolve/main/f").to_string();
        let agent = ureq::AgentBuilder::new().try_proxy_from_env(true).build();
        Ok(Hub {
            opts,
            api,
            agent,
            endpoint,
        })
    }

    /// The options.
    pub fn options(&self) -> &HubOptions {
        &self.opts
    }

    /// The cache folder of `repo` (`models--org--name`).
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.opts
            .cache
            .join(Repo::new(repo.to_string(), RepoType::Model).folder_name())
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<(T, Option<String>), HubError> {
        let mut req = self.agent.get(url);
        if let Some(t) = &self.opts.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let resp = req.call().map_err(|e| HubError::Http {
            url: url.into(),
            what: e.to_string(),
        })?;
        let link = resp.header("Link").map(str::to_string);
        let value = resp.into_json::<T>().map_err(|e| HubError::Protocol {
            url: url.into(),
            what: e.to_string(),
        })?;
        Ok((value, link))
    }

    fn offline_missing(&self, what: String) -> HubError {
        HubError::NotCached {
            what,
            cache: self.opts.cache.clone(),
        }
    }

    /// The branches and tags of `repo` (offline: the refs the cache knows, as branches).
    pub fn list_refs(&self, repo: &str) -> Result<Vec<HubRef>, HubError> {
        if self.opts.offline {
            let root = self.repo_dir(repo).join("refs");
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let Ok(listing) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in listing.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if let Ok(commit) = std::fs::read_to_string(&p) {
                        let name = p
                            .strip_prefix(&root)
                            .unwrap_or(&p)
                            .to_string_lossy()
                            .into_owned();
                        out.push(HubRef {
                            name,
                            kind: RefKind::Branch,
                            commit: commit.trim().to_string(),
                        });
                    }
                }
            }
            if out.is_empty() {
                return Err(self.offline_missing(format!("no ref of {repo}")));
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            return Ok(out);
        }
        let url = format!("{}/api/models/{repo}/refs", self.endpoint);
        let (refs, _) = self.get_json::<RefsJson>(&url)?;
        let conv = |kind| {
            move |r: RefJson| HubRef {
                name: r.name,
                kind,
                commit: r.target_commit,
            }
        };
        Ok(refs
            .branches
            .into_iter()
            .map(conv(RefKind::Branch))
            .chain(refs.tags.into_iter().map(conv(RefKind::Tag)))
            .collect())
    }

    /// The commit `revision` of `repo` points at.
    pub fn commit(&self, repo: &str, revision: &str) -> Result<String, HubError> {
        if self.opts.offline {
            let refs = self.repo_dir(repo).join("refs").join(revision);
            if let Ok(c) = std::fs::read_to_string(&refs) {
                return Ok(c.trim().to_string());
            }
            if is_hex(revision, 40)
                && self
                    .repo_dir(repo)
                    .join("snapshots")
                    .join(revision)
                    .is_dir()
            {
                return Ok(revision.to_string());
            }
            return Err(self.offline_missing(format!("{repo}@{revision}")));
        }
        let repo_api = self.api.repo(Repo::with_revision(
            repo.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        let info = repo_api.info().map_err(|e| HubError::Http {
            url: repo_api.info_request().url().to_string(),
            what: format!("{e} (does {repo} have a revision {revision:?}?)"),
        })?;
        Ok(info.sha)
    }

    /// Every file of `commit` (recursively), following the tree's pagination.
    pub fn tree(&self, repo: &str, commit: &str) -> Result<Vec<TreeEntry>, HubError> {
        if self.opts.offline {
            let root = self.repo_dir(repo).join("snapshots").join(commit);
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let listing = std::fs::read_dir(&dir).map_err(|_| {
                    self.offline_missing(format!("the snapshot {commit} of {repo}"))
                })?;
                for e in listing.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                        continue;
                    }
                    let Ok(md) = std::fs::metadata(&p) else {
                        continue;
                    };
                    let blob = std::fs::read_link(&p)
                        .ok()
                        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .unwrap_or_default();
                    out.push(TreeEntry {
                        path: p
                            .strip_prefix(&root)
                            .unwrap_or(&p)
                            .to_string_lossy()
                            .into_owned(),
                        size: md.len(),
                        sha256: is_hex(&blob, 64).then(|| blob.clone()),
                        oid: blob,
                    });
                }
            }
            out.sort_by(|a, b| a.path.cmp(&b.path));
            return Ok(out);
        }
        let mut url = Some(format!(
            "{}/api/models/{repo}/tree/{commit}?recursive=true",
            self.endpoint
        ));
        let mut out = Vec::new();
        while let Some(u) = url.take() {
            let (page, link) = self.get_json::<Vec<TreeJson>>(&u)?;
            out.extend(
                page.into_iter()
                    .filter(|e| e.kind == "file")
                    .map(|e| TreeEntry {
                        path: e.path,
                        size: e.size,
                        oid: e.oid,
                        sha256: e.lfs.map(|l| l.oid),
                    }),
            );
            url = link.as_deref().and_then(next_link);
        }
        Ok(out)
    }

    /// Lists (unless the spec names its revisions outright), selects, and resolves every
    /// selected revision to its commit and checkpoint files.
    pub fn resolve(&self, spec: &SeriesSpec) -> Result<(Selection, Vec<Checkpoint>), HubError> {
        let refs = if spec.is_explicit() {
            Vec::new()
        } else {
            self.list_refs(&spec.repo)?
        };
        let selection = select(spec, &refs);
        let mut out = Vec::new();
        for Selected {
            revision,
            commit,
            step,
        } in &selection.selected
        {
            let commit = match commit {
                Some(c) => c.clone(),
                None => self.commit(&spec.repo, revision)?,
            };
            let tree = self.tree(&spec.repo, &commit)?;
            let files = checkpoint_files(&spec.repo, revision, &tree)?;
            out.push(Checkpoint {
                repo: spec.repo.clone(),
                revision: revision.clone(),
                commit,
                step: step.map(|s| s.step),
                tokens: step.and_then(|s| s.tokens),
                weights_hash: weights_hash(&files),
                files,
            });
        }
        Ok((selection, out))
    }

    fn snapshot_file(&self, ck: &Checkpoint, file: &str) -> PathBuf {
        self.repo_dir(&ck.repo)
            .join("snapshots")
            .join(&ck.commit)
            .join(file)
    }

    /// Whether a cached file matches its tree entry (size, and sha256 for LFS files).
    fn verify(&self, path: &Path, entry: &TreeEntry) -> Result<Result<(), String>, HubError> {
        let size = std::fs::metadata(path).map_err(io_err(path))?.len();
        if size != entry.size {
            return Ok(Err(format!("{size} bytes, the tree says {}", entry.size)));
        }
        if let Some(want) = &entry.sha256 {
            let got = sha256_file(path)?;
            if &got != want {
                return Ok(Err(format!("sha256 {got}, the tree says {want}")));
            }
        }
        Ok(Ok(()))
    }

    /// The blobs that snapshots other than `commit` link to (files with equal contents in
    /// several revisions share one blob).
    fn blobs_in_use(&self, repo: &str, commit: &str) -> std::collections::BTreeSet<PathBuf> {
        let mut used = std::collections::BTreeSet::new();
        let snaps = self.repo_dir(repo).join("snapshots");
        let mut stack: Vec<PathBuf> = std::fs::read_dir(&snaps)
            .map(|l| {
                l.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.file_name().is_some_and(|n| n != commit))
                    .collect()
            })
            .unwrap_or_default();
        while let Some(p) = stack.pop() {
            if let Ok(target) = std::fs::read_link(&p) {
                let blob = p.parent().unwrap_or(Path::new(".")).join(target);
                used.insert(std::fs::canonicalize(&blob).unwrap_or(blob));
            } else if let Ok(l) = std::fs::read_dir(&p) {
                stack.extend(l.flatten().map(|e| e.path()));
            }
        }
        used
    }

    /// Removes a snapshot file and the blob it points to (unless `keep` holds the blob).
    fn drop_file_keeping(
        &self,
        pointer: &Path,
        keep: &std::collections::BTreeSet<PathBuf>,
    ) -> Result<u64, HubError> {
        let mut freed = 0;
        if let Ok(target) = std::fs::read_link(pointer) {
            let blob = pointer.parent().unwrap_or(Path::new(".")).join(target);
            let canon = std::fs::canonicalize(&blob).unwrap_or(blob.clone());
            if keep.contains(&canon) {
                // Another snapshot links to it.
            } else if let Ok(md) = std::fs::metadata(&blob) {
                freed += md.len();
                std::fs::remove_file(&blob).map_err(io_err(&blob))?;
            }
            let _ = std::fs::remove_file(blob.with_extension("lock"));
        } else if let Ok(md) = std::fs::metadata(pointer) {
            freed += md.len();
        }
        match std::fs::remove_file(pointer) {
            Ok(()) => Ok(freed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(freed),
            Err(e) => Err(io_err(pointer)(e)),
        }
    }

    /// Removes a snapshot file and the blob it points to.
    fn drop_file(&self, pointer: &Path) -> Result<u64, HubError> {
        self.drop_file_keeping(pointer, &Default::default())
    }

    /// Whether every file of `ck` is in the cache with its tree's size.
    pub fn is_cached(&self, ck: &Checkpoint) -> bool {
        ck.files.iter().all(|f| {
            std::fs::metadata(self.snapshot_file(ck, &f.path)).is_ok_and(|m| m.len() == f.size)
        })
    }

    /// Downloads what of `ck` the cache lacks (a partial `.part` file resumes), checks every
    /// file against the tree (a mismatch is deleted and downloaded again, up to
    /// [`HubOptions::tries`] times) and returns the snapshot directory.
    pub fn download(
        &self,
        ck: &Checkpoint,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, HubError> {
        for entry in &ck.files {
            self.fetch_entry(ck, entry, log)?;
        }
        self.check_index(ck)?;
        Ok(self.repo_dir(&ck.repo).join("snapshots").join(&ck.commit))
    }

    /// Downloads (and checks) one file of `ck`; returns its path in the snapshot.
    pub fn download_file(
        &self,
        ck: &Checkpoint,
        file: &str,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, HubError> {
        let entry =
            ck.files
                .iter()
                .find(|f| f.path == file)
                .ok_or_else(|| HubError::MissingFile {
                    repo: ck.repo.clone(),
                    revision: ck.revision.clone(),
                    file: file.to_string(),
                    found: String::new(),
                })?;
        self.fetch_entry(ck, entry, log)
    }

    fn fetch_entry(
        &self,
        ck: &Checkpoint,
        entry: &TreeEntry,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, HubError> {
        let pointer = self.snapshot_file(ck, &entry.path);
        let mut tries = 0;
        loop {
            if std::fs::symlink_metadata(&pointer).is_ok() {
                if std::fs::metadata(&pointer).is_err() {
                    // A link whose blob was deleted (another revision with the same
                    // file, cleaned up): hf-hub would not replace it.
                    self.drop_file(&pointer)?;
                } else {
                    match self.verify(&pointer, entry)? {
                        Ok(()) => break,
                        Err(what) => {
                            log(&format!(
                                "{}@{}: {} refused ({what}); deleted",
                                ck.repo, ck.revision, entry.path
                            ));
                            self.drop_file(&pointer)?;
                            if tries >= self.opts.tries {
                                return Err(HubError::Corrupt {
                                    repo: ck.repo.clone(),
                                    revision: ck.revision.clone(),
                                    file: entry.path.clone(),
                                    what,
                                    tries,
                                });
                            }
                        }
                    }
                }
            }
            if self.opts.offline {
                return Err(
                    self.offline_missing(format!("{}@{}: {}", ck.repo, ck.revision, entry.path))
                );
            }
            tries += 1;
            log(&format!(
                "downloading {}@{}: {} ({} bytes)",
                ck.repo, ck.revision, entry.path, entry.size
            ));
            let repo = self.api.repo(Repo::with_revision(
                ck.repo.clone(),
                RepoType::Model,
                ck.revision.clone(),
            ));
            let got = repo.download(&entry.path).map_err(|e| {
                let what = e.to_string();
                if what.contains("404") {
                    HubError::MissingFile {
                        repo: ck.repo.clone(),
                        revision: ck.revision.clone(),
                        file: entry.path.clone(),
                        found: format!(" (the hub answers 404: {what})"),
                    }
                } else {
                    HubError::Download {
                        repo: ck.repo.clone(),
                        revision: ck.revision.clone(),
                        file: entry.path.clone(),
                        what,
                    }
                }
            })?;
            if got != pointer {
                return Err(HubError::Download {
                    repo: ck.repo.clone(),
                    revision: ck.revision.clone(),
                    file: entry.path.clone(),
                    what: format!(
                        "the revision moved to another commit than {} while the series ran; list it again",
                        ck.commit
                    ),
                });
            }
        }
        Ok(pointer)
    }

    /// A sharded checkpoint's index must name only shards the revision has.
    fn check_index(&self, ck: &Checkpoint) -> Result<(), HubError> {
        if let Some(index) = ck
            .files
            .iter()
            .find(|f| f.path == "model.safetensors.index.json")
        {
            let path = self.snapshot_file(ck, &index.path);
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| HubError::Protocol {
                    url: path.display().to_string(),
                    what: e.to_string(),
                })?;
            let shards: std::collections::BTreeSet<&str> = json["weight_map"]
                .as_object()
                .map(|m| m.values().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            for shard in shards {
                if !ck.files.iter().any(|f| f.path == shard) {
                    return Err(HubError::MissingFile {
                        repo: ck.repo.clone(),
                        revision: ck.revision.clone(),
                        file: shard.to_string(),
                        found: " (model.safetensors.index.json names it)".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Deletes the cached files of `ck` (its snapshot links, and their blobs unless another
    /// snapshot links to them); returns the bytes freed.
    pub fn remove(&self, ck: &Checkpoint) -> Result<u64, HubError> {
        let keep = self.blobs_in_use(&ck.repo, &ck.commit);
        let mut freed = 0;
        for f in &ck.files {
            freed += self.drop_file_keeping(&self.snapshot_file(ck, &f.path), &keep)?;
        }
        let snap = self.repo_dir(&ck.repo).join("snapshots").join(&ck.commit);
        let _ = std::fs::remove_dir(&snap);
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        assert_eq!(
            next_link("<http://h/api/models/a/b/tree/main?cursor=2>; rel=\"next\"").as_deref(),
            Some("http://h/api/models/a/b/tree/main?cursor=2")
        );
        assert_eq!(next_link("<http://h/x>; rel=\"prev\""), None);
    }

    fn entry(path: &str) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            size: 1,
            oid: "0".into(),
            sha256: None,
        }
    }

    #[test]
    fn a_revision_without_weights_names_itself_and_the_file() {
        let e = checkpoint_files(
            "EleutherAI/pythia-70m",
            "step3000",
            &[entry("config.json"), entry("pytorch_model.bin")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("EleutherAI/pythia-70m@step3000"), "{e}");
        assert!(e.contains("model.safetensors is missing"), "{e}");
        assert!(e.contains("pytorch_model.bin"), "{e}");
        let e = checkpoint_files("a/b", "r", &[entry("model.safetensors")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("a/b@r: config.json is missing"), "{e}");
    }
}
