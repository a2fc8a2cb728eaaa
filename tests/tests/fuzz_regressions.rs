//! Hostile inputs stay tests: each file under `tests/fuzz/<target>/` (written by hand: deep
//! nesting, keys twice, invalid UTF-8, lone surrogates, huge numbers, broken escapes; and every
//! crash a fuzzer ever found, copied there) and each fixture goes through its fuzz target again
//! and must not panic. `scripts/fuzz` runs the fuzzers themselves, seeded with these.

use hookbridge_tests::fuzz::{TARGETS, run};

#[test]
fn every_hostile_input_and_found_crash_stays_harmless() {
    let root = format!("{}/fuzz", env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for target in TARGETS {
        let Ok(dir) = std::fs::read_dir(format!("{root}/{target}")) else {
            continue;
        };
        for file in dir {
            let path = file.unwrap().path();
            run(target, &std::fs::read(&path).unwrap());
            replayed += 1;
        }
    }
    assert!(
        replayed >= TARGETS.len(),
        "tests/fuzz holds inputs for every target"
    );
}

#[test]
fn the_fixtures_go_through_their_targets() {
    let fixtures = format!("{}/fixtures", env!("CARGO_MANIFEST_DIR"));
    for file in std::fs::read_dir(&fixtures).unwrap() {
        let path = file.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let target = ["hap", "dms", "govding", "alertmanager", "generic"]
            .into_iter()
            .find(|t| name.starts_with(t))
            .unwrap_or("dingtalk_answer");
        run(target, &std::fs::read(&path).unwrap());
    }
}
