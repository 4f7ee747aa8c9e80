#![no_main]
//! cargo fuzz run fuzz_policy — see body_policy.rs.

use libfuzzer_sys::fuzz_target;

include!("body_policy.rs");

fuzz_target!(|data: &[u8]| fuzz_one(data));
