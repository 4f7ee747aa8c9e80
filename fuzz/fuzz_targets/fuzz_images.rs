#![no_main]
//! cargo fuzz run fuzz_images — see body_images.rs.

use libfuzzer_sys::fuzz_target;

include!("body_images.rs");

fuzz_target!(|data: &[u8]| fuzz_one(data));
