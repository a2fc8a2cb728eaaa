//! Shared by the CLI test binaries; each uses what it needs of it.
#![allow(dead_code)]
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

/// `hookbridge ARGS` run from the repository with nothing of this machine's environment but AWS
/// credentials and region for the fake AWS `endpoints` (`AWS_ENDPOINT_URL_<SERVICE>`).
pub fn aws_command(args: &[&str], endpoints: &[(&str, &str)]) -> std::process::Output {
    let home = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("aws-home");
    std::fs::create_dir_all(&home).unwrap();
    Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(args)
        .env_clear()
        .env("HOME", &home)
        .env("AWS_REGION", "cn-north-1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(endpoints.iter().copied())
        .output()
        .unwrap()
}
