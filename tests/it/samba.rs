//! A throwaway Active Directory domain controller for the AD sync tests: Samba's AD DC (Debian's
//! `samba`, `samba-ad-dc`, `ldb-tools`, `python3-samba`; `scripts/test` installs them).
//!
//! One domain per test process, provisioned into a temp dir (`samba-tool domain provision`, LDAP
//! only: no DNS, no SMB), loaded offline with `ldbadd` (an OU tree, users, a group of over 1,500
//! members, nested groups, a disabled user, an ordinary sync account), then served by `samba -F -M
//! single` on 127.0.0.1:389 (Samba's LDAP port is fixed; the tests that use it run one at a time
//! through [`Samba::shared`]). The server is the child of this process and gets SIGKILL with it.

#![allow(dead_code)]

#[allow(unused_imports)]
use roster::store::prelude::*;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub const REALM: &str = "EXAMPLE.TEST";
pub const BASE: &str = "DC=example,DC=test";
pub const ADMIN_PW: &str = "Adm1n-Secret!";
pub const SYNC_DN: &str = "CN=roster-sync,CN=Users,DC=example,DC=test";
pub const SYNC_PW: &str = "Sync-Secret-42!";
pub const PEOPLE: &str = "OU=People,DC=example,DC=test";
pub const GROUPS: &str = "OU=Groups,DC=example,DC=test";
/// Users loaded: u0000 .. u(USERS-1).
pub const USERS: usize = 2500;

pub struct Samba {
    pub dir: PathBuf,
    server: Option<Child>,
}

/// The shared domain controller, and the lock a test holds while it uses it.
pub fn shared() -> MutexGuard<'static, Samba> {
    static DC: OnceLock<Mutex<Samba>> = OnceLock::new();
    DC.get_or_init(|| Mutex::new(Samba::start())).lock().unwrap_or_else(|e| e.into_inner())
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Samba {
    fn start() -> Samba {
        assert!(
            std::path::Path::new("/usr/sbin/samba").exists(),
            "/usr/sbin/samba missing: install samba, samba-ad-dc, ldb-tools and python3-samba (scripts/test does)"
        );
        // The shared server lives as long as the test process (a static is never dropped): clear
        // what earlier processes left behind.
        for e in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("roster-samba-").and_then(|p| p.parse::<u32>().ok()) {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("roster-samba-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(
            Command::new("samba-tool").args([
                "domain",
                "provision",
                &format!("--targetdir={}", dir.display()),
                &format!("--realm={REALM}"),
                "--domain=EXAMPLE",
                "--server-role=dc",
                "--dns-backend=NONE",
                "--use-rfc2307",
                "--host-ip=127.0.0.1",
                &format!("--adminpass={ADMIN_PW}"),
                "--option=server services = ldap",
                "--option=interfaces = 127.0.0.1",
                "--option=bind interfaces only = yes",
            ]),
            "samba-tool domain provision",
        );
        let conf = dir.join("etc/smb.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let text = text.replacen("[global]", "[global]\n\tldap server require strong auth = no", 1);
        std::fs::write(&conf, text).unwrap();
        let ldif = dir.join("load.ldif");
        std::fs::write(&ldif, load_ldif()).unwrap();
        run(
            Command::new("ldbadd")
                .arg("-H")
                .arg(dir.join("private/sam.ldb"))
                .arg(&ldif)
                .args(["--relax", "--option=dsdb:schema update allowed=true"]),
            "ldbadd",
        );
        // The sync account: a password, "Replicating Directory Changes" on the domain, and list
        // and read on the Deleted Objects container (which AD grants administrators only).
        let sam = dir.join("private/sam.ldb");
        run(
            Command::new("samba-tool")
                .args(["user", "setpassword", "roster-sync", &format!("--newpassword={SYNC_PW}"), "-H"])
                .arg(&sam),
            "samba-tool user setpassword",
        );
        let out = Command::new("ldbsearch")
            .arg("-H")
            .arg(&sam)
            .args(["-b", SYNC_DN, "-s", "base", "objectSid"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let sid = text
            .lines()
            .find_map(|l| l.strip_prefix("objectSid: "))
            .unwrap_or_else(|| panic!("no objectSid for the sync account: {text}"))
            .trim()
            .to_owned();
        run(
            Command::new("samba-tool")
                .args(["dsacl", "set", &format!("--objectdn={BASE}")])
                .arg(format!("--sddl=(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;{sid})"))
                .arg("-H")
                .arg(&sam),
            "samba-tool dsacl set",
        );
        let acl = dir.join("acl.ldif");
        std::fs::write(
            &acl,
            format!(
                "dn: CN=Deleted Objects,{BASE}\nchangetype: modify\nreplace: nTSecurityDescriptor\n\
                 nTSecurityDescriptor: O:SYG:SYD:PAI(A;;RPWPCCDCLCRCWOWDSDSW;;;SY)(A;;RPLC;;;BA)(A;;RPLC;;;{sid})\n"
            ),
        )
        .unwrap();
        run(
            Command::new("ldbmodify").arg("-H").arg(&sam).arg("--show-deleted").arg(&acl),
            "ldbmodify (Deleted Objects)",
        );
        let mut dc = Samba { dir, server: None };
        dc.serve();
        dc
    }

    fn serve(&mut self) {
        let log = std::fs::File::create(self.dir.join("samba.log")).unwrap();
        let mut cmd = Command::new("/usr/sbin/samba");
        cmd.args(["-F", "-M", "single", "-s"])
            .arg(self.dir.join("etc/smb.conf"))
            .stdout(Stdio::null())
            .stderr(log);
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::other)
            });
        }
        self.server = Some(cmd.spawn().expect("start samba"));
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", 389)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(60), "samba did not listen on 389: {}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        "ldap://127.0.0.1:389".into()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("samba.log")).unwrap_or_default()
    }

    /// Runs `ldapmodify` as the domain administrator.
    pub fn modify(&self, ldif: &str) {
        use std::io::Write as _;
        let mut child = Command::new("ldapmodify")
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                &format!("CN=Administrator,CN=Users,{BASE}"),
                "-w",
                ADMIN_PW,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "ldapmodify: {}\n{ldif}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The AD DN of user `i`, in one of three departments under `OU=People`.
pub fn user_dn(i: usize) -> String {
    format!("CN=u{i:04},OU={},{PEOPLE}", dept(i))
}

pub fn dept(i: usize) -> &'static str {
    ["Sales", "Engineering", "Support"][i % 3]
}

