//! CI's fuzzing: every target runs each of its committed seeds, then a fixed number of
//! structure-aware mutations of them (the same inputs on every machine, from a fixed random
//! seed, so a failure reproduces; under a minute in all). Any panic fails the test and names the
//! target, the message and the input (written under `target/fuzz/ci/`). Regressions found by
//! longer runs live in `tests/regressions.rs`.

use std::time::Duration;

use xlpatch_fuzz::{Env, TARGETS, fuzz, repo_root};

/// Inputs per target, seeds included.
const INPUTS: u64 = 150;

#[test]
fn every_target_survives_its_seeds_and_their_mutations() {
    std::panic::set_hook(Box::new(|_| {}));
    let env = Env::new(&repo_root());
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for t in TARGETS {
        let stats = fuzz(t, &env, Duration::ZERO, INPUTS, 20, &mut |_| {});
        lines.push(format!(
            "{}: {} inputs, {} accepted",
            t.name, stats.execs, stats.accepted
        ));
        // A target whose parser refuses every seed tests only its first check.
        if stats.seeds_accepted.0 == 0 {
            failures.push(format!("{}: the parser refused every seed", t.name));
        }
        for (i, c) in stats.crashes.iter().enumerate() {
            let dir = repo_root().join("target/fuzz/ci").join(t.name);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("crash-{i}"));
            std::fs::write(&file, &c.input).unwrap();
            failures.push(format!(
                "{}: {} (input: {})",
                t.name,
                c.message,
                file.display()
            ));
        }
    }
    let _ = std::panic::take_hook();
    eprintln!("{}", lines.join("\n"));
    assert!(
        failures.is_empty(),
        "fuzz targets panicked:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_target_has_seeds_and_every_seed_folder_a_target() {
    for t in TARGETS {
        assert!(!xlpatch_fuzz::seeds(t).is_empty(), "{}", t.name);
    }
    for entry in std::fs::read_dir(repo_root().join("fuzz/corpus")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            xlpatch_fuzz::target(&name).is_some(),
            "fuzz/corpus/{name} belongs to no target"
        );
    }
}
