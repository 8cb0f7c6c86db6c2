//! Every refusal of the loader, each with a real library: a file that is not a library, a
//! library without the entry symbol, an older ABI version, another ABI version with another
//! header layout, an unknown kind, a NULL function pointer, the wrong kind, a malformed
//! header, two plugins with the same name; and panics stopped at the boundary.

use xlpatch_abi::loader::{LoadError, PluginLibrary, Registry};
use xlpatch_abi::{PatchSite, PatchStrategy, PluginKind, StatusCode, TensorMut, TensorRef};

use crate::support::{builtin_file, compile_c_plugin, lib_path, open, test_plugin_dir};

fn c_lib(dir: &tempfile::TempDir, stem: &str, defines: &[&str]) -> std::path::PathBuf {
    let out = lib_path(dir.path(), stem);
    compile_c_plugin("plugin.c", defines, &out);
    out
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = lib_path(dir.path(), "not_a_plugin");
    std::fs::write(&fake, b"this is text, not ELF").unwrap();
    let err = PluginLibrary::open(&fake).unwrap_err();
    assert!(matches!(err, LoadError::NotALibrary { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&fake.display().to_string()), "{msg}");
    assert!(msg.contains("is not a loadable plugin library"), "{msg}");
}

#[test]
fn a_library_without_the_entry_symbol_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_lib(&dir, "no_entry", &["XLP_TEST_NO_ENTRY"]);
    let err = PluginLibrary::open(&lib).unwrap_err();
    assert!(matches!(err, LoadError::MissingEntry { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("does not export `xlpatch_plugin_entry`"),
        "{msg}"
    );
    assert!(msg.contains(&lib.display().to_string()), "{msg}");
}

#[test]
fn a_plugin_of_abi_v1_is_refused_with_name_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_lib(
        &dir,
        "old",
        &["XLP_TEST_ABI=1u", "XLP_TEST_NAME=\"metric-old\""],
    );
    let err = PluginLibrary::open(&lib).unwrap_err();
    match &err {
        LoadError::AbiMismatch { name, found, .. } => {
            assert_eq!(name, "metric-old");
            assert_eq!(*found, 1);
        }
        other => panic!("expected an ABI mismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("built for plugin ABI v1"), "{msg}");
    assert!(msg.contains("speaks ABI v2"), "{msg}");
    assert!(msg.contains("rebuild it"), "{msg}");
}

/// `tests/c/other_abi.c`: a v99 header that is only the frozen prefix, ending where an
/// unreadable page begins. Reading any v2 field of it before the version check would crash
/// this test binary.
#[test]
fn another_abi_layout_is_refused_reading_only_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let lib = lib_path(dir.path(), "abi_v99");
    compile_c_plugin("other_abi.c", &[], &lib);
    let err = PluginLibrary::open(&lib).unwrap_err();
    match &err {
        LoadError::AbiMismatch {
            name,
            version,
            found,
            path,
        } => {
            assert_eq!(name, "metric-abi-v99");
            assert_eq!(version, "9.9.0");
            assert_eq!(*found, 99);
            assert_eq!(path, &lib);
        }
        other => panic!("expected an ABI mismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("plugin \"metric-abi-v99\" 9.9.0") && msg.contains("built for plugin ABI v99"),
        "{msg}"
    );
}

#[test]
fn a_null_create_is_refused_naming_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_lib(&dir, "null_create", &["XLP_TEST_NULL_CREATE"]);
    let err = PluginLibrary::open(&lib).unwrap_err();
    match &err {
        LoadError::NullFunction { name, slot, .. } => {
            assert_eq!(name, "metric-c-sum");
            assert_eq!(*slot, "XlpPluginHeader.create");
        }
        other => panic!("expected a NULL function refusal, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("plugin \"metric-c-sum\"")
            && msg.contains("leaves `XlpPluginHeader.create` NULL"),
        "{msg}"
    );
    assert!(msg.contains(&lib.display().to_string()), "{msg}");
}

#[test]
fn a_null_table_entry_is_refused_naming_the_slot() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_lib(&dir, "null_compute", &["XLP_TEST_NULL_COMPUTE"]);
    let err = PluginLibrary::open(&lib).unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::NullFunction {
                slot: "XlpMetricVTable.compute",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("plugin \"metric-c-sum\" (")
            && err
                .to_string()
                .contains("leaves `XlpMetricVTable.compute` NULL"),
        "{err}"
    );
}

