"""make bench: what one credential costs, next to the AWS CLI, measured in
one run against the harness services (real slapd over TLS, the ticket and
STS emulators over HTTPS with Nagle off) and the real binaries.  Printed
as a table of medians and ratios and saved as JSON
(bench/results/latest.json) to compare over time.

Measurements (n = runs; medians unless said otherwise):

  helper, cache cold     pmpgate-credentials for a new ticket each time
                         (decide, ledger, AssumeRole at the STS emulator);
                         the daemon is warm (connections up)
  helper, cache warm     the same ticket again: credentials from the cache
  aws sts assume-role    /usr/bin/aws against the same STS emulator with
                         the base credentials (what a script would do
                         without pmpgate)
  decide with delays     the directory behind a proxy adding 100 ms to
                         every answer, the ticket service answering 100 ms
                         late, each alone and both: the decision waits for
                         the slower, not the sum
  group size             decision with the role group holding 100 000
                         members vs 10, in a directory loaded with slapadd
  throughput             issuances/s with 32 concurrent clients (cache
                         warm; and cold, each request a new ticket), p99
  helper process         peak RSS (wait4) and instructions (callgrind)
  audit verify           `pmpgate audit verify` records/s on 1 000 000
                         signed records
  PAM account            pamtester acct_mgmt under pam_wrapper, whole
                         process, next to a stack of pam_permit alone
  connections            TCP connections the daemon opened to the ticket
                         service and STS for many requests (reuse)

Process timings come from bench/spawn.c (fork, setuid, exec, wait4: no
interpreter in the measured path).  Environment knobs: BENCH_COLD,
BENCH_WARM, BENCH_CLI, BENCH_DELAY_N, BENCH_GROUP_N, BENCH_GROUP_SIZE,
BENCH_TPUT_SECONDS, BENCH_PAM, BENCH_AUDIT_RECORDS (0 skips).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "harness"))
sys.path.insert(0, HERE)

import common  # noqa: E402
import daemon  # noqa: E402
import slapd as slapdmod  # noqa: E402
import world as worldmod  # noqa: E402

PM = "procurement-manager"
ALICE_UID = daemon.USERS["alice"]
LIBDIR = "/usr/lib/x86_64-linux-gnu"
PAM_WRAPPER = os.path.join(LIBDIR, "libpam_wrapper.so")
SECURITY = os.path.join(LIBDIR, "security")


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def stats(xs):
    return {"n": len(xs), "median": statistics.median(xs), "p90": pct(xs, 90),
            "p99": pct(xs, 99), "min": min(xs), "max": max(xs)}


class Bench:
    def __init__(self, tmp):
        self.tmp = tmp
        self.rows = []          # printed table
        self.data = {}          # JSON
        self.notes = []
        self.ids = 0
        self.spawn = os.path.join(tmp, "spawn")
        subprocess.run(["cc", "-O2", "-o", self.spawn,
                        os.path.join(HERE, "spawn.c")], check=True)

    def new_id(self):
        self.ids += 1
        return f"CHG{9000000 + self.ids:07d}"

    def row(self, name, value, unit, goal="", met=None, key=None, extra=None):
        self.rows.append((name, value, unit, goal, met))
        if key:
            d = {"value": value, "unit": unit}
            if goal:
                d["goal"] = goal
                d["met"] = met
            d.update(extra or {})
            self.data[key] = d

    def run_spawn(self, uid, n, argv, env):
        """[(ms, maxrss_kib, status)] of N runs of ARGV as UID."""
        r = subprocess.run([self.spawn, str(uid), str(uid), str(n)] + argv,
                           env=env, capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"spawn: {r.stderr}")
        out = []
        for line in r.stdout.split("\n"):
            if line.strip():
                us, rss, st = line.split()
                out.append((int(us) / 1000.0, int(rss), int(st)))
        return out


# ---- the world --------------------------------------------------------------

def start_world(tmp):
    w = worldmod.World(tmp)
    w.overrides = {"daemon": {"workers": "8", "max_per_uid": "64"}}
    w.start()
    return w


def reload(w, **sections):
    w.configure(**sections)
    w.daemon.reload()
    time.sleep(0.4)


class Proxy:
    """bench/tcpproxy.py in front of HOST:PORT (a subprocess)."""

    def __init__(self, tmp, name, target, delay_ms):
        self.port_file = os.path.join(tmp, f"{name}.port")
        self.stats_file = os.path.join(tmp, f"{name}.stats")
        self.proc = common.Proc(
            ["/usr/bin/python3", os.path.join(HERE, "tcpproxy.py"),
             "--target", target, "--delay-ms", str(delay_ms),
             "--port-file", self.port_file, "--stats-file", self.stats_file],
            os.path.join(tmp, f"{name}.log"))

        def ready():
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    return int(f.read().strip() or 0)
            return None
        self.port = common.wait_for(ready, what=f"proxy {name}")

    def stats(self):
        with open(self.stats_file) as f:
            return json.load(f)

    def stop(self):
        self.proc.stop()


def port_of(url):
    rest = url.split("://", 1)[1]
    hostport = rest.split("/", 1)[0]
    return int(hostport.rsplit(":", 1)[1])


# ---- measurements -------------------------------------------------------------

def bench_issuance(b, w):
    env = {"PATH": "/usr/bin:/bin"}
    cold_n = env_int("BENCH_COLD", 30)
    warm_n = env_int("BENCH_WARM", 200)
    cli_n = env_int("BENCH_CLI", 10)

    # warm the daemon (directory, ticket and STS connections)
    t = b.new_id()
    w.ticket(t)
    assert w.credentials("alice", PM, t).returncode == 0

    cold = []
    for _ in range(cold_n):
        t = b.new_id()
        w.ticket(t)
        (ms, rss, st), = b.run_spawn(ALICE_UID, 1, w.helper_argv(PM, t), env)
        assert st == 0, st
        cold.append(ms)
    t = b.new_id()
    w.ticket(t)
    b.run_spawn(ALICE_UID, 1, w.helper_argv(PM, t), env)
    runs = b.run_spawn(ALICE_UID, warm_n, w.helper_argv(PM, t), env)
    assert all(st == 0 for _, _, st in runs), runs
    warm = [ms for ms, _, _ in runs]
    rss = max(r for _, r, _ in runs)
    start = [ms for ms, _, _ in b.run_spawn(
        ALICE_UID, warm_n, [daemon.binary("pmpgate-credentials"), "--help"],
        env)]

    # the AWS CLI doing the same AssumeRole itself
    home = os.path.join(b.tmp, "clihome")
    os.makedirs(home, exist_ok=True)
    tc = b.new_id()
    cenv = {"PATH": "/usr/bin:/bin", "HOME": home,
            "AWS_ACCESS_KEY_ID": w.sts.base_key_id,
            "AWS_SECRET_ACCESS_KEY": w.sts.base_secret,
            "AWS_CA_BUNDLE": w.ca.cert, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": "",
            "AWS_CONFIG_FILE": os.path.join(home, "none"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none")}
    cli = ["/usr/bin/aws", "sts", "assume-role",
           "--role-arn", w.sts.role_arn(PM),
           "--role-session-name", f"alice@{tc}", "--source-identity", "alice",
           "--tags", f"Key=pmpgate:ticket,Value={tc}",
           "Key=pmpgate:user,Value=alice",
           "--duration-seconds", "3600", "--endpoint-url", w.sts.url]
    runs = b.run_spawn(0, cli_n, cli, cenv)
    assert all(st == 0 for _, _, st in runs), runs
    cli_ms = [ms for ms, _, _ in runs]

    # the daemon's side alone, over the socket
    dec, iss = [], []
    req = {"v": 1, "op": "decide", "user": "alice", "role": PM, "ticket": t}
    for _ in range(warm_n):
        s = time.perf_counter()
        assert w.daemon.request(req)["status"] == "allow"
        dec.append((time.perf_counter() - s) * 1000)
    req = dict(req, op="issue")
    for _ in range(warm_n):
        s = time.perf_counter()
        assert w.daemon.request(req)["status"] == "allow"
        iss.append((time.perf_counter() - s) * 1000)

    c, wm, a = (statistics.median(cold), statistics.median(warm),
                statistics.median(cli_ms))
    b.data["issuance"] = {"helper_cold_ms": stats(cold),
                          "helper_warm_ms": stats(warm),
                          "aws_cli_ms": stats(cli_ms),
                          "helper_start_ms": stats(start),
                          "decide_socket_ms": stats(dec),
                          "issue_cached_socket_ms": stats(iss)}
    b.row("aws sts assume-role (CLI, same STS)", a, "ms")
    b.row("helper issuance, cache cold", c, "ms")
    b.row("  ratio cold / CLI", c / a, "", "<= 0.0100", c / a <= 0.01,
          key="ratio_cold")
    b.row("helper issuance, cache warm", wm, "ms")
    b.row("  ratio warm / CLI", wm / a, "", "<= 0.0050", wm / a <= 0.005,
          key="ratio_warm")
    b.row("  helper process start (--help)", statistics.median(start), "ms")
    b.row("  decide over the socket", statistics.median(dec), "ms")
    b.row("  issue over the socket, cached", statistics.median(iss), "ms")
    return rss


def bench_connections(b, w):
    """Connections opened to the ticket service and STS for many
    requests: reuse (keep-alive, one per worker at most)."""
    n = env_int("BENCH_CONN_N", 40)
    tp = Proxy(b.tmp, "ticket-count", f"127.0.0.1:{port_of(w.tickets.base)}",
               0)
    sp = Proxy(b.tmp, "sts-count", f"127.0.0.1:{port_of(w.sts.url)}", 0)
    try:
        turl = w.tickets.url_servicenow.replace(
            f":{port_of(w.tickets.base)}/", f":{tp.port}/")
        reload(w, tickets={"url": turl},
               aws={"sts_endpoint": f"https://127.0.0.1:{sp.port}"})
        for _ in range(n):
            t = b.new_id()
            w.ticket(t)
            r = w.credentials("alice", PM, t)
            assert r.returncode == 0, r.stderr
        ts, ss = tp.stats(), sp.stats()
    finally:
        reload(w)
        tp.stop()
        sp.stop()
    b.data["connections"] = {"requests": n, "ticket_connections":
                             ts["connections"], "sts_connections":
                             ss["connections"]}
    b.row(f"connections opened for {n} issuances: tickets",
          ts["connections"], "conn")
    b.row(f"connections opened for {n} issuances: STS", ss["connections"],
          "conn")


def warm_up(w, req, workers=8):
    """Send REQ from WORKERS threads at once, a few times, so that every
    worker has (re)connected to the directory before timing starts (a
    reload makes each worker reconnect on its next request)."""
    def one():
        for _ in range(3):
            w.daemon.request(req, timeout=60)
    threads = [threading.Thread(target=one) for _ in range(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def decide_ms(w, ticket, n):
    req = {"v": 1, "op": "decide", "user": "alice", "role": PM,
           "ticket": ticket}
    warm_up(w, req)
    xs = []
    for _ in range(n):
        s = time.perf_counter()
        ans = w.daemon.request(req)
        xs.append((time.perf_counter() - s) * 1000)
        assert ans["status"] == "allow", ans
    return statistics.median(xs)


def bench_delays(b, w):
    n = env_int("BENCH_DELAY_N", 10)
    fast, slow = b.new_id(), b.new_id()
    w.ticket(fast)
    w.ticket(slow, delay=0.1)
    base = decide_ms(w, fast, n)
    tick = decide_ms(w, slow, n)
    proxy = Proxy(b.tmp, "ldap-delay", f"127.0.0.1:{w.slapd.tls_port}", 100)
    try:
        reload(w, directory={"uri": f"ldaps://127.0.0.1:{proxy.port}/"})
        warm_up(w, {"v": 1, "op": "decide", "user": "alice", "role": PM,
                    "ticket": fast})
        before = proxy.stats()["chunks"]
        dirs = decide_ms(w, fast, n)
        per = (proxy.stats()["chunks"] - before) / (n + 24)
        both = decide_ms(w, slow, n)
        # the same with group_membership = memberOf (memberships come
        # with the entries: one round trip fewer)
        reload(w, directory={"uri": f"ldaps://127.0.0.1:{proxy.port}/",
                             "group_membership": "memberOf"})
        dirs_mo = decide_ms(w, fast, n)
        both_mo = decide_ms(w, slow, n)
    finally:
        reload(w)
        proxy.stop()
    total = dirs + tick - base
    b.data["delays"] = {"baseline_ms": base, "ticket_100ms_ms": tick,
                        "directory_100ms_ms": dirs, "both_ms": both,
                        "sum_ms": total, "max_ms": max(dirs, tick),
                        "directory_requests_per_decision": per}
    b.row("decide, no delay", base, "ms")
    b.row("decide, ticket +100 ms", tick, "ms")
    b.row("decide, directory +100 ms per round trip", dirs, "ms",
          extra=None)
    b.row("  LDAP writes per decision (requests sent)", per, "")
    b.row("decide, both delayed", both, "ms", "<= 130 ms", both <= 130,
          key="decide_both_delayed", extra={"sum_ms": total,
                                            "max_ms": max(dirs, tick)})
    b.row("  the two alone: sum / max", f"{total:.1f} / {max(dirs, tick):.1f}",
          "ms")
    b.data["delays"].update({"directory_100ms_memberof_ms": dirs_mo,
                             "both_memberof_ms": both_mo})
    b.row("decide, directory +100 ms, memberOf", dirs_mo, "ms")
    b.row("decide, both delayed, memberOf", both_mo, "ms", "<= 130 ms",
          both_mo <= 130, key="decide_both_delayed_memberof")


# ---- group size -----------------------------------------------------------------

def seed_for_slapadd():
    """The harness seed as plain entries (modify records folded in), with
    the memberOf values the overlay would have recorded (slapadd does not
    run overlays)."""
    with open(slapdmod.SEED) as f:
        text = f.read()
    recs, order = {}, []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.strip().split("\n")
                 if ln and not ln.startswith("#")]
        if not lines:
            continue
        dn = lines[0]
        if "changetype: modify" in lines:
            attr = [ln for ln in lines if ln.startswith("add:")][0][4:].strip()
            recs[dn] += [ln for ln in lines if ln.startswith(attr + ":")]
            continue
        recs[dn] = lines
        order.append(dn)
    for dn in order:
        for ln in list(recs[dn]):
            if ln.startswith("member: "):
                m = "dn: " + ln[len("member: "):]
                if m in recs:
                    recs[m].append("memberOf: " + dn[4:])
    return "\n\n".join("\n".join(recs[dn]) for dn in order) + "\n\n"


def group_ldif(size, bind_password, memberof):
    base = slapdmod.BASE
    out = [seed_for_slapadd(),
           f"dn: {slapdmod.BIND_DN}\nobjectClass: organizationalRole\n"
           f"objectClass: simpleSecurityObject\ncn: pmpgate\n"
           f"userPassword: {bind_password}\n\n",
           f"dn: ou=bulk,{base}\nobjectClass: organizationalUnit\n"
           f"ou: bulk\n\n"]
    big = f"cn=big-group,ou=groups,{base}"
    small = f"cn=small-group,ou=groups,{base}"
    # bigu is in the big group only, smallu in the small one only
    for i in range(size + 10):
        name = "bigu" if i == 0 else "smallu" if i == size else f"u{i:06d}"
        grp = big if i < size else small
        mo = f"memberOf: {grp}\n" if memberof else ""
        out.append(f"dn: uid={name},ou=bulk,{base}\nobjectClass: "
                   f"inetOrgPerson\nobjectClass: posixAccount\n"
                   f"uid: {name}\ncn: {name}\nsn: {name}\n"
                   f"uidNumber: {100000 + i}\ngidNumber: {100000 + i}\n"
                   f"homeDirectory: /home/{name}\n{mo}\n")
    members = "".join(f"member: uid={'bigu' if i == 0 else f'u{i:06d}'},"
                      f"ou=bulk,{base}\n" for i in range(size))
    out.append(f"dn: {big}\nobjectClass: groupOfNames\ncn: big-group\n"
               f"{members}\n")
    members = "".join(f"member: uid={'smallu' if i == size else f'u{i:06d}'},"
                      f"ou=bulk,{base}\n" for i in range(size, size + 10))
    out.append(f"dn: {small}\nobjectClass: groupOfNames\ncn: small-group\n"
               f"{members}\n")
    return "".join(out), big, small


def bench_group_size(b, w):
    size = env_int("BENCH_GROUP_SIZE", 100000)
    n = env_int("BENCH_GROUP_N", 30)
    gdir = os.path.join(b.tmp, "bigdir")
    os.makedirs(gdir)
    s = slapdmod.Slapd(gdir, w.ca, start=False)
    s.bind_password = w.slapd.bind_password
    t0 = time.monotonic()
    text, big, small = group_ldif(size, s.bind_password, memberof=True)
    ldif = os.path.join(gdir, "bulk.ldif")
    with open(ldif, "w") as f:
        f.write(text)
    # room for the bulk entries (the harness sizes the map for its seed)
    with open(s.conf) as f:
        conf = f.read()
    with open(s.conf, "w") as f:
        f.write(conf.replace("maxsize 33554432", "maxsize 1073741824"))
    r = subprocess.run(["/usr/sbin/slapadd", "-q", "-f", s.conf, "-l", ldif],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("slapadd: " + r.stderr[-2000:])
    s.start()
    load_s = time.monotonic() - t0
    res = {}
    try:
        for label, membership in (("member", "member"),
                                  ("memberOf", "memberOf")):
            for user, group in (("bigu", big), ("smallu", small)):
                t = b.new_id()
                w.ticket(t, requested_for=user)
                reload(w, directory={"uri": s.ldaps_uri,
                                     "group_membership": membership},
                       **{f"role {PM}": {"group": group}})
                req = {"v": 1, "op": "decide", "user": user, "role": PM,
                       "ticket": t}
                warm_up(w, req)
                ans = w.daemon.request(req)
                assert ans["status"] == "allow", ans
                xs = []
                for _ in range(n):
                    st = time.perf_counter()
                    ans = w.daemon.request(req)
                    xs.append((time.perf_counter() - st) * 1000)
                    assert ans["status"] == "allow", ans
                res[(label, user)] = statistics.median(xs)
    finally:
        reload(w)
        s.stop()
    b.data["group_size"] = {"members": size, "load_s": load_s}
    for label in ("member", "memberOf"):
        bg, sm = res[(label, "bigu")], res[(label, "smallu")]
        b.row(f"decide, {size}-member group ({label})", bg, "ms")
        b.row(f"decide, 10-member group ({label})", sm, "ms")
        b.row(f"  ratio {size} / 10 ({label})", bg / sm, "", "<= 1.2",
              bg / sm <= 1.2, key=f"group_ratio_{label}",
              extra={"big_ms": bg, "small_ms": sm})


# ---- throughput ---------------------------------------------------------------------

def run_clients(w, tickets, seconds, clients=32):
    """CLIENTS threads sending issue requests for TICKETS (a list per
    client, cycled) for SECONDS; latencies in ms."""
    lat, errors = [], []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client(mine):
        i = 0
        while time.monotonic() < stop and i < len(mine):
            req = {"v": 1, "op": "issue", "user": "alice", "role": PM,
                   "ticket": mine[i]}
            s = time.perf_counter()
            try:
                ans = w.daemon.request(req, timeout=30)
            except OSError as e:
                ans = {"status": "error", "reason": str(e)}
            ms = (time.perf_counter() - s) * 1000
            with lock:
                if ans.get("status") == "allow":
                    lat.append(ms)
                else:
                    errors.append(ans.get("reason"))
            i += 1

    threads = [threading.Thread(target=client, args=(tickets[k],))
               for k in range(clients)]
    s = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, errors, time.monotonic() - s


def bench_throughput(b, w):
    seconds = env_int("BENCH_TPUT_SECONDS", 5)
    t = b.new_id()
    w.ticket(t)
    assert w.daemon.request({"v": 1, "op": "issue", "user": "alice",
                             "role": PM, "ticket": t})["status"] == "allow"
    lat, errors, el = run_clients(w, [[t] * 100000] * 32, seconds)
    assert not errors, errors[:3]
    b.row("throughput, 32 clients, cache warm", len(lat) / el, "issue/s",
          key="throughput_warm", extra={"p99_ms": pct(lat, 99),
                                         "median_ms": statistics.median(lat)})
    b.row("  p99 latency, cache warm", pct(lat, 99), "ms")
    per = env_int("BENCH_TPUT_COLD_PER_CLIENT", 8)
    tickets = []
    for _ in range(32):
        mine = []
        for _ in range(per):
            tk = b.new_id()
            w.ticket(tk)
            mine.append(tk)
        tickets.append(mine)
    lat, errors, el = run_clients(w, tickets, 120)
    assert not errors, errors[:3]
    b.row("throughput, 32 clients, cache cold", len(lat) / el, "issue/s",
          key="throughput_cold", extra={"p99_ms": pct(lat, 99),
                                         "median_ms": statistics.median(lat)})
    b.row("  p99 latency, cache cold", pct(lat, 99), "ms")


# ---- the helper process --------------------------------------------------------------

def bench_helper_process(b, w, rss_kib):
    b.row("helper peak RSS", rss_kib / 1024.0, "MiB", "<= 4 MiB",
          rss_kib <= 4096, key="helper_rss")
    t = b.new_id()
    w.ticket(t)
    assert w.credentials("alice", PM, t).returncode == 0
    cg = os.path.join(b.tmp, "cg")
    os.makedirs(cg, exist_ok=True)
    os.chmod(cg, 0o777)
    out = os.path.join(cg, "callgrind.out")
    r = daemon.as_user("alice", ["valgrind", "--tool=callgrind",
                                 f"--callgrind-out-file={out}"]
                       + w.helper_argv(PM, t),
                       env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert r.returncode == 0, r.stderr
    ir = None
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                ir = int(line.split()[1])
    b.row("helper instructions (callgrind, cache warm)", ir, "instr",
          key="helper_instructions")


def bench_pam(b, w):
    n = env_int("BENCH_PAM", 100)
    pamdir = os.path.join(b.tmp, "pam.d")
    os.makedirs(pamdir, exist_ok=True)
    module = daemon.binary("pam_pmpgate.so")
    with open(os.path.join(pamdir, "other"), "w") as f:
        f.write(f"account required {SECURITY}/pam_deny.so\n")
    with open(os.path.join(pamdir, "pm"), "w") as f:
        f.write(f"account required {module} role={PM} ticket=env "
                f"socket={w.daemon.socket}\n")
    with open(os.path.join(pamdir, "permit"), "w") as f:
        f.write(f"account required {SECURITY}/pam_permit.so\n")
    t = b.new_id()
    w.ticket(t)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "LD_PRELOAD": f"{PAM_WRAPPER}:{daemon.NSS_WRAPPER}",
           "PAM_WRAPPER": "1", "PAM_WRAPPER_SERVICE_DIR": pamdir,
           "NSS_WRAPPER_PASSWD": w.daemon.passwd,
           "NSS_WRAPPER_GROUP": w.daemon.group}
    res = {}
    for svc in ("pm", "permit"):
        argv = ["/usr/bin/pamtester", "-E", f"PMPGATE_TICKET={t}", svc,
                "alice", "acct_mgmt"]
        runs = b.run_spawn(0, n, argv, env)
        assert all(st == 0 for _, _, st in runs), runs[:3]
        res[svc] = statistics.median(ms for ms, _, _ in runs)
    b.row("PAM account (pamtester, pam_pmpgate)", res["pm"], "ms",
          key="pam_account", extra={"pam_permit_ms": res["permit"]})
    b.row("  same stack with pam_permit only", res["permit"], "ms")


def bench_audit(b):
    """pmpgate audit verify on one log of BENCH_AUDIT_RECORDS signed
    records, in both signature modes: --signatures every (each record's
    Ed25519 signature) and --signatures chain-end (every other check on
    every record, Ed25519 at checkpoints only)."""
    n = env_int("BENCH_AUDIT_RECORDS", 1000000)
    cli = daemon.binary("pmpgate")
    probe = os.path.join(daemon.build_dir(), "probe", "auditprobe")
    modes = (("every", "audit_verify"), ("chain-end", "audit_verify_chain_end"))
    ok = n > 0 and os.access(probe, os.X_OK) and subprocess.run(
        [cli, "audit", "verify", "--help"], capture_output=True).returncode == 0
    if not ok:
        for mode, key in modes:
            b.row(f"pmpgate audit verify {mode}", "n/a",
                  "records/s", ">= 200000", None, key=key)
        b.notes.append("audit verify: not measured (pmpgate audit verify or "
                       "build/probe/auditprobe missing, or "
                       "BENCH_AUDIT_RECORDS=0)")
        return
    key = os.path.join(b.tmp, "audit.pem")
    pub = os.path.join(b.tmp, "audit.pub")
    log = os.path.join(b.tmp, "audit.jsonl")
    subprocess.run([cli, "audit", "keygen", "--out-private", key,
                    "--out-public", pub], check=True,
                   stdout=subprocess.DEVNULL)
    # the log: signed records from the chain builder (bench/audit_verify.py
    # has the same generator and more sizes)
    subprocess.run([probe, "-G", str(n), log, key], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        for mode, k in modes:
            s = time.perf_counter()
            r = subprocess.run([cli, "audit", "verify", "--public-key", pub,
                                "--signatures", mode, log],
                               capture_output=True, text=True)
            el = time.perf_counter() - s
            assert r.returncode == 0 and \
                r.stdout.startswith(f"OK: {n} records"), (r.stdout, r.stderr)
            sigs = n
            for line in r.stdout.splitlines():
                if "Ed25519 signature(s) verified" in line:
                    sigs = int(line.split("chain-end: ")[1].split()[0])
            b.row(f"pmpgate audit verify {mode}, {n} records",
                  n / el, "records/s", ">= 200000", n / el >= 200000, key=k,
                  extra={"records": n, "verify_s": el,
                         "signatures_verified": sigs,
                         "cpus": os.cpu_count()})
    finally:
        os.unlink(log)


# ---- output -----------------------------------------------------------------------------

def fmt(v):
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


def main():
    if os.geteuid() != 0:
        print("make bench runs clients as test users: run it as root")
        return 2
    tmp = tempfile.mkdtemp(prefix="pmpgate-bench-")
    os.chmod(tmp, 0o755)
    b = Bench(tmp)
    w = None
    try:
        w = start_world(tmp)
        rss = bench_issuance(b, w)
        bench_helper_process(b, w, rss)
        bench_connections(b, w)
        bench_delays(b, w)
        bench_throughput(b, w)
        bench_pam(b, w)
        bench_group_size(b, w)
        w.stop()
        w = None
        bench_audit(b)
    finally:
        if w is not None:
            w.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\npmpgate bench, {os.cpu_count()} CPU(s), "
          f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}\n")
    print(f"{'measurement':52} {'value':>12} {'unit':10} {'goal':12} met")
    print("-" * 92)
    for name, value, unit, goal, met in b.rows:
        m = "" if met is None else ("yes" if met else "NO")
        print(f"{name:52} {fmt(value):>12} {unit:10} {goal:12} {m}")
    for note in b.notes:
        print("note: " + note)
    outdir = os.path.join(HERE, "results")
    os.makedirs(outdir, exist_ok=True)
    out = os.path.join(outdir, "latest.json")
    with open(out, "w") as f:
        json.dump({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "cpus": os.cpu_count(), "results": b.data,
                   "notes": b.notes}, f, indent=2)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
