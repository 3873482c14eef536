//! Fuzz target `load`: see `weft_fuzz::load::run` for what it does and asserts. Built by
//! cargo-fuzz (`--cfg fuzzing`); in ordinary builds it is an empty program.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_fuzz::load::run(data));

#[cfg(not(fuzzing))]
fn main() {}
