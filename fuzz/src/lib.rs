//! Fuzzing of every parser that reads a file a user hands xlpatch, on stable Rust.
//!
//! Nightly (and so `cargo fuzz`/libFuzzer) is not available here, so there are two engines:
//!
//! - **Structure-aware random inputs** ([`fuzz`], always available): valid seed files from
//!   `fuzz/corpus/<target>/`, mutated by [`mutate`] (byte edits, interesting integers over
//!   little-endian length fields, numbers, lines and separated fields swapped or spliced
//!   between seeds), each run under `catch_unwind`. This is what CI runs, briefly, and what
//!   `cargo xtask fuzz` runs for as long as it is told.
//! - **AFL++, coverage-guided**, when `cargo afl` is installed: the `afl` feature builds the
//!   `xlpatch-fuzz afl <target>` mode around `afl::fuzz!`, and `cargo xtask fuzz --afl` runs it
//!   on the same seeds.
//!
//! The crate is a workspace member (not an excluded crate) so that its seed-corpus test runs
//! in `cargo test --workspace` with no extra step, on the same lock file and target
//! directory; the AFL build only happens on request, into its own target directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod mutate;
pub mod targets;

pub use targets::{TARGETS, Target, target};

/// The scratch space and fixture cache of a fuzzing process.
#[derive(Debug)]
pub struct Env {
    root: PathBuf,
    scratch: tempfile::TempDir,
}

impl Env {
    /// A fresh environment for the repository at `root`.
    pub fn new(root: &Path) -> Env {
        Env {
            root: root.to_path_buf(),
            scratch: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    /// The repository root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An empty scratch folder called `name` (emptied if it existed).
    pub fn fresh(&self, name: &str) -> PathBuf {
        let dir = self.scratch.path().join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("empty a scratch folder");
        }
        std::fs::create_dir_all(&dir).expect("create a scratch folder");
        dir
    }

    /// The bytes of a file of the repository, by its path from the root.
    pub fn fixture(&self, rel: &str) -> Vec<u8> {
        let path = self.root.join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }
}

/// The repository root (this crate lives in `fuzz/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ is inside the repository")
        .to_path_buf()
}

/// The seed files of `target`, sorted by name; fails if there are none.
pub fn seeds(target: &Target) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo_root().join("fuzz/corpus").join(target.name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the seeds in {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seed", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read a seed");
            (p, bytes)
        })
        .collect()
}

/// An input that made a target panic.
#[derive(Debug)]
pub struct Crash {
    /// The input.
    pub input: Vec<u8>,
    /// The panic message.
    pub message: String,
}

/// What a fuzzing run did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Inputs run (seeds included).
    pub execs: u64,
    /// Inputs the parser accepted.
    pub accepted: u64,
    /// Seeds the parser accepted, of how many.
    pub seeds_accepted: (usize, usize),
    /// Distinct panic messages, with the first input that caused each.
    pub crashes: Vec<Crash>,
    /// The slowest input's time.
    pub slowest: Duration,
    /// The slowest input.
    pub slowest_input: Vec<u8>,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into())
}

/// Runs `target` on one input: whether the parser accepted it, or the panic message.
pub fn run_one(target: &Target, env: &Env, input: &[u8]) -> Result<bool, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.run)(env, input)))
        .map_err(|p| panic_message(&*p))
}

/// Runs every seed of `target`, then mutations of them until `budget` has passed (at least
/// `min_execs` inputs in all). `on_input` sees each input before it runs (the CLI saves it, so
/// that an abort, which no `catch_unwind` stops, leaves the input behind).
pub fn fuzz(
    target: &Target,
    env: &Env,
    budget: Duration,
    min_execs: u64,
    seed: u64,
    on_input: &mut dyn FnMut(&[u8]),
) -> Stats {
    let corpus: Vec<Vec<u8>> = seeds(target).into_iter().map(|(_, b)| b).collect();
    let mut stats = Stats::default();
    let mut rng = mutate::Rng::new(seed);
    let start = Instant::now();
    let mut record = |input: Vec<u8>, stats: &mut Stats| -> bool {
        on_input(&input);
        let t = Instant::now();
        let result = run_one(target, env, &input);
        if t.elapsed() > stats.slowest {
            stats.slowest = t.elapsed();
            stats.slowest_input = input.clone();
        }
        stats.execs += 1;
        match result {
            Ok(accepted) => {
                stats.accepted += u64::from(accepted);
                accepted
            }
            Err(message) => {
                if !stats.crashes.iter().any(|c| c.message == message) {
                    stats.crashes.push(Crash { input, message });
                }
                false
            }
        }
    };
    for s in &corpus {
        let ok = record(s.clone(), &mut stats);
        stats.seeds_accepted.0 += usize::from(ok);
        stats.seeds_accepted.1 += 1;
    }
    while start.elapsed() < budget || stats.execs < min_execs {
        let mut input = corpus[rng.below(corpus.len())].clone();
        mutate::mutate(&mut input, &corpus, &mut rng);
        record(input, &mut stats);
    }
    stats
}
