#![no_main]
//! cargo fuzz run fuzz_extends — see body_extends.rs.

use libfuzzer_sys::fuzz_target;

include!("body_extends.rs");

fuzz_target!(|data: &[u8]| fuzz_one(data));
