//! Config loading (the pre-scan's bounds, YAML parsing, `${VAR}` expansion, validation) on
//! arbitrary bytes: no panic, and a file that loads validates again to the same result.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.yaml");
    let first = ferry::config::load_from_bytes(data, path);
    let second = ferry::config::load_from_bytes(data, path);
    assert_eq!(first.is_ok(), second.is_ok(), "loading is deterministic");
});
