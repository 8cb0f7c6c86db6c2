//! Cross-crate tests: the plugin ABI exercised through real dynamic libraries, the built-in
//! plugins as `cargo xtask build-plugins` builds them, and plugins written in C.
//!
//! These tests need the plugins built and ONNX Runtime fetched (`cargo xtask test` does that first) and a C compiler
//! (`cc`) for the C plugins; when either is missing they fail and say so.

mod backend;
mod c_abi;
mod dynamic;
mod loader;
mod snapshots;
mod support;
