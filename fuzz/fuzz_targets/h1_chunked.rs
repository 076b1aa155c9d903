//! A chunked body (three bytes of limits and cut, then the body), decoded
//! whole and in two parts: the property is tests/it/h1_fuzz.rs's, which
//! `cargo test` runs too.

#![no_main]

#[allow(dead_code)]
#[path = "../../tests/it/h1_fuzz.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::chunked(data));
