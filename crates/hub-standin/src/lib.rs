//! A stand-in for the Hugging Face hub, served on 127.0.0.1 by a test, so the real client
//! (`hf-hub` and ureq) is exercised over real HTTP with nothing mocked below it.
//!
//! It serves one model repository's branches and tags with the endpoints and headers the
//! hub's clients read: `GET /api/models/{repo}/refs`,
//! `GET /api/models/{repo}/revision/{rev}`, `GET /api/models/{repo}/tree/{rev}?recursive=true`
//! (two entries a page, `Link: <…>; rel="next"`), and `HEAD`/`GET
//! /{repo}/resolve/{rev}/{file}` with `ETag` (the sha256 for LFS files, as the hub's
//! `X-Linked-Etag`), `Content-Length`, `X-Repo-Commit`, and byte ranges (`206` with
//! `Content-Range`), never `X-Xet-Hash`. A test can corrupt a file's next downloads, slow
//! downloads down, and read the request log.
//!
//! tiny_http: a small synchronous server with few dependencies, enough for a test's
//! stand-in (no async runtime to build and start).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use tiny_http::{Header, Method, Response, Server, StatusCode};

/// Entries per page of the tree endpoint: small, so that pagination is exercised.
pub const TREE_PAGE: usize = 2;

/// A file of a revision.
#[derive(Debug, Clone)]
pub struct File {
    /// Its path in the repository.
    pub path: String,
    /// Its contents.
    pub bytes: Vec<u8>,
}

impl File {
    /// Whether the hub would keep it in LFS (weights).
    fn lfs(&self) -> bool {
        self.path.ends_with(".safetensors") || self.bytes.len() > 10 << 20
    }
    fn sha256(&self) -> String {
        hex(&Sha256::digest(&self.bytes))
    }
    /// A git-like object id (the stand-in's own: sha256 cut to 40 digits).
    fn oid(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!("blob {}\0", self.bytes.len()));
        h.update(&self.bytes);
        hex(&h.finalize())[..40].to_string()
    }
    fn etag(&self) -> String {
        if self.lfs() {
            self.sha256()
        } else {
            self.oid()
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The files of a local checkpoint directory as a revision: `config.json`, the safetensors
/// weights (and index), and `tokenizer` as `tokenizer.json` when given.
pub fn checkpoint_files(dir: &Path, tokenizer: Option<&Path>) -> Vec<File> {
    let mut files = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n == "config.json"
                || n == "model.safetensors.index.json"
                || (n.starts_with("model") && n.ends_with(".safetensors"))
        })
        .collect();
    names.sort();
    for n in names {
        files.push(File {
            bytes: std::fs::read(dir.join(&n)).unwrap(),
            path: n,
        });
    }
    if let Some(t) = tokenizer {
        files.push(File {
            path: "tokenizer.json".into(),
            bytes: std::fs::read(t).unwrap_or_else(|e| panic!("{}: {e}", t.display())),
        });
    }
    files
}

#[derive(Debug, Clone)]
struct Rev {
    name: String,
    tag: bool,
    commit: String,
    files: Vec<File>,
}

#[derive(Debug, Default)]
struct State {
    revs: Vec<Rev>,
    /// (revision, path) → how many more body downloads are served corrupted.
    corrupt: BTreeMap<(String, String), usize>,
    /// Bytes per second of resolve bodies (none: as fast as possible).
    rate: Option<u64>,
    log: Vec<String>,
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    repo: String,
    endpoint: String,
    state: Arc<Mutex<State>>,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Starts serving `repo` (`org/name`) on a free port of 127.0.0.1, with no refs yet.
    pub fn start(repo: &str) -> StandIn {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("bind 127.0.0.1"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State::default()));
        let thread = {
            let (server, state, repo, endpoint) = (
                server.clone(),
                state.clone(),
                repo.to_string(),
                endpoint.clone(),
            );
            std::thread::spawn(move || {
                for rq in server.incoming_requests() {
                    let (state, repo, endpoint) = (state.clone(), repo.clone(), endpoint.clone());
                    std::thread::spawn(move || handle(rq, &state, &repo, &endpoint));
                }
            })
        };
        StandIn {
            repo: repo.to_string(),
            endpoint,
            state,
            server,
            thread: Some(thread),
        }
    }

    /// The URL to give as `HF_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The repository served.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// Adds a branch (or tag) with `files`; returns its commit.
    pub fn add(&self, name: &str, tag: bool, files: Vec<File>) -> String {
        let mut h = Sha256::new();
        h.update(name);
        for f in &files {
            h.update(&f.path);
            h.update(f.sha256());
        }
        let commit = hex(&h.finalize())[..40].to_string();
        self.state.lock().unwrap().revs.push(Rev {
            name: name.into(),
            tag,
            commit: commit.clone(),
            files,
        });
        commit
    }

    /// Serves the next `times` downloads of `path` at `revision` with one byte changed.
    pub fn corrupt(&self, revision: &str, path: &str, times: usize) {
        self.state
            .lock()
            .unwrap()
            .corrupt
            .insert((revision.into(), path.into()), times);
    }

    /// Limits resolve bodies to `rate` bytes per second (none: no limit).
    pub fn set_rate(&self, rate: Option<u64>) {
        self.state.lock().unwrap().rate = rate;
    }

    /// The requests so far, as `METHOD URL [range]`.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn")
            .field("repo", &self.repo)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("ascii header")
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(value: serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(value.to_string().into_bytes())
        .with_header(header("Content-Type", "application/json"))
}

fn not_found(code: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    json_response(json!({ "error": code }))
        .with_status_code(404)
        .with_header(header("X-Error-Code", code))
}

