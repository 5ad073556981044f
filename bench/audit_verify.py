"""How fast `pmpgate audit verify` checks a log (not part of make check).

    PMPGATE_BUILD=build /usr/bin/python3 bench/audit_verify.py [N...]
        [--json FILE]

For each N (default 10 000, 100 000 and 1 000 000) a log of N signed
records is generated with build/probe/auditprobe -G (the record builder
of core/auditchain.c, without fsync, as fast as it can sign), with its
syslog copy, and verified with the real binary in both signature modes:

  every      hash chain, canonical form, the Ed25519 signature of every
             record (the default)
  chain-end  the same checks on every record except Ed25519, which is
             verified at the ends of the signed runs only
             (docs/auditor-guide.md says what that does not detect)

and, in the every mode, with --syslog (the witness check).  For each run
the table shows records/s (wall clock) and the CPU time per record
(user + system, all threads): in the chain-end mode that is the cost of
everything but Ed25519 (reading, Jansson parse, one serialisation,
SHA-256, the judgement).  Printed as a table; --json also saves the
rows.

verify checks the records of a batch on every online CPU while it reads
the next batch, and judges them in order; in the every mode Ed25519
dominates, so records/s grows with the number of CPUs.
"""
import json
import os
import resource
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


def cpu_children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(args):
    """(wall seconds, CPU seconds of the child, stdout)."""
    c = cpu_children()
    t = time.perf_counter()
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {r.returncode}\n"
                         f"{r.stdout}{r.stderr}")
    return elapsed, cpu_children() - c, r.stdout


def bench(tmp, key, pub, n):
    log = os.path.join(tmp, f"audit-{n}.jsonl")
    sysl = os.path.join(tmp, f"syslog-{n}")
    gen_s, _, _ = timed([PROBE, "-G", str(n), "-s", sysl, log, key])
    row = {"records": n, "mib": os.path.getsize(log) / 2**20,
           "generate_s": gen_s, "sign_per_s": n / gen_s}
    for mode, name in (("every", "verify"), ("chain-end", "chain_end")):
        s, cpu, out = timed([CLI, "audit", "verify", "--public-key", pub,
                             "--signatures", mode, log])
        assert out.startswith(f"OK: {n} records"), out
        row[f"{name}_s"] = s
        row[f"{name}_per_s"] = n / s
        row[f"{name}_cpu_us"] = cpu / n * 1e6
    s, _, out = timed([CLI, "audit", "verify", "--public-key", pub,
                       "--syslog", sysl, log])
    assert out.startswith(f"OK: {n} records"), out
    row["verify_syslog_s"] = s
    row["verify_syslog_per_s"] = n / s
    os.unlink(log)
    os.unlink(sysl)
    return row


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
        head = (f"{'records':>9} {'MiB':>7} {'sign/s':>8} "
                f"{'every/s':>9} {'us cpu/rec':>10} "
                f"{'chain-end/s':>11} {'us cpu/rec':>10} {'+syslog/s':>10}")
        print(head)
        print("-" * len(head))
        rows = []
        for n in sizes:
            r = bench(tmp, key, pub, n)
            rows.append(r)
            print(f"{r['records']:>9} {r['mib']:>7.1f} {r['sign_per_s']:>8.0f} "
                  f"{r['verify_per_s']:>9.0f} {r['verify_cpu_us']:>10.1f} "
                  f"{r['chain_end_per_s']:>11.0f} {r['chain_end_cpu_us']:>10.1f} "
                  f"{r['verify_syslog_per_s']:>10.0f}", flush=True)
        if json_path:
            with open(json_path, "w") as f:
                json.dump({"cpus": os.cpu_count(), "rows": rows}, f, indent=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
