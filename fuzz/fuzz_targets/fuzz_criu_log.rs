#![no_main]
//! cargo fuzz run fuzz_criu_log — see body_criu_log.rs.

use libfuzzer_sys::fuzz_target;

include!("body_criu_log.rs");

fuzz_target!(|data: &[u8]| fuzz_one(data));
