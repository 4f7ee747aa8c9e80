#![no_main]
//! cargo fuzz run fuzz_stats — see body_stats.rs.

use libfuzzer_sys::fuzz_target;

include!("body_stats.rs");

fuzz_target!(|data: &[u8]| fuzz_one(data));
