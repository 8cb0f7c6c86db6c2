//! What to do about an error, where the fix is a command of this checkout (`cargo xtask ...`):
//! the libraries report what went wrong and which file it is about, the CLI knows how the
//! project is built.

use xlpatch_core::Error;

/// A hint for `e`, when one of its causes has a known fix.
pub(crate) fn hint(e: &anyhow::Error) -> Option<&'static str> {
    e.chain()
        .find_map(|cause| match cause.downcast_ref::<Error>()? {
            Error::NoOrtLibrary => Some(
                "run `cargo xtask ort` in the xlpatch checkout to fetch ONNX Runtime, or set \
             ORT_DYLIB_PATH",
            ),
            Error::Plugin(_) => Some(
                "the built-in plugins are built with `cargo xtask build-plugins`; --plugin-dir \
             and XLPATCH_PLUGIN_PATH name other directories",
            ),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_onnx_runtime_names_the_xtask_command() {
        let e = anyhow::Error::new(Error::NoOrtLibrary).context("opening the model");
        assert!(hint(&e).unwrap().contains("cargo xtask ort"));
        assert!(!Error::NoOrtLibrary.to_string().contains("xtask"));
        assert_eq!(hint(&anyhow::anyhow!("something else")), None);
    }
}