#[test]
fn an_unknown_kind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_lib(&dir, "odd_kind", &["XLP_TEST_KIND=9u"]);
    let err = PluginLibrary::open(&lib).unwrap_err();
    assert!(
        matches!(err, LoadError::UnknownKind { code: 9, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("unknown kind code 9"), "{err}");
}

#[test]
fn a_null_name_is_a_malformed_header() {
    let dir = tempfile::tempdir().unwrap();
    let lib = c_lib(&dir, "no_name", &["XLP_TEST_NULL_NAME"]);
    let err = PluginLibrary::open(&lib).unwrap_err();
    assert!(matches!(err, LoadError::BadHeader { .. }), "{err:?}");
    assert!(
        err.to_string().contains("`name` is a null pointer"),
        "{err}"
    );
}

#[test]
fn asking_for_the_wrong_kind_is_refused() {
    let metric = open("metric-concept-prob");
    assert_eq!(metric.kind(), PluginKind::Metric);
    let err = metric.patch_strategy(&[]).unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::WrongKind {
                found: PluginKind::Metric,
                expected: PluginKind::PatchStrategy,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("is a metric plugin, not a patch plugin"),
        "{err}"
    );
}

#[test]
fn two_plugins_with_the_same_name_are_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let original = builtin_file("xlpatch_patch_add");
    let first = a.path().join(original.file_name().unwrap());
    let second = lib_path(b.path(), "renamed_copy_of_patch_add");
    std::fs::copy(&original, &first).unwrap();
    std::fs::copy(&original, &second).unwrap();
    let (registry, refused) = Registry::discover(&[a.path().into(), b.path().into()]);
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.iter().next().unwrap().path(), first);
    assert_eq!(refused.len(), 1, "{refused:?}");
    let msg = refused[0].to_string();
    assert!(matches!(refused[0], LoadError::Duplicate { .. }), "{msg}");
    assert!(msg.contains("two plugins are named \"patch-add\""), "{msg}");
    assert!(msg.contains(&second.display().to_string()), "{msg}");
    assert!(msg.contains(&first.display().to_string()), "{msg}");
}

#[test]
fn discovery_reports_bad_files_and_keeps_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        builtin_file("xlpatch_patch_replace"),
        lib_path(dir.path(), "good"),
    )
    .unwrap();
    std::fs::write(lib_path(dir.path(), "junk"), b"junk").unwrap();
    std::fs::write(
        dir.path().join("README.txt"),
        b"not a library name: skipped",
    )
    .unwrap();
    let (registry, refused) = Registry::discover(&[dir.path().into()]);
    assert_eq!(
        registry.iter().map(|p| p.name()).collect::<Vec<_>>(),
        ["patch-replace"]
    );
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(matches!(refused[0], LoadError::NotALibrary { .. }));
    let err = registry.get("patch-nope").unwrap_err();
    assert!(
        err.to_string()
            .contains("no plugin named \"patch-nope\" (found: patch-replace)"),
        "{err}"
    );
}

#[test]
fn bad_parameters_are_refused_by_the_plugin() {
    let add = open("patch-add");
    let err = add.patch_strategy(&[("alpha", "abc")]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoadError::Create { .. }), "{msg}");
    assert!(
        msg.contains("alpha=\"abc\" is not a finite number"),
        "{msg}"
    );
    let err = add.patch_strategy(&[("alhpa", "1")]).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown parameter \"alhpa\" (known: alpha)"),
        "{err}"
    );
}

#[test]
fn a_panic_in_a_plugin_becomes_an_error_and_the_host_goes_on() {
    let lib = PluginLibrary::open(&lib_path(&test_plugin_dir(), "xlpatch_test_panic"))
        .unwrap_or_else(|e| panic!("{e}"));
    let strategy = lib.patch_strategy(&[]).unwrap();
    let mut hidden = vec![0f32; 4];
    let source = [1f32; 2];
    for _ in 0..2 {
        let err = strategy
            .apply(
                3,
                TensorMut::new(&mut hidden, &[1, 2, 2]).unwrap(),
                &[PatchSite {
                    batch: 0,
                    position: 1,
                }],
                TensorRef::new(&source, &[1, 2]).unwrap(),
            )
            .unwrap_err();
        assert_eq!(err.code, StatusCode::PANIC);
        assert!(
            err.message
                .contains("plugin \"test-panic\": plugin panicked: deliberate panic at layer 3"),
            "{err}"
        );
    }
    let err = lib.patch_strategy(&[("panic_in_create", "1")]).unwrap_err();
    match err {
        LoadError::Create { error, .. } => {
            assert_eq!(error.code, StatusCode::PANIC);
            assert!(
                error.message.contains("asked to panic in create"),
                "{error}"
            );
        }
        other => panic!("expected a create error, got {other:?}"),
    }
}

#[test]
fn shape_errors_cross_the_boundary_as_messages() {
    let replace = open("patch-replace").patch_strategy(&[]).unwrap();
    let mut hidden = vec![0f32; 8];
    let source = [1f32; 4];
    let err = replace
        .apply(
            0,
            TensorMut::new(&mut hidden, &[1, 2, 4]).unwrap(),
            &[PatchSite {
                batch: 0,
                position: 2,
            }],
            TensorRef::new(&source, &[1, 4]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(err.code, StatusCode::INVALID_ARGUMENT);
    assert!(
        err.message
            .contains("patch site (batch 0, position 2) is outside a [1, 2] batch"),
        "{err}"
    );
}
