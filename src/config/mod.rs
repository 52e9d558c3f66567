//! Configuration: the YAML schema, humane units, `${ENV}` expansion and validation.

pub mod schema;
pub mod units;