/// A body read at a limited rate.
struct Slow {
    inner: std::io::Cursor<Vec<u8>>,
    rate: Option<u64>,
}

impl Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(rate) = self.rate else {
            return self.inner.read(buf);
        };
        let chunk = 8192.min(buf.len());
        let n = self.inner.read(&mut buf[..chunk])?;
        std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
        Ok(n)
    }
}

fn find<'a>(revs: &'a [Rev], rev: &str) -> Option<&'a Rev> {
    revs.iter().find(|r| r.name == rev || r.commit == rev)
}

fn handle(rq: tiny_http::Request, state: &Mutex<State>, repo: &str, endpoint: &str) {
    let url = rq.url().to_string();
    let range = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| h.value.as_str().to_string());
    state.lock().unwrap().log.push(format!(
        "{} {url}{}",
        rq.method(),
        range
            .as_deref()
            .map(|r| format!(" {r}"))
            .unwrap_or_default()
    ));
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let api = format!("/api/models/{repo}/");
    let resolve = format!("/{repo}/resolve/");
    let revs = state.lock().unwrap().revs.clone();
    if let Some(rest) = path.strip_prefix(&api) {
        if rest == "refs" {
            let list = |tag: bool| -> Vec<serde_json::Value> {
                revs.iter()
                    .filter(|r| r.tag == tag)
                    .map(|r| {
                        let kind = if tag { "tags" } else { "heads" };
                        json!({"name": r.name, "ref": format!("refs/{kind}/{}", r.name), "targetCommit": r.commit})
                    })
                    .collect()
            };
            let body = json!({"branches": list(false), "tags": list(true), "converts": [], "pullRequests": []});
            let _ = rq.respond(json_response(body));
        } else if let Some(rev) = rest.strip_prefix("revision/") {
            match find(&revs, &decode(rev)) {
                Some(r) => {
                    let siblings: Vec<_> = r
                        .files
                        .iter()
                        .map(|f| json!({"rfilename": f.path}))
                        .collect();
                    let _ = rq.respond(json_response(
                        json!({"id": repo, "modelId": repo, "sha": r.commit, "siblings": siblings}),
                    ));
                }
                None => {
                    let _ = rq.respond(not_found("RevisionNotFound"));
                }
            }
        } else if let Some(rev) = rest.strip_prefix("tree/") {
            let Some(r) = find(&revs, &decode(rev)) else {
                let _ = rq.respond(not_found("RevisionNotFound"));
                return;
            };
            let cursor: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("cursor="))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let page: Vec<_> = r
                .files
                .iter()
                .skip(cursor)
                .take(TREE_PAGE)
                .map(|f| {
                    let mut e = json!({"type": "file", "oid": f.oid(), "size": f.bytes.len(), "path": f.path});
                    if f.lfs() {
                        e["lfs"] = json!({"oid": f.sha256(), "size": f.bytes.len(), "pointerSize": 134});
                    }
                    e
                })
                .collect();
            let mut resp = json_response(json!(page));
            if cursor + TREE_PAGE < r.files.len() {
                let next = format!(
                    "<{endpoint}{api}tree/{rev}?recursive=true&cursor={}>; rel=\"next\"",
                    cursor + TREE_PAGE
                );
                resp = resp.with_header(header("Link", &next));
            }
            let _ = rq.respond(resp);
        } else {
            let _ = rq.respond(not_found("NotFound"));
        }
        return;
    }
    let Some(rest) = path.strip_prefix(&resolve) else {
        let _ = rq.respond(not_found("RepoNotFound"));
        return;
    };
    let Some((rev, file)) = rest.split_once('/') else {
        let _ = rq.respond(not_found("EntryNotFound"));
        return;
    };
    let (rev, file) = (decode(rev), decode(file));
    let Some(r) = find(&revs, &rev) else {
        let _ = rq.respond(not_found("RevisionNotFound"));
        return;
    };
    let Some(f) = r.files.iter().find(|f| f.path == file) else {
        let _ =
            rq.respond(not_found("EntryNotFound").with_header(header("X-Repo-Commit", &r.commit)));
        return;
    };
    let total = f.bytes.len();
    let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(spec) => {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = b.parse().map(|b: usize| b + 1).unwrap_or(total).min(total);
            (a.min(total), b)
        }
        None => (0, total),
    };
    let mut bytes = f.bytes.clone();
    let is_body = *rq.method() == Method::Get && end.saturating_sub(start) > 1;
    let rate = {
        let mut st = state.lock().unwrap();
        if is_body
            && let Some(n) = st.corrupt.get_mut(&(rev.clone(), file.clone()))
            && *n > 0
        {
            *n -= 1;
            let mid = total / 2;
            bytes[mid] ^= 0xff;
        }
        st.rate
    };
    let body = bytes[start..end].to_vec();
    let len = body.len();
    let mut headers = vec![
        header("ETag", &format!("\"{}\"", f.etag())),
        header("X-Repo-Commit", &r.commit),
        header("Accept-Ranges", "bytes"),
    ];
    let status = if range.is_some() {
        headers.push(header(
            "Content-Range",
            &format!("bytes {start}-{}/{total}", end.saturating_sub(1)),
        ));
        206
    } else {
        200
    };
    let reader = Slow {
        inner: std::io::Cursor::new(body),
        rate: if is_body { rate } else { None },
    };
    // Always Content-Length, never chunked (tiny_http chunks bodies over 32 kB by default),
    // as the hub sends it.
    let resp = Response::new(StatusCode(status), headers, reader, Some(len), None)
        .with_chunked_threshold(usize::MAX);
    let _ = rq.respond(resp);
}
