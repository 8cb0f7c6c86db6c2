//! What to do about an error, where the fix is a command of this checkout (`cargo xtask ...`):
//! the libraries report what went wrong and which file it is about, the CLI knows how the
//! project is built.

use xlpatch_core::Error;

/// A hint for `e`, when one of its causes has a known fix.
pub(crate) fn hint(e: &anyhow::Error) -> Option<&'static str> {
    e.chain()
        .find_map(|cause| match cause.downcast_ref::<Error>()? {
            Error::Plugin(_) => Some(
                "the built-in plugins are built with `cargo xtask build-plugins`; --plugin-dir \
             and XLPATCH_PLUGIN_PATH name other directories",
            ),
            _ => None,
        })
}

/// `e` and its causes, each once (for errors printed outside `main`'s `{:#}`).
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_that_is_not_found_names_the_xtask_command() {
        let missing = xlpatch_core::abi::loader::LoadError::NotFound {
            name: "backend-ort".into(),
            available: vec![],
        };
        let e = anyhow::Error::new(Error::Plugin(missing)).context("opening the model");
        assert!(hint(&e).unwrap().contains("cargo xtask build-plugins"));
        assert_eq!(hint(&anyhow::anyhow!("something else")), None);
    }
}
