#!/usr/bin/env python3
"""Helpers of scripts/bench-scim (standard library only).

  jsonl N FILE                      users 1..N as `rosterd import` lines
  load-users BASE TOKEN N IDS       POST users 1..N over HTTP (4 connections); ids to IDS
  ids BASE TOKEN N IDS              page through /Users; the id of userNNNNNN on line NNNNNN
  group BASE TOKEN IDS G            POST one group with the first G users; prints its id
  members BASE TOKEN GROUP_ID       how many members the group has
  count BASE TOKEN                  totalResults of /Users
  cpu PID...                        CPU clock ticks: machine, kernel threads, each PID
  table RESULTS_DIR                 the Markdown table of the wrk results

BASE is the SCIM root, e.g. http://127.0.0.1:8080/scim/v2. Timings go to stderr and, as JSON,
to stdout where a caller wants them.
"""

import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def user_name(i):
    return f"user{i:06d}"


class Client:
    def __init__(self, base, token):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.prefix = u.hostname, u.port, u.path.rstrip("/")
        self.token = token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=900)

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/scim+json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/scim+json"
        self.conn.request(method, self.prefix + path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


def jsonl(n, path):
    with open(path, "w") as f:
        for i in range(1, n + 1):
            name = user_name(i)
            f.write(json.dumps({
                "op": "create_member",
                "login_name": name,
                "display_name": f"User {i}",
                "emails": [{"address": f"{name}@example.com", "kind": "work", "primary": True}],
            }, separators=(",", ":")) + "\n")


def load_users(base, token, n, ids_path, connections=4):
    ids = [None] * (n + 1)
    failures = []

    def work(k):
        c = Client(base, token)
        for i in range(1 + k, n + 1, connections):
            name = user_name(i)
            status, body = c.call("POST", "/Users", {
                "schemas": [USER],
                "userName": f"{name}@example.com",
                "displayName": f"User {i}",
                "emails": [{"value": f"{name}@example.com", "type": "work", "primary": True}],
            })
            if status != 201:
                failures.append((i, status, body))
                return
            ids[i] = body["id"]

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    if failures:
        sys.exit(f"creating users failed: {failures[:3]}")
    with open(ids_path, "w") as f:
        f.writelines(f"{i}\n" for i in ids[1:])
    print(json.dumps({"users": n, "seconds": round(elapsed, 2), "per_second": round(n / elapsed, 1)}))


def ids(base, token, n, ids_path):
    c = Client(base, token)
    found = {}
    start = 1
    t0 = time.monotonic()
    while True:
        status, body = c.call("GET", f"/Users?startIndex={start}&count=1000&attributes=userName")
        if status != 200:
            sys.exit(f"paging users failed: {status} {body}")
        page = body.get("Resources", [])
        for r in page:
            m = re.fullmatch(r"user(\d{6})@example\.com", r["userName"])
            if m:
                found[int(m.group(1))] = r["id"]
        start += len(page)
        if not page or start > body["totalResults"]:
            break
    missing = [i for i in range(1, n + 1) if i not in found]
    if missing:
        sys.exit(f"{len(missing)} users not found, e.g. {user_name(missing[0])}")
    with open(ids_path, "w") as f:
        f.writelines(f"{found[i]}\n" for i in range(1, n + 1))
    print(json.dumps({"seconds": round(time.monotonic() - t0, 2)}))


def group(base, token, ids_path, g):
    with open(ids_path) as f:
        members = [line.strip() for _, line in zip(range(g), f)]
    c = Client(base, token)
    t0 = time.monotonic()
    status, body = c.call("POST", "/Groups", {
        "schemas": [GROUP],
        "displayName": "Big",
        "members": [{"value": m} for m in members],
    })
    elapsed = time.monotonic() - t0
    if status != 201:
        sys.exit(f"creating the group failed: {status} {str(body)[:500]}")
    got = len(body.get("members") or [])
    if got != g:
        sys.exit(f"the group has {got} members, not {g}")
    print(json.dumps({"id": body["id"], "members": g, "seconds": round(elapsed, 2)}))


def members(base, token, gid):
    status, body = Client(base, token).call("GET", f"/Groups/{gid}")
    if status != 200:
        sys.exit(f"reading the group failed: {status} {str(body)[:300]}")
    print(len(body.get("members") or []))


def count(base, token):
    status, body = Client(base, token).call("GET", "/Users?count=0")
    if status != 200:
        sys.exit(f"counting users failed: {status} {body}")
    print(body["totalResults"])


def cpu(pids):
    """Clock ticks: the CPUs' user+nice+system time, all kernel threads', then each PID's.

    The rest of the user+system time (minus the server, wrk and kernel threads, which do the
    server's disk writes) is other processes': another build or test run on the machine.
    """
    with open("/proc/stat") as f:
        fields = f.readline().split()
    total = int(fields[1]) + int(fields[2]) + int(fields[3])
    kthreads = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[6]) & 0x00200000:  # PF_KTHREAD
            kthreads += int(rest[11]) + int(rest[12])
    own = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            own.append(int(rest[11]) + int(rest[12]))
        except OSError:
            own.append(0)
    print(total, kthreads, *own)


