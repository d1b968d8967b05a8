#!/usr/bin/env python3
"""Helpers for scripts/bench-sync (standard library only).

  helper.py ldif UNITS USERS GROUPS          the whole tree as LDIF on stdout: the fixture's
                                             base_ldif() + generate(units, users, groups)
  helper.py changes ROUND UNITS USERS GROUPS 100 changes as ldapmodify LDIF on stdout: 60 modifies
                                             (title + mail), 20 adds, 10 deletes, 10 moves (modrdn
                                             to another OU); each ROUND (1-4) picks other users
  helper.py report FILE                      one line summarising a `sync --json` report
  helper.py field FILE KEY[.KEY...]          a field of that report, JSON-encoded (null if absent)

The tree mirrors tests/it/fixtures/slapd.rs `base_ldif()` and `generate()` entry for entry: about
sqrt(units) departments `ou=deptNNNN,ou=people`, the remaining units as teams `ou=teamNNNNNN`
spread over them, users `uid=userNNNNNN` round-robin over the units, groups `cn=groupNNNNN`
(user i in group i mod groups, every tenth user in one more).
"""

import json
import math
import sys

SUFFIX = "dc=example,dc=com"
SYNC_DN = "cn=sync,dc=example,dc=com"
SYNC_PW = "sync-secret"

GIVEN = ("Ada Boris Chloe Dmitri Elena Farid Grace Hiro Ines Jonas Kemal Lena Mateo Nadia Oskar "
         "Priya Quentin Rosa Sven Tariq Ursula Viktor Wen Yara Zoltan").split()
SURNAMES = ("Andersen Baptiste Costa Dubois Eriksson Fischer Garcia Horvath Ivanova Jansen Kowalski "
            "Lindqvist Moreau Nakamura Okafor Petrov Quinn Rossi Schmidt Tanaka Urban Varga Weber Xu "
            "Young Zimmermann Smith Novak Haddad").split()
TITLES = "Engineer,Senior Engineer,Manager,Analyst,Designer,Accountant,Director,Support Agent".split(",")


def base_ldif():
    return (
        f"dn: {SUFFIX}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n"
        f"dc: example\no: Example\n\n"
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
        f"dn: {SYNC_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: sync\n"
        f"userPassword: {SYNC_PW}\ndescription: directory sync account\n\n"
    )


def unit_dns(units):
    depts = 0 if units == 0 else math.ceil(math.sqrt(units))
    dns = [f"ou=dept{d:04},ou=people,{SUFFIX}" for d in range(1, depts + 1)]
    for t in range(units - depts):
        dns.append(f"ou=team{t + 1:06},{dns[t % depts]}")
    return dns


def user_dn(units, i):
    parent = units[i % len(units)] if units else f"ou=people,{SUFFIX}"
    return f"uid=user{i + 1:06},{parent}"


