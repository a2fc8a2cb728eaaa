//! Shared by the CLI test binaries.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// `hookbridge serve --listen 127.0.0.1:0` with `args`; the child and its base URL once it
/// listens (the first line of its banner).
pub fn serve(args: &[&std::ffi::OsStr]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    (child, first.rsplit(' ').next().unwrap().to_owned())
}
