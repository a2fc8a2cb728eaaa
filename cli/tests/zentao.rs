//! `hookbridge zentao chats|users` against the fake ZenTao, with the key from a config file.
use std::process::Command;

use hookbridge_tests::fake_zentao::{CODE, FakeZenTao, GROUP, KEY};

async fn run(fake: &FakeZenTao, args: &[&str]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("hookbridge-zentao-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("{}.toml", args.join("-")));
    let text = format!(
        "[connectors.zentao.main]\nbase_url = \"{}\"\ncode = \"{CODE}\"\nkey = \"plain:{KEY}\"\n",
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
