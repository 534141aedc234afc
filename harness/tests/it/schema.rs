//! The committed JSON Schema of the report must match the types (regenerate with UPDATE_SCHEMA=1).

#[test]
fn report_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../reports/schema/report.schema.json");
    let generated = harness::report::schema_json();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "reports/schema/report.schema.json is out of date: run `UPDATE_SCHEMA=1 cargo test -p harness --test it schema` \
         (or `connect-harness schema > reports/schema/report.schema.json`)"
    );
}

#[test]
fn fuzz_report_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../reports/schema/fuzz-report.schema.json");
    let generated = harness::fuzz::output::schema_json();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "reports/schema/fuzz-report.schema.json is out of date: run `UPDATE_SCHEMA=1 cargo test -p harness --test it schema` \
         (or `connect-harness schema --fuzz > reports/schema/fuzz-report.schema.json`)"
    );
}

#[test]
fn bench_report_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../reports/schema/bench-report.schema.json");
    let generated = harness::bench::report::schema_json();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "reports/schema/bench-report.schema.json is out of date: run `UPDATE_SCHEMA=1 cargo test -p harness --test it schema` \
         (or `connect-harness schema --bench > reports/schema/bench-report.schema.json`)"
    );
}
