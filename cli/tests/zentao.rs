//! `hookbridge zentao chats|users` against the fake ZenTao, with the key from a config file.
use std::process::Command;

use hookbridge_tests::fake_zentao::{CODE, FakeZenTao, GROUP, KEY, READER, READER_PASSWORD};

async fn run(fake: &FakeZenTao, args: &[&str]) -> (bool, String) {
    run_with(fake, "", args).await
}

/// With `extra` lines in the instance's section.
async fn run_with(fake: &FakeZenTao, extra: &str, args: &[&str]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("hookbridge-zentao-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("{}{}.toml", args.join("-"), extra.len()));
    let text = format!(
        "[connectors.zentao.main]\nbase_url = \"{}\"\ncode = \"{CODE}\"\nkey = \"plain:{KEY}\"\n{extra}\n",
        fake.url
    );
    std::fs::write(&config, text).unwrap();
    let bin = env!("CARGO_BIN_EXE_hookbridge");
    let config = config.to_str().unwrap().to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["zentao", "--config", &config])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn lists_group_chats_and_users() {
    let fake = FakeZenTao::start().await;
    let (ok, out) = run(&fake, &["chats"]).await;
    assert!(ok && out.contains(GROUP) && out.contains("运维群"), "{out}");
    let (ok, out) = run(&fake, &["users"]).await;
    assert!(
        ok && out.contains("管理员") && out.contains("李四"),
        "{out}"
    );
    let (ok, out) = run(&fake, &["users", "--gid", GROUP]).await;
    assert!(
        ok && out.contains("张三") && !out.contains("管理员"),
        "{out}"
    );
    assert!(
        out.contains("users_by = \"account\""),
        "says which column maps: {out}"
    );
    // ZenTao lists no members for a gid it does not know (and would send it to everyone).
    let (ok, out) = run(&fake, &["users", "--gid", "nope"]).await;
    assert!(!ok && out.contains("every active user"), "{out}");
}

/// ZenTao's im API lists ids and names only; with a directory login the REST API adds each
/// user's account, the column routes map by default.
#[tokio::test]
async fn users_show_accounts_through_a_directory_login() {
    let fake = FakeZenTao::start().await;
    let (ok, out) = run(&fake, &["users"]).await;
    assert!(ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["?", "3", "张三"]),
        "{out}"
    );
    assert!(
        out.contains("directory = "),
        "says how to see accounts: {out}"
    );
    let login =
        format!("directory = {{ account = \"{READER}\", password = \"plain:{READER_PASSWORD}\" }}");
    let (ok, out) = run_with(&fake, &login, &["users"]).await;
    assert!(ok, "{out}");
    for row in [
        ["admin", "1", "管理员"],
        ["zhangsan", "3", "张三"],
        ["lisi", "4", "李四"],
    ] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == row),
            "{row:?} in {out}"
        );
    }
    assert!(out.contains("take the ACCOUNT column"), "{out}");
    let wrong = format!("directory = {{ account = \"{READER}\", password = \"plain:wrong\" }}");
    let (ok, out) = run_with(&fake, &wrong, &["users"]).await;
    assert!(!ok && out.contains("directory"), "{out}");
}
