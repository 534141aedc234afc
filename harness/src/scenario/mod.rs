//! Scenarios as data: the model, byte templates, generated matrices and the loader.

pub mod h2;
pub mod load;
pub mod matrix;
pub mod model;
pub mod readme;
pub mod step;
pub mod template;

pub use load::{LoadError, LoadErrors, Loaded, embedded_sources, load, read_dir};
pub use model::{ClientTls, Level, Needs, Scenario, Sni, Transport};
pub use step::{OriginKind, Outcome, OutcomeVerdict, Step};
