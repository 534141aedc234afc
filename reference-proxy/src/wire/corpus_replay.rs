//! Replays every committed fuzz corpus and crash file through the fuzz entry points, so CI checks them on
//! stable without libFuzzer.

use std::path::{Path, PathBuf};

fn files(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if path.is_file() && !hidden {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let files = files(target);
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("fuzz input {} fails", path.display());
        }
    }
    files.len()
}

#[test]
fn request_head_corpus() {
    assert!(replay("request_head", super::fuzz::request_head) >= 10, "seed corpus missing");
}

#[test]
fn authority_corpus() {
    assert!(replay("authority", super::fuzz::authority) >= 10, "seed corpus missing");
}

#[test]
fn differential_httparse_corpus() {
    assert!(replay("differential_httparse", super::fuzz::differential_httparse) >= 10, "seed corpus missing");
}
