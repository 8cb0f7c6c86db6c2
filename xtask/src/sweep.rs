//! `cargo xtask sweep`: the main job, run on the committed fixture checkpoints.
//!
//! The patching engine and the fixture series are not built yet; until they land this task
//! builds the CLI and the plugins and shows what is loadable, so that the README's first
//! command already works on a fresh machine.

use anyhow::Result;

use crate::{cargo, plugins, run, target_dir};

pub(crate) fn sweep() -> Result<()> {
    plugins::build(false)?;
    run(cargo().args(["build", "--quiet", "-p", "xlpatch-cli"]))?;
    let xlpatch = target_dir().join("debug").join("xlpatch");
    run(std::process::Command::new(&xlpatch).args(["plugins", "list"]))?;
    println!(
        "\nThe sweep engine is not built yet: the plugins above are what a sweep will load. \
         Nothing else to run."
    );
    Ok(())
}
