"""How fast `pmpgate audit verify` checks a log (not part of make check).

    PMPGATE_BUILD=build /usr/bin/python3 bench/audit_verify.py [N...]
        [--json FILE]

For each N (default 10 000, 100 000 and 1 000 000) a log of N signed
records is generated with build/probe/auditprobe -G (the record builder
of core/auditchain.c, without fsync, as fast as it can sign), with its
syslog copy, and verified with the real binary: hash chain, canonical
form, Ed25519 signature of every record, and with --syslog the witness
check.  Printed as a table; --json also saves the rows.

verify checks the records of a batch on every online CPU (parsing,
hashing, signatures) and judges them in order; the Ed25519 verification
dominates, so records/s grows with the number of CPUs.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, ".."))
BUILD = os.environ.get("PMPGATE_BUILD", os.path.join(REPO, "build"))
CLI = os.path.join(BUILD, "pmpgate")
PROBE = os.path.join(BUILD, "probe", "auditprobe")


def timed(args):
    t = time.perf_counter()
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {r.returncode}\n"
                         f"{r.stdout}{r.stderr}")
    return elapsed, r.stdout


def bench(tmp, key, pub, n):
    log = os.path.join(tmp, f"audit-{n}.jsonl")
    sysl = os.path.join(tmp, f"syslog-{n}")
    gen_s, _ = timed([PROBE, "-G", str(n), "-s", sysl, log, key])
    size = os.path.getsize(log)
    ver_s, out = timed([CLI, "audit", "verify", "--public-key", pub, log])
    assert out.startswith(f"OK: {n} records"), out
    wit_s, out = timed([CLI, "audit", "verify", "--public-key", pub,
                        "--syslog", sysl, log])
    assert out.startswith(f"OK: {n} records"), out
    os.unlink(log)
    os.unlink(sysl)
    return {"records": n, "mib": size / 2**20, "generate_s": gen_s,
            "sign_per_s": n / gen_s, "verify_s": ver_s,
            "verify_per_s": n / ver_s, "verify_syslog_s": wit_s,
            "verify_syslog_per_s": n / wit_s}


def main(argv):
    json_path = None
    sizes = []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--json":
            json_path = args.pop(0)
        else:
            sizes.append(int(a))
    sizes = sizes or [10_000, 100_000, 1_000_000]
    for b in (CLI, PROBE):
        if not os.access(b, os.X_OK):
            print(f"{b} missing: run make build/pmpgate probes first")
            return 2
    tmp = tempfile.mkdtemp(prefix="pmpgate-auditbench-")
    try:
        key = os.path.join(tmp, "k.pem")
        pub = os.path.join(tmp, "k.pub")
        subprocess.run([CLI, "audit", "keygen", "--out-private", key,
                        "--out-public", pub], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"pmpgate audit verify on {os.cpu_count()} CPU(s)\n")
        head = (f"{'records':>10} {'MiB':>8} {'sign/s':>10} {'verify s':>9} "
                f"{'verify/s':>10} {'+syslog s':>10} {'+syslog/s':>10}")
        print(head)
        print("-" * len(head))
        rows = []
        for n in sizes:
            r = bench(tmp, key, pub, n)
            rows.append(r)
            print(f"{r['records']:>10} {r['mib']:>8.1f} {r['sign_per_s']:>10.0f} "
                  f"{r['verify_s']:>9.2f} {r['verify_per_s']:>10.0f} "
                  f"{r['verify_syslog_s']:>10.2f} "
                  f"{r['verify_syslog_per_s']:>10.0f}", flush=True)
        if json_path:
            with open(json_path, "w") as f:
                json.dump({"cpus": os.cpu_count(), "rows": rows}, f, indent=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
