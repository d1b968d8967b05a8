//! A throwaway OpenLDAP server on loopback, for the LDAP sync tests.
//!
//! Each [`Slapd`] has its own directory under the temp dir with a `slapd.conf`, an mdb database
//! loaded offline with `slapadd`, and TLS material made with the `openssl` CLI at start (a test CA,
//! a server certificate it signed for `IP:127.0.0.1` and `DNS:localhost`, and an unrelated CA). The
//! server listens on two free loopback ports, `ldap://` and `ldaps://`, runs in the foreground as
//! the child of this process (`-d none`: errors only, into `slapd.log`), and gets SIGKILL when
//! the thread that started it ends, so no server outlives its test. `scripts/test` installs the
//! `slapd`, `ldap-utils` and `openssl` packages when they are missing; a system slapd (if any) on
//! port 389 plays no part.

#![allow(dead_code)]

#[allow(unused_imports)]
use roster::store::prelude::*;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
pub const ROOT_PW: &str = "admin-secret";
/// An ordinary account that reads everything but `userPassword`, without size or time limits.
pub const SYNC_DN: &str = "cn=sync,dc=example,dc=com";
pub const SYNC_PW: &str = "sync-secret";

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SCHEMA_DIR: &str = "/etc/ldap/schema";

pub struct Slapd {
    pub port: u16,
    pub ldaps_port: u16,
    pub dir: PathBuf,
    server: Option<Child>,
}

