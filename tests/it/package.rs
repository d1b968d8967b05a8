//! The Debian package: `cargo deb` builds it from Cargo.toml's metadata (with the binary this
//! test run built), `dpkg -i` installs it on this machine, the service starts as its own account
//! (under systemd when systemd runs here, else as the unit would start it), answers its health
//! check, and `dpkg --purge` removes it but for the store.
//!
//! It changes the machine (a package, the `roster` account): it runs where the tests run as root,
//! as in CI, and puts the machine back at the end.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::{free_port, text};

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn mode_and_owner(path: &str) -> String {
    sh(Command::new("stat").args(["-c", "%a %U:%G", path])).trim().to_owned()
}

/// Puts the machine back even when an assertion fails.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("systemctl").args(["stop", "rosterd"]).stderr(Stdio::null()).status();
        let _ = Command::new("dpkg").args(["--purge", "roster"]).stdout(Stdio::null()).status();
        let _ = std::fs::remove_dir_all("/var/lib/roster");
        let _ = Command::new("userdel").arg("roster").stderr(Stdio::null()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debian_package_installs_starts_and_purges() {
    assert!(nix::unistd::Uid::effective().is_root(), "installing a package needs root (CI runs as root)");
    let has = |bin: &str| {
        Command::new("sh").args(["-c", &format!("command -v {bin}")]).output().unwrap().status.success()
    };
    assert!(
        has("cargo-deb"),
        "cargo-deb is missing: scripts/test installs it (cargo install cargo-deb --locked)"
    );
    assert!(has("systemd-sysusers"), "the package needs systemd installed (apt-get install systemd)");

    // The package, from the binary `cargo test` built (the dev profile: no second build).
    let out_dir = tempfile::tempdir().unwrap();
    let rosterd = Path::new(env!("CARGO_BIN_EXE_rosterd"));
    let target_dir = rosterd.parent().unwrap().parent().unwrap();
    let built = sh(Command::new("cargo")
        .args(["deb", "--no-build", "--profile", "dev", "--no-strip", "--fast", "-o"])
        .arg(out_dir.path())
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir));
    let deb =
        built.lines().rev().find(|l| l.ends_with(".deb")).expect("cargo deb printed no .deb path").to_owned();
    let listing = sh(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for f in [
        "./usr/bin/rosterd",
        "./usr/lib/systemd/system/rosterd.service",
        "./usr/lib/sysusers.d/rosterd.conf",
        "./usr/lib/tmpfiles.d/rosterd.conf",
        "./etc/roster/rosterd.toml",
    ] {
        assert!(listing.contains(f), "{f} is not in the package:\n{listing}");
    }
    assert!(sh(Command::new("dpkg-deb").args(["-f", &deb, "Depends"])).contains("systemd"));

    let _installed = Installed;
    let _ = Command::new("userdel").arg("roster").stderr(Stdio::null()).status();
    sh(Command::new("dpkg").arg("-i").arg(&deb).env("DEBIAN_FRONTEND", "noninteractive"));
    sh(Command::new("getent").args(["passwd", "roster"]));
    assert_eq!(mode_and_owner("/var/lib/roster"), "750 roster:roster");
    assert_eq!(mode_and_owner("/etc/roster"), "750 root:roster");
    assert_eq!(mode_and_owner("/etc/roster/rosterd.toml"), "640 root:roster");
    assert!(
        sh(Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", "roster"]))
            .contains("/etc/roster/rosterd.toml")
    );
    // The installed configuration (every key commented out) is valid as shipped.
    sh(Command::new("runuser").args([
        "-u",
        "roster",
        "--",
        "/usr/bin/rosterd",
        "--config",
        "/etc/roster/rosterd.toml",
        "check-config",
    ]));

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let healthy = || {
        Command::new("/usr/bin/rosterd")
            .args(["healthcheck", "--url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let wait_healthy = |what: &str| {
        let start = Instant::now();
        while !healthy() {
            assert!(start.elapsed() < Duration::from_secs(60), "{what} did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    if Path::new("/run/systemd/system").exists() {
        // systemd runs here: the real unit, with the listen address in a drop-in.
        let dropin = "/run/systemd/system/rosterd.service.d";
        std::fs::create_dir_all(dropin).unwrap();
        std::fs::write(
            format!("{dropin}/test.conf"),
            format!("[Service]\nEnvironment=ROSTER_HTTP__LISTEN=127.0.0.1:{port}\n"),
        )
        .unwrap();
        sh(Command::new("systemctl").arg("daemon-reload"));
        sh(Command::new("systemctl").args(["start", "rosterd"]));
        wait_healthy("rosterd under systemd");
        assert_eq!(
            sh(Command::new("systemctl").args(["show", "-p", "User", "--value", "rosterd"])).trim(),
            "roster"
        );
        sh(Command::new("systemctl").args(["stop", "rosterd"]));
        let _ = std::fs::remove_dir_all(dropin);
    } else {
        // No systemd here (a container): start it as the unit would, as roster in /var/lib/roster.
        sh(Command::new("systemd-analyze")
            .args(["verify", "/usr/lib/systemd/system/rosterd.service"])
            .env("SYSTEMD_LOG_LEVEL", "err"));
        use std::os::unix::process::CommandExt;
        let id = |flag: &str| sh(Command::new("id").args([flag, "roster"])).trim().parse::<u32>().unwrap();
        let child = Command::new("/usr/bin/rosterd")
            .args(["--config", "/etc/roster/rosterd.toml", "serve"])
            .uid(id("-u"))
            .gid(id("-g"))
            .current_dir("/var/lib/roster")
            .env("ROSTER_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_healthy("rosterd started as the unit does");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // The store went where the unit's state directory is, owned by the service's account.
    assert_eq!(mode_and_owner("/var/lib/roster/data/roster.db").split(' ').nth(1), Some("roster:roster"));

    sh(Command::new("dpkg").args(["--purge", "roster"]));
    assert!(!Path::new("/usr/bin/rosterd").exists());
    assert!(!Path::new("/usr/lib/systemd/system/rosterd.service").exists());
    assert!(Path::new("/var/lib/roster/data/roster.db").exists(), "purging keeps the store");
}

/// `ENV` pairs of a Containerfile's last stage (`ENV A=1 \ B=2` continued over lines).
fn container_env(file: &str) -> Vec<(String, String)> {
    let last = &file[file.rfind("\nFROM ").expect("a FROM")..];
    let joined = last.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// The `environment:` of one service in compose.yaml, `${VAR:?...}` and `${VAR:-default}`
/// filled from `vars`.
fn compose_env(file: &str, service: &str, vars: &[(&str, &str)]) -> Vec<(String, String)> {
    let start = file.find(&format!("\n  {service}:\n")).expect("the service");
    let block = &file[start + 1..];
    let env = &block[block.find("    environment:\n").expect("its environment") + 17..];
    let mut out = Vec::new();
    for line in env.lines() {
        let Some(kv) = line.strip_prefix("      ") else { break };
        let (k, mut v) = kv.split_once(": ").map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap();
        while let Some(i) = v.find("${") {
            let end = i + v[i..].find('}').unwrap();
            let inner = &v[i + 2..end];
            let name = inner.split([':', '-', '?']).next().unwrap();
            let default = inner.split_once(":-").map(|(_, d)| d.to_owned());
            let value = vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()).or(default);
            let value = value.unwrap_or_else(|| panic!("{name} is required and not given"));
            v.replace_range(i..=end, &value);
        }
        out.push((k, v));
    }
    out
}

/// What the Containerfile and compose.yaml say, run here (no container engine runs on this
/// machine): the run stage is non-root with a health check through `rosterd healthcheck`; its
/// environment starts rosterd as an unprivileged user and the health check passes exactly as
/// written; compose's environment for rosterd works against a real PostgreSQL with the role and
/// database compose's PostgreSQL service creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_image_and_compose_files_describe_a_working_service() {
    use std::os::unix::process::CommandExt;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let containerfile = std::fs::read_to_string(root.join("Containerfile")).unwrap();
    let froms: Vec<&str> = containerfile.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2 && froms[0].ends_with(" AS build"), "multi-stage: {froms:?}");
    let run_stage = &containerfile[containerfile.rfind("\nFROM ").unwrap()..];
    let user = run_stage.lines().find_map(|l| l.strip_prefix("USER ")).expect("USER in the run stage");
    assert!(user != "root" && user != "0", "{user}");
    let health = run_stage.lines().find(|l| l.starts_with("HEALTHCHECK ")).expect("a HEALTHCHECK");
    let cmd: Vec<String> = serde_json::from_str(&health[health.find("CMD [").unwrap() + 4..])
        .expect("HEALTHCHECK CMD in exec form");
    assert_eq!(cmd[..2], ["/usr/bin/rosterd".to_owned(), "healthcheck".to_owned()]);
    assert!(run_stage.contains("ENTRYPOINT [\"/usr/bin/rosterd\"]") && run_stage.contains("CMD [\"serve\"]"));
    let compose = std::fs::read_to_string(root.join("compose.yaml")).unwrap();
    assert!(compose.contains("dockerfile: Containerfile") && compose.contains("condition: service_healthy"));

    // The image's environment, with its paths mapped here: the config the image copies, the
    // store in a directory only the unprivileged user owns, the port free on this machine.
    // The image's files: the binary and the configuration, where an unprivileged user can read
    // them (as COPY puts them under /usr/bin and /etc/roster).
    let image = tempfile::tempdir().unwrap();
    let (bin, config) = (image.path().join("rosterd"), image.path().join("rosterd.toml"));
    std::fs::copy(env!("CARGO_BIN_EXE_rosterd"), &bin).unwrap();
    std::fs::copy(root.join("config/rosterd.toml"), &config).unwrap();
    std::fs::set_permissions(image.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let home = tempfile::tempdir().unwrap();
    const UID: u32 = 10001;
    nix::unistd::chown(home.path(), Some(UID.into()), Some(UID.into())).unwrap();
    let port = free_port();
    let env: Vec<(String, String)> = container_env(&containerfile)
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "ROSTER_CONFIG" => {
                assert_eq!(v, "/etc/roster/rosterd.toml");
                (k, config.display().to_string())
            }
            "ROSTER_HTTP__LISTEN" => {
                assert_eq!(v, "0.0.0.0:8080");
                (k, format!("0.0.0.0:{port}"))
            }
            "ROSTER_DATABASE__URL" => (k, format!("sqlite://{}/roster.db", home.path().display())),
            _ => (k, v),
        })
        .collect();
    assert!(env.iter().any(|(k, _)| k == "ROSTER_LOG__FORMAT"), "{env:?}");
    let clean = |c: &mut Command| {
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ROSTER_")) {
            c.env_remove(k);
        }
    };
    let healthcheck = |env: &[(String, String)]| {
        let mut c = Command::new(&bin);
        clean(&mut c);
        c.args(&cmd[1..]).envs(env.iter().cloned()).stdout(Stdio::null()).stderr(Stdio::null());
        c.status().unwrap().success()
    };
    let serve = |env: &[(String, String)], cwd: &Path| {
        let mut c = Command::new(&bin);
        clean(&mut c);
        c.arg("serve").envs(env.iter().cloned()).current_dir(cwd).uid(UID).gid(UID);
        c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let wait = |env: &[(String, String)], what: &str| {
        let start = Instant::now();
        while !healthcheck(env) {
            assert!(start.elapsed() < Duration::from_secs(60), "{what}: the health check never passed");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert!(!healthcheck(&env), "healthy before anything runs");
    let mut child = serve(&env, home.path());
    wait(&env, "the image's environment");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(home.path().join("roster.db").exists());

    // compose.yaml's environment for rosterd, against PostgreSQL set up as compose's service sets
    // it up (POSTGRES_USER roster with its password, POSTGRES_DB roster).
    let pg_port = crate::pg::shared_port();
    let db = format!("roster_compose_{}", std::process::id());
    crate::pg::psql(
        pg_port,
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'roster') THEN CREATE ROLE roster LOGIN PASSWORD 'compose-pw'; END IF; END$$",
    );
    crate::pg::psql(pg_port, &format!("CREATE DATABASE {db} OWNER roster"));
    let mut env: Vec<(String, String)> = container_env(&containerfile)
        .into_iter()
        .filter(|(k, _)| k != "ROSTER_DATABASE__URL")
        .map(|(k, v)| match k.as_str() {
            "ROSTER_CONFIG" => (k, config.display().to_string()),
            "ROSTER_HTTP__LISTEN" => (k, format!("0.0.0.0:{port}")),
            _ => (k, v),
        })
        .collect();
    for (k, v) in compose_env(&compose, "rosterd", &[("ROSTER_DB_PASSWORD", "compose-pw")]) {
        let v = v.replace("@postgres:5432/roster", &format!("@127.0.0.1:{pg_port}/{db}"));
        env.push((k, v));
    }
    assert!(
        env.iter()
            .any(|(k, v)| k == "ROSTER_DATABASE__URL" && v.starts_with("postgres://roster:compose-pw@")),
        "{env:?}"
    );
    let work = tempfile::tempdir().unwrap();
    nix::unistd::chown(work.path(), Some(UID.into()), Some(UID.into())).unwrap();
    let mut child = serve(&env, work.path());
    wait(&env, "compose's environment");
    child.kill().unwrap();
    child.wait().unwrap();
    crate::pg::psql(pg_port, &format!("DROP DATABASE {db} WITH (FORCE)"));
}
