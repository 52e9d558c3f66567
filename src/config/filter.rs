//! The `filter` blocks of adapters and replicators (SPEC section 6).

use serde::Deserialize;

/// SPEC section 6.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub exclude_subjects: Vec<String>,
    #[serde(default, rename = "match")]
    pub predicates: Vec<PredicateConfig>,
}

/// One `match` entry: a `field` or a `header`, and exactly one test.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredicateConfig {
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub exists: Option<bool>,
}