def person(dn, uid, n, i, mail, phone_n=None):
    given = GIVEN[i % len(GIVEN)]
    sn = SURNAMES[(i // len(GIVEN) + i) % len(SURNAMES)]
    p = n if phone_n is None else phone_n
    return (
        f"dn: {dn}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n"
        f"objectClass: inetOrgPerson\nuid: {uid}\ncn: {given} {sn}\nsn: {sn}\ngivenName: {given}\n"
        f"mail: {mail}\nmobile: +1 555 {p // 10000 % 1000:03} {p % 10000:04}\n"
        f"title: {TITLES[i * 7 % len(TITLES)]}\nemployeeNumber: {n}\n\n"
    )


def conflicting(i, conflicts_pct):
    """Whether user i shares its mobile and e-mail with user i-1 (conflicts_pct of the users)."""
    if conflicts_pct <= 0 or i == 0:
        return False
    return i % max(1, round(100 / conflicts_pct)) == 0


def ldif(units_n, users, groups, out, conflicts_pct=0.0):
    out.write(base_ldif())
    units = unit_dns(units_n)
    for dn in units:
        ou = dn[3:dn.index(",")]
        out.write(f"dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n\n")
    for i in range(users):
        n = i + 1
        if conflicting(i, conflicts_pct):
            # A shared office phone and a reused address: the previous user's mobile and mail.
            out.write(person(user_dn(units, i), f"user{n:06}", n, i, f"user{n - 1:06}@example.com", n - 1))
        else:
            out.write(person(user_dn(units, i), f"user{n:06}", n, i, f"user{n:06}@example.com"))
    if groups > 0:
        members = [[] for _ in range(groups)]
        for i in range(users):
            members[i % groups].append(i)
            extra = (i // 10 * 7 + 3) % groups
            if i % 10 == 0 and extra != i % groups:
                members[extra].append(i)
        for g, lst in enumerate(members):
            parts = [f"dn: cn=group{g + 1:05},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\n"
                     f"cn: group{g + 1:05}\ndescription: test group {g + 1}\n"]
            if not lst:
                parts.append(f"member: {SYNC_DN}\n")
            parts.extend(f"member: {user_dn(units, i)}\n" for i in lst)
            parts.append("\n")
            out.write("".join(parts))


ROUNDS = 4


def changes(rnd, units_n, users, groups, out):
    """60 modifies, 20 adds, 10 deletes, 10 moves: 100 LDAP write operations."""
    units = unit_dns(units_n)
    if not 1 <= rnd <= ROUNDS or users < 80 * ROUNDS + 14:
        sys.exit(f"changes: round 1..{ROUNDS} and at least {80 * ROUNDS + 14} users")
    # 80 users per round, spread over the tree, never the same user in two rounds.
    step = (users - 14) // (80 * ROUNDS)
    picks = [j * step + 13 for j in range((rnd - 1) * 80, rnd * 80)]
    modify, delete, move = picks[:60], picks[60:70], picks[70:80]
    for i in modify:
        n = i + 1
        out.write(f"dn: {user_dn(units, i)}\nchangetype: modify\nreplace: title\ntitle: Bench round {rnd}\n"
                  f"-\nreplace: mail\nmail: user{n:06}.r{rnd}@example.com\n-\n\n")
    for k in range(20):
        unit = units[(k * 250 + rnd) % len(units)] if units else f"ou=people,{SUFFIX}"
        uid = f"new{rnd}x{k + 1:04}"
        n = 900000 + rnd * 1000 + k
        out.write(person(f"uid={uid},{unit}", uid, n, k, f"{uid}@example.com").replace(
            "\nobjectClass: top", "\nchangetype: add\nobjectClass: top", 1))
    for i in delete:
        out.write(f"dn: {user_dn(units, i)}\nchangetype: delete\n\n")
    for i in move:
        target = units[(i + len(units) // 2 + 1) % len(units)] if units else f"ou=people,{SUFFIX}"
        out.write(f"dn: {user_dn(units, i)}\nchangetype: modrdn\nnewrdn: uid=user{i + 1:06}\n"
                  f"deleteoldrdn: 1\nnewsuperior: {target}\n\n")


def report(path):
    with open(path) as f:
        r = json.load(f)
    counts = r.get("counts") or {}
    tallies = {k: t for k, t in counts.items() if isinstance(t, dict)}
    c = "; ".join(
        f"{kind}: " + ", ".join(f"{k} {v}" for k, v in sorted(t.items()) if v and k != "held_before")
        for kind, t in sorted(tallies.items())
        if any(v for k, v in t.items() if k != "held_before")
    ) or "no changes"
    if counts.get("quarantined"):
        c += f"; {counts['quarantined']} values kept aside"
    print(f"outcome={r.get('outcome')} mode={r.get('mode')} entries_read={r.get('entries_read')} "
          f"plan={len(r.get('plan') or [])} errors={len(r.get('errors') or [])} "
          f"message={r.get('message')!r} counts=[{c}]")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ldif":
        units_n, users, groups = map(int, args[:3])
        ldif(units_n, users, groups, sys.stdout, float(args[3]) if len(args) > 3 else 0.0)
    elif cmd == "changes":
        changes(*map(int, args), sys.stdout)
    elif cmd == "report":
        report(args[0])
    elif cmd == "field":
        with open(args[0]) as f:
            value = json.load(f)
        for key in args[1].split("."):
            value = value.get(key) if isinstance(value, dict) else None
        print(json.dumps(value))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