fn load_ldif() -> String {
    let mut l = String::new();
    for ou in [PEOPLE, GROUPS] {
        writeln!(l, "dn: {ou}\nobjectClass: organizationalUnit\n").unwrap();
    }
    for d in ["Sales", "Engineering", "Support"] {
        writeln!(l, "dn: OU={d},{PEOPLE}\nobjectClass: organizationalUnit\n").unwrap();
    }
    for i in 0..USERS {
        // 512: a normal account; u0003 is disabled (514: ACCOUNTDISABLE).
        let uac = if i == 3 { 514 } else { 512 };
        writeln!(
            l,
            "dn: {}\nobjectClass: user\nsAMAccountName: u{i:04}\nuserPrincipalName: u{i:04}@example.test\n\
             displayName: User {i:04}\ngivenName: User\nsn: {i:04}\nmail: u{i:04}@example.test\n\
             userAccountControl: {uac}\n",
            user_dn(i)
        )
        .unwrap();
    }
    // The sync account: an ordinary user.
    writeln!(l, "dn: {SYNC_DN}\nobjectClass: user\nsAMAccountName: roster-sync\nuserAccountControl: 66048\n")
        .unwrap();
    // A group of every user (over 1,500: read with range retrieval), and nested groups:
    // Leads (u0000, u0001) inside Managers (u0002), inside All-Managers.
    writeln!(l, "dn: CN=Everyone,{GROUPS}\nobjectClass: group\nsAMAccountName: Everyone").unwrap();
    for i in 0..USERS {
        writeln!(l, "member: {}", user_dn(i)).unwrap();
    }
    writeln!(l).unwrap();
    writeln!(
        l,
        "dn: CN=Leads,{GROUPS}\nobjectClass: group\nsAMAccountName: Leads\nmember: {}\nmember: {}\n",
        user_dn(0),
        user_dn(1)
    )
    .unwrap();
    writeln!(
        l,
        "dn: CN=Managers,{GROUPS}\nobjectClass: group\nsAMAccountName: Managers\nmember: {}\nmember: CN=Leads,{GROUPS}\n",
        user_dn(2)
    )
    .unwrap();
    writeln!(
        l,
        "dn: CN=All-Managers,{GROUPS}\nobjectClass: group\nsAMAccountName: All-Managers\nmember: CN=Managers,{GROUPS}\n"
    )
    .unwrap();
    l
}
