//! The `rosterd` command line, run as a user would.

use std::io::Write;
use std::process::Stdio;

use roster::directory::model::Source;

use crate::daemon::{rosterd, run, text};

fn check_config(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    run(rosterd(dir).args(args).envs(envs.iter().copied()))
}

#[test]
fn check_config_prints_the_effective_configuration_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(
        dir.path(),
        &["check-config"],
        &[
            ("ROSTER_DATABASE__URL", "postgres://roster:s3cr3t@db.internal:5432/roster"),
            ("ROSTER_NUMBERS__FIRST", "2000"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("postgres://roster:***@db.internal:5432/roster"), "{printed}");
    assert!(!printed.contains("s3cr3t"), "the password is redacted");
    assert!(printed.contains("first = 2000"), "env overrides the default");
    assert!(printed.contains("listen = \"127.0.0.1:8080\""), "defaults are shown");

    // A file, given after the subcommand, overridden by the environment.
    std::fs::write(
        dir.path().join("r.toml"),
        "[http]\nlisten = \"0.0.0.0:9000\"\n[numbers]\nfirst = 1000\nlast = 5000\n",
    )
    .unwrap();
    let out = check_config(
        dir.path(),
        &["check-config", "--config", "r.toml"],
        &[("ROSTER_NUMBERS__LAST", "6000")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("0.0.0.0:9000") && printed.contains("last = 6000"), "{printed}");

    // config/rosterd.toml is read when present; --config before the subcommand works too.
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/rosterd.toml"), "[enterprise]\nname = \"Default File Corp\"\n")
        .unwrap();
    let out = check_config(dir.path(), &["check-config"], &[]);
    assert!(text(&out.stdout).contains("Default File Corp"));
    let out = check_config(dir.path(), &["--config", "r.toml", "check-config"], &[]);
    assert!(!text(&out.stdout).contains("Default File Corp"), "an explicit file replaces the default one");

    // A secret from a file (systemd credentials).
    std::fs::write(dir.path().join("db-url"), "postgres://u:fromfile@h/db\n").unwrap();
    let out = check_config(dir.path(), &["check-config"], &[("ROSTER_DATABASE__URL_FILE", "db-url")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("postgres://u:***@h/db"));
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[(&str, &str)], &str, &str)] = &[
        (&[("ROSTER_HTTP__LISTN", "127.0.0.1:1")], "http.listn", "ROSTER_HTTP__LISTN"),
        (&[("ROSTER_HTTP__LISTEN", "not-an-address")], "http.listen", "ROSTER_HTTP__LISTEN"),
        (&[("ROSTER_LOG__FORMAT", "xml")], "log.format", "ROSTER_LOG__FORMAT"),
        (&[("ROSTER_NUMBERS__LAST", "5")], "numbers.last", "numbers.first"),
        (&[("ROSTER_DATABASE__URL", "mysql://x")], "database.url", "postgres"),
        (&[("ROSTER_ENTERPRISE__MAIL_DOMAIN", "nodots")], "enterprise.mail_domain", "domain"),
        (&[("ROSTER_DATABASE__URL_FILE", "/nonexistent/url")], "database.url_file", "cannot read"),
        (&[("ROSTER_DELIVERY__SCHEDULE", "every minute")], "delivery.schedule", "cron"),
        (&[("ROSTER_DELIVERY__LANGUAGE", "fr")], "delivery.language", "zh-CN"),
        (&[("ROSTER_DELIVERY__SMS__PROVIDER", "pigeon")], "delivery.sms.provider", "http or twilio"),
        (
            &[
                ("ROSTER_DELIVERY__SMS__PROVIDER", "http"),
                ("ROSTER_DELIVERY__SMS__HTTP__URL", "http://x"),
                ("ROSTER_DELIVERY__SMS__QUIET_HOURS", "late"),
            ],
            "delivery.sms.quiet_hours",
            "22:00-08:00",
        ),
        (
            &[("ROSTER_DELIVERY__SMTP__URL", "mail.example.com"), ("ROSTER_DELIVERY__SMTP__FROM", "a@b.c")],
            "delivery.smtp.url",
            "smtp://",
        ),
        (&[("ROSTER_MAILBOX__PROVIDER", "scim")], "mailbox.scim", "token"),
    ];
    for (env, key, hint) in cases {
        let out = check_config(dir.path(), &["check-config"], env);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains(&format!("`{key}`")), "{env:?} should name {key}: {err}");
        assert!(err.contains(hint), "{env:?} should mention {hint}: {err}");
    }
    std::fs::write(dir.path().join("bad.toml"), "[numbers]\nfirst = \"abc\"\n").unwrap();
    let out = check_config(dir.path(), &["check-config", "--config", "bad.toml"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`numbers.first`") && err.contains("bad.toml"), "{err}");
    std::fs::write(dir.path().join("typo.toml"), "[databse]\nurl = \"sqlite://x\"\n").unwrap();
    let out = check_config(dir.path(), &["check-config", "--config", "typo.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`databse`"), "{}", text(&out.stderr));
    // The daemon refuses to start on the same errors.
    let out = run(rosterd(dir.path()).arg("serve").env("ROSTER_HTTP__LISTEN", "nope"));
    assert_eq!(out.status.code(), Some(2));
    let out = check_config(dir.path(), &["check-config", "--config", "missing.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn tokens_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(rosterd(dir.path()).args(["token", "create", "--name", "entra"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout.lines().last().unwrap().trim().to_owned();
    assert!(token.starts_with("rst_") && token.len() == 68, "{stdout}");

    let list = text(&run(rosterd(dir.path()).args(["token", "list"])).stdout);
    assert!(list.contains("entra"), "{list}");
    assert!(!list.contains(&token[4..]), "the secret is never listed");
    let dup = run(rosterd(dir.path()).args(["token", "create", "--name", "entra"]));
    assert_eq!(dup.status.code(), Some(1));
    assert!(text(&dup.stderr).contains("already in use"), "{}", text(&dup.stderr));

    let revoke = run(rosterd(dir.path()).args(["token", "revoke", "entra"]));
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    let again = run(rosterd(dir.path()).args(["token", "revoke", "entra"]));
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("not found"));
    // The name stays reserved after revocation: a new client cannot become `scim:entra`.
    let reuse = run(rosterd(dir.path()).args(["token", "create", "--name", "entra"]));
    assert_eq!(reuse.status.code(), Some(1), "{}", text(&reuse.stdout));
    assert!(text(&reuse.stderr).contains("already in use"), "{}", text(&reuse.stderr));
    // Rotation is the way to give the source a new secret (a revoked token is live again).
    let rotate = run(rosterd(dir.path()).args(["token", "rotate", "entra"]));
    assert!(rotate.status.success(), "{}", text(&rotate.stderr));
    let rotated = text(&rotate.stdout).lines().last().unwrap().trim().to_owned();
    assert!(rotated.starts_with("rst_") && rotated != token, "{rotated}");
    let list = text(&run(rosterd(dir.path()).args(["token", "list"])).stdout);
    let row = list.lines().find(|l| l.starts_with("entra")).unwrap();
    assert!(row.trim_end().ends_with('-'), "live again, with a rotation time: {list}");
    assert_eq!(list.lines().filter(|l| l.starts_with("entra")).count(), 1, "{list}");
    let missing = run(rosterd(dir.path()).args(["token", "rotate", "nobody"]));
    assert_eq!(missing.status.code(), Some(1));
    // The database holds the hash, never the token.
    let db = std::fs::read(dir.path().join("data/roster.db")).unwrap();
    let wal = std::fs::read(dir.path().join("data/roster.db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle)
    );
}

#[tokio::test]
async fn reset_password_from_file_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "correct horse battery staple\n").unwrap();
    let out = run(rosterd(dir.path()).args(["admin", "reset-password", "--password-file", "pw"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("one-time"), "no one-time password when the admin sets one");

    let mut cfg = roster::config::Config::default();
    cfg.database.url = format!("sqlite://{}", dir.path().join("data/roster.db").display());
    let store = roster::store::open(&cfg.database).await.unwrap();
    let hash = store.super_password_hash().await.unwrap().unwrap();
    assert!(roster::secret::verify("correct horse battery staple", &hash));

    let mut child = rosterd(dir.path())
        .args(["admin", "reset-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("at least 12 characters"), "{}", text(&out.stderr));
    let unchanged = store.super_password_hash().await.unwrap().unwrap();
    assert_eq!(unchanged, hash, "a refused password changes nothing");
}

fn write_jsonl(path: &std::path::Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::File::create(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn member_line(name: &str) -> String {
    format!(r#"{{"op":"create_member","login_name":"{name}","display_name":"{name}"}}"#)
}

#[tokio::test]
async fn import_applies_batches_and_reports_the_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("changes.jsonl");
    let mut lines = vec![r#"{"op":"create_org_unit","name":"Sales"}"#.to_owned()];
    lines.extend((0..9).map(|i| member_line(&format!("u{i}"))));
    write_jsonl(&file, lines.clone());
    let out = run(rosterd(dir.path()).args(["import", "changes.jsonl", "--batch", "4"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("imported 10 changes"));

    let mut cfg = roster::config::Config::default();
    cfg.database.url = format!("sqlite://{}", dir.path().join("data/roster.db").display());
    let store = roster::store::open(&cfg.database).await.unwrap();
    let m = store.member_by_login("u0@example.com").await.unwrap().unwrap();
    assert_eq!(m.source, Source::import());
    assert_eq!(m.account_number, cfg.numbers.first);
    assert_eq!(store.counts().await.unwrap().members, 9);

    // A malformed line: nothing at all is imported.
    write_jsonl(&file, [member_line("v1"), "{\"op\":\"create_member\",".to_owned(), member_line("v2")]);
    let out = run(rosterd(dir.path()).args(["import", "changes.jsonl"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("line 2"), "{}", text(&out.stderr));
    assert_eq!(store.counts().await.unwrap().members, 9);

    // A refused change: earlier batches stay, its batch is rolled back, the line is named.
    write_jsonl(&file, [member_line("w1"), member_line("w2"), member_line("w3"), member_line("u0")]);
    let out = run(rosterd(dir.path())
        .args(["import", "-", "--batch", "2"])
        .stdin(std::fs::File::open(&file).unwrap()));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("line 4") && err.contains("login_name") && err.contains("applied 2 of 4"), "{err}");
    assert_eq!(store.counts().await.unwrap().members, 11);
    assert!(store.member_by_login("w3@example.com").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_never_share_a_number() {
    let url = crate::pg::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    // Migrate once first so both importers race on numbers, not on the schema.
    let out = run(rosterd(dir.path()).arg("migrate").env("ROSTER_DATABASE__URL", &url));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut children = Vec::new();
    for p in 0..2 {
        let file = dir.path().join(format!("p{p}.jsonl"));
        write_jsonl(&file, (0..150).map(|i| member_line(&format!("p{p}n{i}"))));
        children.push(
            rosterd(dir.path())
                .args(["import", file.to_str().unwrap(), "--batch", "10"])
                .env("ROSTER_DATABASE__URL", &url)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let mut cfg = roster::config::Config::default();
    cfg.database.url = url;
    let store = roster::store::open(&cfg.database).await.unwrap();
    let members = store.members_page(0, 1000).await.unwrap();
    let numbers: Vec<i64> = members.iter().map(|m| m.account_number).collect();
    let first = cfg.numbers.first;
    assert_eq!(numbers, (first..first + 300).collect::<Vec<_>>(), "300 distinct, consecutive numbers");
    // The two processes really did interleave (otherwise this test proves little).
    let owners: Vec<bool> = members.iter().map(|m| m.login_name.starts_with("p0")).collect();
    assert!(owners.windows(2).filter(|w| w[0] != w[1]).count() > 1, "imports did not overlap");
}

/// Token kinds (for the message archive): `--kind archive` makes an IM server's token (source
/// `im:NAME`), listed with its kind; an unknown kind or an adopting archive token is refused and
/// creates nothing. Names are unique over every kind.
#[test]
fn token_kinds_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(rosterd(dir.path()).args(["token", "create", "--name", "chat", "--kind", "archive"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).lines().last().unwrap().starts_with("rst_"));
    let bad = run(rosterd(dir.path()).args(["token", "create", "--name", "x", "--kind", "telnet"]));
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("use scim, archive, archive-read, sign-in, attendance or ldap"),
        "{}",
        text(&bad.stderr)
    );
    let adopt = run(rosterd(dir.path()).args([
        "token",
        "create",
        "--name",
        "y",
        "--kind",
        "archive",
        "--adopt-existing",
    ]));
    assert_eq!(adopt.status.code(), Some(1));
    assert!(text(&adopt.stderr).contains("only a SCIM client's token may adopt"), "{}", text(&adopt.stderr));
    let same = run(rosterd(dir.path()).args(["token", "create", "--name", "chat"]));
    assert_eq!(same.status.code(), Some(1), "a SCIM token cannot take an archive token's name");
    let list = text(&run(rosterd(dir.path()).args(["token", "list"])).stdout);
    let rows: Vec<&str> = list.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{list}");
    assert!(rows[0].starts_with("chat") && rows[0].contains(" archive "), "{list}");
}
