//! `cargo xtask gpu-check`: builds, on this machine (no GPU needed), the kit that checks
//! backend-candle on a GPU: the release `xlpatch` binary and its plugins, backend-candle with
//! its `cuda` feature, in `target/gpu-check/bin` (the binary finds its plugins in
//! `bin/plugins`). Then prints the one command that runs `bench/gpu/check.py` on a machine with
//! an NVIDIA GPU, PyTorch and transformers (nothing is fetched there; it makes its models).
//!
//! candle's CUDA kernels are compiled to PTX at build time, so the build needs `nvcc`: the one
//! on `PATH`, or the PyPI wheels of CUDA 13.0 (`nvidia-cuda-nvcc`, `-runtime`, `-cccl`, `-crt`
//! and `nvidia-nvvm`, whose `cicc` nvcc needs) installed into `.cache/cuda` (done here when
//! neither is found; about 200 MB).
//! 13.0's PTX loads on any CUDA 13 driver. cudarc loads libcuda, cuBLAS and NVRTC at run time,
//! so the kit runs against the GPU machine's own CUDA 13 libraries.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run, target_dir};

/// What may travel with the working tree to the GPU machine.
const CARRY_LIMIT: u64 = 60 << 20;

/// The CUDA compute capability the PTX targets (an H200 is 9.0); `CUDA_COMPUTE_CAP` overrides.
const COMPUTE_CAP: &str = "90";

/// The plugins the GPU check loads (backend-ort is not needed there).
const PLUGINS: [&str; 7] = [
    "xlpatch-backend-candle",
    "xlpatch-extract-first",
    "xlpatch-extract-mean",
    "xlpatch-metric-concept-prob",
    "xlpatch-patch-add",
    "xlpatch-patch-interpolate",
    "xlpatch-patch-replace",
];

/// `nvcc`'s directory: on `PATH`, else from the PyPI wheels in `.cache/cuda`.
fn nvcc_dir() -> Result<Option<PathBuf>> {
    if Command::new("nvcc").arg("--version").output().is_ok() {
        return Ok(None);
    }
    let cache = root().join(".cache/cuda");
    let bin = cache.join("nvidia/cu13/bin");
    let find = || -> Option<PathBuf> {
        let ok = bin.join("nvcc").is_file() && bin.join("../nvvm/bin/cicc").is_file();
        ok.then(|| bin.clone())
    };
    if let Some(d) = find() {
        return Ok(Some(d));
    }
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .context("no nvcc on PATH and no python3 to install it from PyPI")?;
    run(Command::new(python)
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
        .arg(&cache)
        .args([
            "nvidia-cuda-nvcc==13.0.*",
            "nvidia-cuda-runtime==13.0.*",
            "nvidia-cuda-cccl==13.0.*",
            "nvidia-cuda-crt==13.0.*",
            "nvidia-nvvm==13.0.*",
        ]))?;
    find().map(Some).with_context(|| {
        format!(
            "installed the CUDA wheels into {} but found no bin/nvcc there",
            cache.display()
        )
    })
}

fn size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len())
}

pub(crate) fn gpu_check() -> Result<()> {
    let nvcc = nvcc_dir()?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p", "xlpatch-cli"]);
    for p in PLUGINS {
        cmd.args(["-p", p]);
    }
    cmd.args(["--features", "xlpatch-backend-candle/cuda"]);
    if let Some(dir) = &nvcc {
        let cuda = dir.parent().expect("bin has a parent");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.clone()];
        paths.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(paths)?);
        // nvcc.profile in bin/ finds the headers (include/, include/cccl) and cicc.
        cmd.env("CUDA_ROOT", cuda).env("CUDA_PATH", cuda);
    }
    if std::env::var_os("CUDA_COMPUTE_CAP").is_none() {
        cmd.env("CUDA_COMPUTE_CAP", COMPUTE_CAP);
    }
    run(&mut cmd)?;

    let release = target_dir()?.join("release");
    let kit = target_dir()?.join("gpu-check/bin");
    let plugins = kit.join("plugins");
    std::fs::create_dir_all(&plugins)
        .with_context(|| format!("cannot create {}", plugins.display()))?;
    let mut files = vec![(release.join("xlpatch"), kit.join("xlpatch"))];
    for p in PLUGINS {
        let file = format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            p.replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        );
        files.push((release.join(&file), plugins.join(&file)));
    }
    let mut total = 0;
    for (from, to) in &files {
        std::fs::copy(from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        // Debug sections are most of a release binary; the GPU machine needs none.
        let _ = Command::new("strip").arg(to).status();
        total += size(to)?;
    }
    if total > CARRY_LIMIT {
        bail!(
            "the kit is {} MiB, more than the {} MiB that travel to the GPU machine",
            total >> 20,
            CARRY_LIMIT >> 20
        );
    }
    let rel = kit
        .parent()
        .expect("kit has a parent")
        .strip_prefix(root())
        .unwrap_or(kit.parent().expect("kit has a parent"));
    println!(
        "built the GPU kit: {} ({:.1} MiB)\n\nRun on the GPU machine, from the repository \
         root, with `{}` carried (under 8 minutes):\n\n    python3 bench/gpu/check.py --kit {} \
         --out \"${{OUT:?set OUT to the output folder}}\"\n",
        kit.display(),
        total as f64 / (1 << 20) as f64,
        rel.display(),
        rel.display()
    );
    Ok(())
}
