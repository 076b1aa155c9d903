//! A response head (three bytes of limits and cut, then the head), parsed
//! whole and in two parts, then framed: the property is
//! tests/it/h1_fuzz.rs's, which `cargo test` runs too.

#![no_main]

#[allow(dead_code)]
#[path = "../../tests/it/h1_fuzz.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::response_head(data));
