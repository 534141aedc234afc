//! `scenarios/README.md` is the generated catalog (`connect-harness list --markdown`) and must be current.

use harness::scenario::{embedded_sources, load, readme};

#[test]
fn scenarios_readme_is_current() {
    let sources = embedded_sources();
    let all = load(&sources).unwrap();
    let want = readme::render(&sources, &all);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/README.md");
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "scenarios/README.md is out of date: regenerate with `UPDATE_README=1 cargo test -p harness --test it catalog`"
    );
    // Every scenario appears with its id and level.
    for l in &all {
        assert!(
            have.contains(&format!("| `{}` | {} |", l.scenario.id, l.scenario.level.as_str())),
            "{}",
            l.scenario.id
        );
    }
}

#[test]
fn requirement_catalog_rows_are_cited_or_explained() {
    use harness::scenario::readme::catalog;
    let all = load(&embedded_sources()).unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let doc = std::fs::read_to_string(format!("{root}/docs/requirements.md")).expect("docs/requirements.md");
    let problems = catalog::problems(&doc, &all);
    assert!(problems.is_empty(), "docs/requirements.md and the scenarios disagree:\n{}", problems.join("\n"));
    let (rows, _) = catalog::parse(&doc);
    assert!(rows.len() >= 100, "only {} rows parsed", rows.len());
    let want = catalog::coverage(&doc, &all);
    let path = format!("{root}/docs/coverage.md");
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "docs/coverage.md is out of date: `UPDATE_README=1 cargo test -p harness --test it catalog`");
}