# --- the table -------------------------------------------------------------------------------

OPS = [
    ("filter", 'GET /Users?filter=userName eq "…"'),
    ("get", "GET /Users/{id}"),
    ("page", "GET /Users?startIndex=R&count=100"),
    ("create", "POST /Users"),
    ("patch", "PATCH /Groups/{big}: add 1 member"),
]


def load_result(d, server, op):
    try:
        with open(os.path.join(d, f"{server}-{op}.json")) as f:
            r = json.load(f)
    except FileNotFoundError:
        return None
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def ms(us):
    v = us / 1000
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def rate(r):
    return f"{r['rps']:,.0f}" if r["rps"] >= 10 else f"{r['rps']:.1f}"


def errors(r):
    n = r["status_errors"]
    sock = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    parts = []
    if n:
        parts.append(f"{n} non-2xx")
    if sock:
        parts.append(f"{sock} socket errors/timeouts")
    if r["requests"] < 200:
        parts.append(f"only {r['requests']} requests completed in the run; its percentiles are from those")
    if r.get("wraps"):
        parts.append(f"{r['wraps']} re-adds")
    return ", ".join(parts)


def table(d):
    lines = [
        "| operation | rosterd req/s | p50 ms | p99 ms | reference req/s | p50 ms | p99 ms | ratio | target | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    notes = []
    for op, label in OPS:
        a, b = load_result(d, "rosterd", op), load_result(d, "reference", op)
        if a is None:
            continue
        ratio = a["rps"] / b["rps"] if b and b["rps"] > 0 else None
        target, met = "—", "—"
        if op == "filter":
            target = "≥ 5,000/s, ≥ 10× ref, p99 < 20 ms"
            checks = [a["rps"] >= 5000, ratio is not None and ratio >= 10, a["p99_us"] < 20000]
            met = "yes" if all(checks) else "no (" + ", ".join(
                w for w, ok in zip(["rate", "ratio", "p99"], checks) if not ok) + ")"
        elif op == "create":
            target = "≥ 1,000/s"
            met = "yes" if a["rps"] >= 1000 else "no"
        ref = [rate(b), ms(b["p50_us"]), ms(b["p99_us"])] if b else ["n/a"] * 3
        lines.append("| " + " | ".join([
            label, rate(a), ms(a["p50_us"]), ms(a["p99_us"]), *ref,
            f"{ratio:,.1f}×" if ratio is not None else "n/a", target, met,
        ]) + " |")
        for server, r in (("rosterd", a), ("reference", b)):
            if r and errors(r):
                notes.append(f"- {label}, {server}: {errors(r)} ({r['requests']:,} requests)")
    print("\n".join(lines))
    cpu = ["", "CPU during each run, in % of one CPU (2 CPUs = 200%): the server, wrk, kernel threads "
           "(disk writes among others), other processes.", "",
           "| operation | rosterd | wrk | kernel | other | reference | wrk | kernel | other |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for op, label in OPS:
        row = [label]
        for server in ("rosterd", "reference"):
            r = load_result(d, server, op)
            c = (r or {}).get("cpu")
            row += [f"{c[k]}%" for k in ("server", "wrk", "kernel", "other")] if c else ["n/a"] * 4
        if row[1:5] != ["n/a"] * 4:
            cpu.append("| " + " | ".join(row) + " |")
    print("\n".join(cpu))
    if notes:
        print("\nErrors and caveats:\n" + "\n".join(notes))


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "jsonl":
        jsonl(int(args[0]), args[1])
    elif cmd == "load-users":
        load_users(args[0], args[1], int(args[2]), args[3])
    elif cmd == "ids":
        ids(args[0], args[1], int(args[2]), args[3])
    elif cmd == "group":
        group(args[0], args[1], args[2], int(args[3]))
    elif cmd == "members":
        members(args[0], args[1], args[2])
    elif cmd == "count":
        count(args[0], args[1])
    elif cmd == "cpu":
        cpu(args)
    elif cmd == "table":
        table(args[0])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
