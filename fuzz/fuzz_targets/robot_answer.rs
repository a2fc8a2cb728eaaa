#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hookbridge_tests::fuzz::run("robot_answer", data));
