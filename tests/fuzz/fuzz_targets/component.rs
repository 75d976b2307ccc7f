#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nudge_tests::fuzz::component(data));
