//! Every input a fuzz target ever failed on (`fuzz/regressions/<target>/`), and the seed corpora
//! recorded from real clients (`fuzz/corpus/<target>/`), replayed through the same drivers the
//! libFuzzer targets run — so each stays a test of the ordinary suite.

use std::path::Path;

fn replay(kind: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(kind);
    for (target, drive) in weft_fuzz::TARGETS {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> =
            entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for file in files {
            if file.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            eprintln!("{target}: {}", file.display());
            drive(&data);
        }
    }
}

#[test]
fn every_input_that_ever_failed_passes() {
    replay("regressions");
}

#[test]
fn the_seed_corpora_pass() {
    replay("corpus");
}
