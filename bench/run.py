"""make bench: latency of the issuing path, printed as a table and saved as
JSON (bench/results.json).

Everything runs on loopback against the harness services (real slapd over
TLS, the ticket and STS emulators over HTTPS) and the real binaries:

  helper, cold   first pmpgate-credentials call after pmpgated started
                 (LDAP connect + bind, TLS handshakes to tickets and STS)
  helper, warm   later calls against the running daemon
  decide, warm   a decide request over the socket (no STS call)
  aws CLI        /usr/bin/aws sts get-caller-identity using the helper as
                 its credential_process (Python start-up dominates)
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "harness"))

import daemon  # noqa: E402
import world as worldmod  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return (time.perf_counter() - t) * 1000.0, r


def summary(name, xs):
    xs = sorted(xs)
    return {"name": name, "n": len(xs), "median_ms": statistics.median(xs),
            "p90_ms": xs[int(0.9 * (len(xs) - 1))], "min_ms": xs[0],
            "max_ms": xs[-1]}


def main():
    if os.geteuid() != 0:
        print("make bench runs clients as test users: run it as root")
        return 2
    cold_n = int(os.environ.get("BENCH_COLD", "10"))
    warm_n = int(os.environ.get("BENCH_WARM", "100"))
    cli_n = int(os.environ.get("BENCH_CLI", "5"))
    tmp = tempfile.mkdtemp(prefix="pmpgate-bench-")
    w = worldmod.World(tmp)
    rows = []
    try:
        w.start()
        w.ticket("CHG0000001", approvers=["erin"])
        helper = lambda: w.credentials("alice", "procurement-manager",  # noqa: E731
                                       "CHG0000001")
        cold = []
        for _ in range(cold_n):
            w.daemon.stop()
            w.daemon.start()
            ms, r = timed(helper)
            assert r.returncode == 0, r.stderr
            cold.append(ms)
        rows.append(summary("helper, cold daemon", cold))
        warm = []
        for _ in range(warm_n):
            ms, r = timed(helper)
            assert r.returncode == 0, r.stderr
            warm.append(ms)
        rows.append(summary("helper, warm daemon", warm))
        dec = []
        req = {"v": 1, "op": "decide", "user": "alice",
               "role": "procurement-manager", "ticket": "CHG0000001"}
        for _ in range(warm_n):
            ms, ans = timed(lambda: w.daemon.request(req))
            assert ans["status"] == "allow", ans
            dec.append(ms)
        rows.append(summary("decide over the socket", dec))
        start = []
        for _ in range(warm_n):
            ms, r = timed(lambda: daemon.as_user(
                "alice", [daemon.binary("pmpgate-credentials"), "--help"]))
            start.append(ms)
        rows.append(summary("helper process start (--help)", start))
        cli = []
        for _ in range(cli_n):
            ms, r = timed(lambda: w.aws("alice", "sts", "get-caller-identity",
                                        ticket="CHG0000001"))
            assert r.returncode == 0, r.stderr
            cli.append(ms)
        rows.append(summary("aws sts get-caller-identity via helper", cli))
    finally:
        w.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"{'measurement':42} {'n':>4} {'median':>9} {'p90':>9} "
          f"{'min':>9} {'max':>9}")
    for r in rows:
        print(f"{r['name']:42} {r['n']:>4} {r['median_ms']:>7.1f}ms "
              f"{r['p90_ms']:>7.1f}ms {r['min_ms']:>7.1f}ms "
              f"{r['max_ms']:>7.1f}ms")
    out = os.path.join(HERE, "results.json")
    with open(out, "w") as f:
        json.dump({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "rows": rows}, f, indent=2)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
