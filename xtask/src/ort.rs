//! `cargo xtask ort`: ONNX Runtime's shared library, from the `onnxruntime` wheel of the Python
//! package registry (the `ort` crate's own download goes to a CDN that is not reachable from
//! every machine). Idempotent: a library already in `.cache/ort` is reused.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{root, run};

/// The ONNX Runtime release the backend is built against.
pub(crate) const VERSION: &str = "1.32.0";

/// Where the library is kept: `.cache/ort/libonnxruntime.so.<VERSION>` (git-ignored).
pub(crate) fn library_path() -> PathBuf {
    root()
        .join(".cache/ort")
        .join(format!("libonnxruntime.so.{VERSION}"))
}

fn wheel_platform() -> Result<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Ok("manylinux_2_28_x86_64"),
        ("linux", "aarch64") => Ok("manylinux_2_28_aarch64"),
        (os, arch) => bail!(
            "no ONNX Runtime wheel is known for {os}/{arch}; install ONNX Runtime {VERSION} \
             yourself and set ORT_DYLIB_PATH to its shared library"
        ),
    }
}

/// Makes sure the library is in `.cache/ort` and returns its path.
pub(crate) fn ensure() -> Result<PathBuf> {
    let lib = library_path();
    if lib.is_file() {
        return Ok(lib);
    }
    let platform = wheel_platform()?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let pip_ok = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .output()
        .map(|o| o.status.success());
    match pip_ok {
        Err(_) => bail!(
            "`{python}` was not found: ONNX Runtime is fetched with pip, so install Python 3 \
             with pip (or set ORT_DYLIB_PATH to an ONNX Runtime {VERSION} library)"
        ),
        Ok(false) => bail!(
            "`{python} -m pip` does not work: install pip (e.g. `apt-get install python3-pip`), \
             or set ORT_DYLIB_PATH to an ONNX Runtime {VERSION} library"
        ),
        Ok(true) => {}
    }
    let dir = lib
        .parent()
        .expect("library path has a parent")
        .to_path_buf();
    let wheels = dir.join("wheel");
    std::fs::create_dir_all(&wheels)
        .with_context(|| format!("cannot create {}", wheels.display()))?;
    eprintln!("fetching ONNX Runtime {VERSION} ({platform}) with pip");
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .args(["--python-version", "3.11", "--platform", platform])
        .arg(format!("onnxruntime=={VERSION}"))
        .arg("-d")
        .arg(&wheels))
    .context("pip could not download the onnxruntime wheel")?;
    let wheel = std::fs::read_dir(&wheels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("onnxruntime-{VERSION}-")) && n.ends_with(".whl")
            })
        })
        .with_context(|| {
            format!(
                "pip reported success but no wheel is in {}",
                wheels.display()
            )
        })?;
    // A wheel is a zip; Python's zipfile saves a dependency on an unzip tool or crate.
    let tmp = dir.join(format!(".libonnxruntime.so.{VERSION}.tmp"));
    run(Command::new(&python)
        .arg("-c")
        .arg(
            "import sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             open(sys.argv[3], 'wb').write(z.read(sys.argv[2]))",
        )
        .arg(&wheel)
        .arg(format!("onnxruntime/capi/libonnxruntime.so.{VERSION}"))
        .arg(&tmp))
    .with_context(|| format!("cannot extract the library from {}", wheel.display()))?;
    std::fs::rename(&tmp, &lib)?;
    std::fs::remove_dir_all(&wheels).ok();
    eprintln!("ONNX Runtime {VERSION} ready at {}", lib.display());
    Ok(lib)
}
