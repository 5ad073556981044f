"""The etcd ledger's latency: reserve and commit medians against a
3-member etcd cluster on 127.0.0.1 (TLS with client certificates, as in
tests/harness/etcd.py), measured inside one process by
`ledgerprobe CONF bench N` (no process start-up in the measured path; the
first pair, which connects and grants the leases, is left out).

    python3 bench/ledger_etcd.py [--n 500]          # starts its own cluster
    python3 bench/ledger_etcd.py --probe-config C   # the ledger C names

Prints one JSON object: n, reserve/commit median and p90 in ms.  Exit 2
when build/probe/ledgerprobe is missing (run `make probes`).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "harness"))

import common  # noqa: E402
import etcd as etcdmod  # noqa: E402

BUILD = os.environ.get("PMPGATE_BUILD", os.path.join(HERE, "..", "build"))
PROBE = os.path.join(BUILD, "probe", "ledgerprobe")

CONF = """[directory]
uri = ldap://127.0.0.1:9
base = dc=example,dc=com
allow_plaintext = yes

[tickets]
provider = servicenow
url = https://127.0.0.1:9/x?number={{ticket}}
id_pattern = B[0-9-]+

[aws]
region = us-east-1
credentials = env

[role procurement-manager]
group = cn=procurement-managers,ou=groups,dc=example,dc=com
role_arn = arn:aws:iam::123456789012:role/procurement-manager
conflicts = pmp-administrator

[role pmp-administrator]
group = cn=pmp-administrators,ou=groups,dc=example,dc=com
role_arn = arn:aws:iam::123456789012:role/pmp-administrator
conflicts = procurement-manager

[ledger]
{ledger}
"""


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


def measure(conf, n):
    p = subprocess.run([PROBE, conf, "bench", str(n + 1)],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"ledgerprobe bench failed: {p.stderr.strip()}")
    r = json.loads(p.stdout)
    res = [us / 1000 for us in r["reserve_us"][1:]]
    com = [us / 1000 for us in r["commit_us"][1:]]
    return {"n": n, "reserve_median_ms": statistics.median(res),
            "reserve_p90_ms": pct(res, 0.9),
            "commit_median_ms": statistics.median(com),
            "commit_p90_ms": pct(com, 0.9)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--probe-config")
    a = ap.parse_args()
    if not os.access(PROBE, os.X_OK):
        print(f"no bench driver {PROBE} (make probes)", file=sys.stderr)
        return 2
    if a.probe_config:
        print(json.dumps(measure(a.probe_config, a.n)))
        return 0
    d = tempfile.mkdtemp(prefix="pmpgate-bench-etcd-")
    cluster = None
    try:
        cluster = etcdmod.EtcdCluster(d, common.TestCA(d)).start()
        conf = os.path.join(d, "pmpgate.conf")
        keys = cluster.ledger_keys(prefix="/bench/")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(CONF.format(ledger="\n".join(
                f"{k} = {v}" for k, v in keys.items())))
        print(json.dumps(measure(conf, a.n)))
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
