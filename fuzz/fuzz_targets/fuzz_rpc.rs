#![no_main]
//! cargo fuzz run fuzz_rpc — see body_rpc.rs.

use libfuzzer_sys::fuzz_target;

include!("body_rpc.rs");

fuzz_target!(|data: &[u8]| fuzz_one(data));
