//! The connect-harness library: scenario engine, instrumented origins, reports.
