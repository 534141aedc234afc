#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| reference_proxy::wire::fuzz::request_head(data));
