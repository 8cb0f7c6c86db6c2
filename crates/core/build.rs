//! Records `target/<profile>/plugins` of this build as `XLPATCH_BUILD_PLUGIN_DIR`, the last
//! entry of the plugin search path (`src/plugins.rs`): an `xlpatch` binary copied out of the
//! build (`cargo install --path crates/cli`) then still finds the plugins of its checkout.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // OUT_DIR is `<target>/<profile>/build/<package>-<hash>/out`.
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Some(profile) = out.ancestors().nth(3) {
        println!(
            "cargo:rustc-env=XLPATCH_BUILD_PLUGIN_DIR={}",
            profile.join("plugins").display()
        );
    }
}