impl Slapd {
    /// Starts slapd on free loopback ports (ldap:// and ldaps://), loading `ldif` offline with
    /// slapadd first. `ldif` must hold the whole tree, suffix entry first: [`base_ldif`] plus the
    /// test's own entries.
    pub fn start(ldif: &str) -> Slapd {
        assert!(
            Path::new(SLAPD).exists() && Path::new(SLAPADD).exists(),
            "{SLAPD}/{SLAPADD} missing: install Debian's slapd and ldap-utils packages (scripts/test does)"
        );
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "roster-slapd-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db")).unwrap();
        // From here on, Drop removes the directory (and stops the server) even if a step panics.
        let (port, ldaps_port) = two_free_ports();
        let mut slapd = Slapd { port, ldaps_port, dir, server: None };
        make_certificates(&slapd.dir);
        std::fs::write(slapd.conf(), config(&slapd.dir)).unwrap();
        let data = slapd.dir.join("data.ldif");
        std::fs::write(&data, ldif).unwrap();
        // -q: no consistency checks (fast bulk load); -w: write the contextCSN for syncprov.
        let out = Command::new(SLAPADD)
            .args(["-q", "-w", "-f"])
            .arg(slapd.conf())
            .arg("-l")
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&data);
        slapd.launch(true);
        slapd
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:LDAPS_PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// PEM of the test CA that signed the server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// PEM of a CA unrelated to the server certificate.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    /// Applies LDIF changes online as the root DN (`ldapmodify -a`: records without a
    /// `changetype` are adds; `changetype: modify/delete/modrdn/moddn` records work as usual).
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-a", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW, "-o", "nettimeout=10"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ldapmodify (package ldap-utils)");
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ldapmodify failed ({}): {}{}\nLDIF:\n{ldif}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills the server with SIGKILL (no clean shutdown) and reaps it. The data stays.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// Starts the server again (after [`Slapd::kill`], or kills it first) on the same ports with
    /// the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch(false);
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slapd.conf")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("slapd.log")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Spawns slapd and waits until it answers a root DSE search. A server that exits because a
    /// port is taken (by someone else, meanwhile) is started again a few times, on new ports if
    /// `may_move`; any other exit fails with slapd's log.
    fn launch(&mut self, may_move: bool) {
        let limit = Duration::from_secs(30);
        let started = Instant::now();
        let mut attempts = 0;
        'spawn: loop {
            attempts += 1;
            let seen = self.log_text().len();
            let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
            let listen = format!("{}/ {}/", self.url(), self.ldaps_url());
            let mut cmd = Command::new(SLAPD);
            cmd.arg("-f").arg(self.conf()).args(["-h", &listen, "-d", "none"]);
            cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                        .map_err(std::io::Error::from)
                });
            }
            self.server = Some(cmd.spawn().expect("start slapd"));
            loop {
                if let Some(status) = self.server.as_mut().unwrap().try_wait().unwrap() {
                    self.server = None;
                    let busy = self.log_text()[seen..].contains("Address already in use");
                    assert!(
                        busy && attempts < 10 && started.elapsed() < limit,
                        "slapd exited ({status}) after {attempts} attempts; its log:\n{}",
                        self.log_text()
                    );
                    if may_move {
                        (self.port, self.ldaps_port) = two_free_ports();
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    continue 'spawn;
                }
                if self.answers() {
                    return;
                }
                assert!(
                    started.elapsed() < limit,
                    "slapd did not answer on {} within {limit:?}; its log:\n{}",
                    self.url(),
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Whether a root DSE search succeeds within a few seconds while the server runs. (ldapsearch
    /// has no client-side limit once connected, and something else on the port may accept and
    /// never answer.)
    fn answers(&mut self) -> bool {
        let mut search = Command::new("ldapsearch")
            .args(["-x", "-H", &self.url(), "-b", "", "-s", "base", "-o", "nettimeout=2", "-LLL", "1.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ldapsearch (package ldap-utils)");
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(status) = search.try_wait().unwrap() {
                return status.success();
            }
            let exited = self.server.as_mut().is_none_or(|s| s.try_wait().unwrap().is_some());
            if exited || Instant::now() > deadline {
                let _ = search.kill();
                let _ = search.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn two_free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

fn config(dir: &Path) -> String {
    let dir = dir.to_str().expect("a UTF-8 temp dir");
    let mut conf = String::new();
    for schema in ["core", "cosine", "inetorgperson", "nis"] {
        writeln!(conf, "include {SCHEMA_DIR}/{schema}.schema").unwrap();
    }
    write!(
        conf,
        r#"pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
moduleload refint

TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key

# The root DSE and the schema are public (clients discover controls and syntaxes there).
access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read

database mdb
maxsize 1073741824
directory {dir}/db
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
index objectClass,uid,cn,ou eq
index entryUUID,entryCSN eq
limits dn.exact="{SYNC_DN}" size=unlimited time=unlimited
# The root DN writes regardless of these; the sync account reads all but passwords.
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by dn.exact="{SYNC_DN}" read
  by * none

overlay syncprov
syncprov-checkpoint 1000 60
syncprov-sessionlog 10000
# Real deployments keep group members and managers pointing at renamed or moved entries.
overlay refint
refint_attributes member uniqueMember manager
"#
    )
    .unwrap();
    conf
}

/// Writes `ca.pem`, `server.pem`/`server.key` (signed by that CA) and `other-ca.pem` into `dir`.
pub fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl (package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca_ext =
        ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"];
    for (name, subject) in [("ca", "/CN=roster test CA"), ("other-ca", "/CN=roster unrelated CA")] {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let mut args = vec!["req", "-x509", "-days", "7", "-subj", subject, "-keyout", &key, "-out", &pem];
        args.extend(ec);
        args.extend(ca_ext);
        openssl(&args);
    }
    let mut args =
        vec!["req", "-new", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"];
    args.extend(ec);
    openssl(&args);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&Vec::from_iter(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 7 -extfile server.ext -out server.pem"
            .split(' '),
    ));
}

/// The suffix, `ou=people`, `ou=groups`, and the sync account entry.
pub fn base_ldif() -> String {
    format!(
        "dn: {SUFFIX}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n\
         dc: example\no: Example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: {SYNC_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: sync\n\
         userPassword: {SYNC_PW}\ndescription: directory sync account\n\n"
    )
}

const GIVEN: &str = "Ada Boris Chloe Dmitri Elena Farid Grace Hiro Ines Jonas Kemal Lena Mateo Nadia Oskar \
                     Priya Quentin Rosa Sven Tariq Ursula Viktor Wen Yara Zoltan";
const SURNAMES: &str = "Andersen Baptiste Costa Dubois Eriksson Fischer Garcia Horvath Ivanova Jansen Kowalski \
                        Lindqvist Moreau Nakamura Okafor Petrov Quinn Rossi Schmidt Tanaka Urban Varga Weber Xu \
                        Young Zimmermann Smith Novak Haddad";
const TITLES: &str = "Engineer,Senior Engineer,Manager,Analyst,Designer,Accountant,Director,Support Agent";

/// DNs of `units` organizational units under `ou=people`: a two-level tree, about √units
/// departments (`ou=deptNNNN`) with the remaining units as teams (`ou=teamNNNNNN`) spread over them.
fn unit_dns(units: usize) -> Vec<String> {
    let depts = if units == 0 { 0 } else { (units as f64).sqrt().ceil() as usize };
    let mut dns: Vec<String> = (1..=depts).map(|d| format!("ou=dept{d:04},ou=people,{SUFFIX}")).collect();
    for t in 0..units - depts {
        dns.push(format!("ou=team{:06},{}", t + 1, dns[t % depts]));
    }
    dns
}

/// An org tree with users and groups as LDIF, to follow [`base_ldif`]: `units` OUs nested under
/// `ou=people` (departments, then teams inside them), `users` inetOrgPerson entries
/// (`uid=userNNNNNN`) spread round-robin over the OUs (directly under `ou=people` when
/// `units == 0`), and `groups` groupOfNames (`cn=groupNNNNN,ou=groups`): user i is a member of
/// group i mod `groups`, and every tenth user of one more. A group without users gets the sync
/// account as its member (`member` is mandatory). Deterministic.
pub fn generate(units: usize, users: usize, groups: usize) -> String {
    let units = unit_dns(units);
    let mut out = String::with_capacity(units.len() * 100 + users * 330 + groups * 120 + users * 60);
    for dn in &units {
        let ou = &dn[3..dn.find(',').unwrap()];
        write!(out, "dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n\n").unwrap();
    }
    let given_names: Vec<&str> = GIVEN.split_whitespace().collect();
    let surnames: Vec<&str> = SURNAMES.split_whitespace().collect();
    let titles: Vec<&str> = TITLES.split(',').collect();
    let people = format!("ou=people,{SUFFIX}");
    let user_dn = |i: usize| {
        let parent = if units.is_empty() { &people } else { &units[i % units.len()] };
        format!("uid=user{:06},{parent}", i + 1)
    };
    for i in 0..users {
        let n = i + 1;
        let given = given_names[i % given_names.len()];
        let sn = surnames[(i / given_names.len() + i) % surnames.len()];
        write!(
            out,
            "dn: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
             objectClass: inetOrgPerson\nuid: user{n:06}\ncn: {given} {sn}\nsn: {sn}\ngivenName: {given}\n\
             mail: user{n:06}@example.com\nmobile: +1 555 {:03} {:04}\ntitle: {}\nemployeeNumber: {n}\n\n",
            user_dn(i),
            n / 10000 % 1000,
            n % 10000,
            titles[i * 7 % titles.len()],
        )
        .unwrap();
    }
    if groups > 0 {
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups];
        for i in 0..users {
            members[i % groups].push(i);
            let extra = (i / 10 * 7 + 3) % groups;
            if i % 10 == 0 && extra != i % groups {
                members[extra].push(i);
            }
        }
        for (g, list) in members.iter().enumerate() {
            write!(
                out,
                "dn: cn=group{:05},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: group{:05}\n",
                g + 1,
                g + 1
            )
            .unwrap();
            writeln!(out, "description: test group {}", g + 1).unwrap();
            if list.is_empty() {
                writeln!(out, "member: {SYNC_DN}").unwrap();
            }
            for &i in list {
                writeln!(out, "member: {}", user_dn(i)).unwrap();
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ldapsearch` bound as the sync account over `url`, with extra arguments and environment.
    fn search(url: &str, env: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
        Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                url,
                "-D",
                SYNC_DN,
                "-w",
                SYNC_PW,
                "-o",
                "nettimeout=10",
                "-o",
                "ldif-wrap=no",
            ])
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .stdin(Stdio::null())
            .output()
            .expect("run ldapsearch")
    }

    fn search_ok(slapd: &Slapd, args: &[&str]) -> String {
        let out = search(&slapd.url(), &[], args);
        assert!(out.status.success(), "ldapsearch {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn dns(ldif: &str) -> Vec<&str> {
        ldif.lines().filter_map(|l| l.strip_prefix("dn: ")).collect()
    }

    #[test]
    fn generate_is_deterministic_and_every_group_has_members() {
        assert_eq!(generate(5, 20, 2), generate(5, 20, 2));
        let ldif = generate(5, 20, 3);
        let all = dns(&ldif);
        assert_eq!(all.iter().filter(|d| d.starts_with("ou=")).count(), 5);
        assert_eq!(all.iter().filter(|d| d.starts_with("uid=")).count(), 20);
        assert!(
            all.contains(&"uid=user000019,ou=team000001,ou=dept0001,ou=people,dc=example,dc=com"),
            "{all:?}"
        );
        for entry in ldif.split("\n\n").filter(|e| e.contains("groupOfNames")) {
            assert!(entry.contains("\nmember: uid=user"), "{entry}");
        }
        // More groups than users: the empty ones get the sync account.
        assert!(generate(0, 1, 5).contains(&format!("member: {SYNC_DN}")));
    }

    #[test]
    fn serves_generated_tree_with_paging_and_tls() {
        let t = Instant::now();
        let slapd = Slapd::start(&(base_ldif() + &generate(5, 20, 2)));
        eprintln!("slapd started in {:?}", t.elapsed());

        // Paged search as the sync account (no size limit for it).
        let out =
            search_ok(&slapd, &["-E", "pr=10/noprompt", "-b", SUFFIX, "(objectClass=inetOrgPerson)", "mail"]);
        assert_eq!(dns(&out).len(), 20, "{out}");
        assert!(out.contains("mail: user000007@example.com"), "{out}");
        // userPassword is hidden from the sync account.
        let out = search_ok(&slapd, &["-b", SYNC_DN, "-s", "base", "*"]);
        assert!(out.contains("cn: sync") && !out.contains("userPassword"), "{out}");
        // Groups carry members.
        let out = search_ok(
            &slapd,
            &["-b", &format!("ou=groups,{SUFFIX}"), "(objectClass=groupOfNames)", "member"],
        );
        assert_eq!(dns(&out).len(), 2, "{out}");
        assert_eq!(out.matches("member: uid=user").count(), 21, "{out}");
        // syncprov answers a refreshOnly content sync.
        let out = search_ok(&slapd, &["-E", "sync=ro", "-b", SUFFIX, "(uid=user000001)", "uid"]);
        assert!(out.contains("uid: user000001"), "{out}");

        // LDAPS: the test CA verifies the server; an unrelated CA does not.
        let base = ["-b", SUFFIX, "-s", "base", "dc"];
        let ca = slapd.ca_file();
        let out = search(&slapd.ldaps_url(), &[("LDAPTLS_CACERT", &ca)], &base);
        assert!(out.status.success(), "ldaps with the right CA: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("dc: example"));
        // (Not checked with ldaps://localhost: libldap matches the name it gets back from a reverse
        // lookup of the peer address, which need not be "localhost".)
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName,basicConstraints", "-in"])
            .arg(slapd.dir.join("server.pem"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("IP Address:127.0.0.1, DNS:localhost") && text.contains("CA:FALSE"), "{text}");
        let other = slapd.other_ca_file();
        let out = search(&slapd.ldaps_url(), &[("LDAPTLS_CACERT", &other)], &base);
        assert!(!out.status.success(), "ldaps with an unrelated CA must fail");
    }

    #[test]
    fn modify_then_kill_and_restart_keeps_the_data() {
        let mut slapd = Slapd::start(&(base_ldif() + &generate(5, 20, 2)));
        let (port, ldaps_port) = (slapd.port, slapd.ldaps_port);
        slapd.modify(&format!(
            "dn: uid=newbie,ou=dept0002,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: newbie\n\
             cn: New Bie\nsn: Bie\nmail: newbie@example.com\n\n\
             dn: ou=dept0001,ou=people,{SUFFIX}\nchangetype: modrdn\nnewrdn: ou=engineering\ndeleteoldrdn: 1\n\n\
             dn: uid=user000002,ou=dept0002,ou=people,{SUFFIX}\nchangetype: modify\nreplace: title\n\
             title: Chief Tester\n-\n"
        ));
        let check = |slapd: &Slapd| {
            let out = search_ok(slapd, &["-b", SUFFIX, "(objectClass=inetOrgPerson)", "title"]);
            assert_eq!(dns(&out).len(), 21, "{out}");
            assert!(dns(&out).contains(&"uid=newbie,ou=dept0002,ou=people,dc=example,dc=com"), "{out}");
            // The rename moved the subtree: team000001 and its users now live under engineering.
            for dn in [
                "uid=user000001,ou=engineering,ou=people,dc=example,dc=com",
                "uid=user000004,ou=team000001,ou=engineering,ou=people,dc=example,dc=com",
            ] {
                assert!(dns(&out).contains(&dn), "{dn} missing: {out}");
            }
            assert!(!out.contains("ou=dept0001"), "{out}");
            assert!(out.contains("title: Chief Tester"), "{out}");
        };
        check(&slapd);

        slapd.kill();
        assert!(search(&slapd.url(), &[], &["-b", "", "-s", "base"]).status.code() != Some(0));
        slapd.restart();
        assert_eq!((slapd.port, slapd.ldaps_port), (port, ldaps_port));
        check(&slapd);
        // A restart of a running server works too.
        slapd.restart();
        check(&slapd);
    }

    /// The scale of the sync benchmarks: `cargo test --test it slapd::tests::big -- --ignored --nocapture`.
    #[test]
    #[ignore = "slow: loads 100k users"]
    fn big_load() {
        let t = Instant::now();
        let ldif = base_ldif() + &generate(5000, 100_000, 2000);
        let generated = t.elapsed();
        let slapd = Slapd::start(&ldif);
        let started = t.elapsed() - generated;
        let out = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-H", &slapd.url(), "-D", SYNC_DN, "-w", SYNC_PW, "-E", "pr=1000/noprompt"])
            .args(["-b", SUFFIX, "(objectClass=inetOrgPerson)", "1.1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let n = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("dn: ")).count();
        assert_eq!(n, 100_000);
        eprintln!(
            "LDIF ({} MB) generated in {generated:?}; slapadd + start in {started:?}; \
             paged search of all users in {:?}",
            ldif.len() >> 20,
            t.elapsed() - generated - started
        );
    }
}
