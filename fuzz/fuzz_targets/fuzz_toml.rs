#![no_main]
//! cargo fuzz run fuzz_toml — the TOML loader on arbitrary input.

use libfuzzer_sys::fuzz_target;

include!("body.rs");

fuzz_target!(|data: &[u8]| fuzz_one(data, Format::Toml));
