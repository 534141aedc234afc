//! Embeds every `scenarios/*.toml` file into the binary, so `connect-harness` runs without the source tree, and
//! the parser corpus files named in `fuzz/seeds.list` (the fuzzer's seed heads).
//!
//! `fuzz/seeds.list` was made with: every `fuzz/corpus/request_head` file of at most 600 bytes that starts with
//! `CONNECT ` and has an end of head (CRLF CRLF or LF LF), in name order.
use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../scenarios");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> =
        fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    files.sort();
    let mut out = String::from("/// Scenario files embedded at build time: (file name, contents).\n");
    out.push_str("pub static EMBEDDED: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().unwrap().to_string_lossy();
        out.push_str(&format!("    ({name:?}, include_str!({:?})),\n", f.display().to_string()));
    }
    out.push_str("];\n");
    fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("embedded.rs"), out).unwrap();
    seeds();
}

/// `seeds.rs`: `CORPUS: &[(&str, &[u8])]`, the listed corpus files (a listed file that is gone is an error).
fn seeds() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../fuzz");
    let list = root.join("seeds.list");
    println!("cargo:rerun-if-changed={}", list.display());
    let text = fs::read_to_string(&list).unwrap_or_default();
    let mut out = String::from("/// Parser corpus files that seed the fuzzer: (file name, contents).\n");
    out.push_str("pub static CORPUS: &[(&str, &[u8])] = &[\n");
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let f = root.join("corpus/request_head").join(name);
        assert!(f.is_file(), "fuzz/seeds.list names {name}, which is not in fuzz/corpus/request_head");
        println!("cargo:rerun-if-changed={}", f.display());
        out.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", f.display().to_string()));
    }
    out.push_str("];\n");
    fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("seeds.rs"), out).unwrap();
}
