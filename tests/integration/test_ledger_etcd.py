"""The etcd ledger on a 3-member cluster (tests/harness/etcd.py): what only
several hosts have.  The behaviour every backend shares is the conformance
suite, test_ledger.py.

- quorum: one member killed, issuance continues; two killed, refusal (R9)
  within the deadline; the members back, issuance again;
- password authentication (etcd RBAC) and its refusals;
- two daemons ("hosts": own sockets, state, secrets, logs) sharing the
  cluster: 32 concurrent requests for one ticket with max_uses = 1 split
  across both, exactly one issued, 20 rounds; a ticket used on one host
  is refused on the other; no quorum refuses within the deadline and says
  why.
- the reserve latency median, printed (`pytest -s` shows it).
"""
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import common  # noqa: E402
import daemon  # noqa: E402
import etcd as etcdmod  # noqa: E402
import world as worldmod  # noqa: E402

BUILD = os.environ.get("PMPGATE_BUILD", "/work/main/build")
PROBE = os.path.join(BUILD, "probe", "ledgerprobe")
PM = "procurement-manager"
ADMIN = "pmp-administrator"
TIMEOUT = 2  # [ledger] timeout, seconds
ROUNDS = 20
RACERS = 32

CONF = """
[daemon]
deadline = 5s

[directory]
uri = ldap://127.0.0.1:9
base = dc=example,dc=com
allow_plaintext = yes

[tickets]
provider = servicenow
url = https://127.0.0.1:9/api/now/table/change_request?number={{ticket}}
id_pattern = T[0-9]+

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

[separation]
window = 1h

[ledger]
{ledger}
"""


def write_conf(path, keys):
    ledger = "\n".join(f"{k} = {v}" for k, v in keys.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(CONF.format(ledger=ledger))
    return path


def probe(conf, *args):
    return subprocess.run([PROBE, conf, *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def cluster():
    d = tempfile.mkdtemp(prefix="pmpgate-etcd-")
    os.chmod(d, 0o755)
    c = etcdmod.EtcdCluster(d, common.TestCA(d)).start()
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def conf(cluster, tmp_path):
    os.chmod(tmp_path, 0o700)
    prefix = f"/quorum/{os.urandom(4).hex()}/"
    return write_conf(str(tmp_path / "pmpgate.conf"),
                      cluster.ledger_keys(prefix=prefix,
                                          timeout=f"{TIMEOUT}s"))


def restore(cluster):
    for i, m in enumerate(cluster.members):
        if not m.alive():
            cluster.restart(i)
    cluster.wait_healthy()


# ---- quorum -------------------------------------------------------------------

@pytest.mark.parametrize("which", ["first", "leader"])
def test_one_member_killed_issuance_continues(cluster, conf, which):
    """The first endpoint killed (the client moves on), or the leader
    killed just before the requests (they wait out the election within
    [ledger] timeout)."""
    try:
        cluster.kill(0 if which == "first" else cluster.leader())
        for i in range(5):
            p = probe(conf, "reserve", f"u{i}", PM, f"T{i}")
            assert (p.returncode, p.stdout.strip()) == (0, "ok"), p.stderr
        p = probe(conf, "reserve", "u0", ADMIN, "T99")
        assert p.returncode == 1 and p.stdout.startswith("denied R6:")
        p = probe(conf, "reserve", "u9", PM, "T1")
        assert p.returncode == 1 and p.stdout.startswith("denied R7:")
    finally:
        restore(cluster)


def test_two_members_killed_refusal_within_the_deadline(cluster, conf):
    assert probe(conf, "reserve", "alice", PM, "T1").returncode == 0
    try:
        cluster.kill(1)
        cluster.kill(2)
        for args in (("reserve", "bob", PM, "T2"),
                     ("facts", "alice", ADMIN, "T3"),
                     ("last", "alice", PM)):
            t = time.monotonic()
            p = probe(conf, *args)
            took = time.monotonic() - t
            # refused, as a dependency that is unavailable (exit 3), and
            # within [ledger] timeout (plus process start-up)
            assert p.returncode == 3, (args, p.stdout, p.stderr)
            assert "ok" not in p.stdout and p.stderr.startswith("error ")
            assert "etcd" in p.stderr
            assert took < TIMEOUT + 1.5, (args, took, p.stderr)
    finally:
        restore(cluster)
    # back: what was recorded before is still there
    p = probe(conf, "reserve", "alice", ADMIN, "T4")
    assert p.returncode == 1 and p.stdout.startswith("denied R6:"), p.stdout
    assert probe(conf, "reserve", "bob", PM, "T2").stdout.strip() == "ok"


def test_unreachable_endpoints(tmp_path):
    """No member at any endpoint: refused at once (exit 3), never ok."""
    os.chmod(tmp_path, 0o700)
    eps = " ".join(f"http://127.0.0.1:{common.free_port()}" for _ in range(3))
    c = write_conf(str(tmp_path / "c.conf"),
                   {"backend": "etcd", "endpoints": eps,
                    "allow_plaintext": "yes", "timeout": "2s"})
    t = time.monotonic()
    p = probe(c, "reserve", "alice", PM, "T1")
    assert p.returncode == 3 and p.stdout == "", (p.stdout, p.stderr)
    assert "no endpoint could serve" in p.stderr
    assert time.monotonic() - t < 2.5


def test_wrong_ca_refused(cluster, tmp_path):
    """A cluster whose certificate the CA does not vouch for: refused."""
    os.chmod(tmp_path, 0o700)
    other = common.TestCA(str(tmp_path), name="other-ca")
    c = write_conf(str(tmp_path / "c.conf"),
                   cluster.ledger_keys(ca_file=other.cert))
    p = probe(c, "reserve", "alice", PM, "T1")
    assert p.returncode == 3 and "TLS" in p.stderr, p.stderr


def test_reserve_latency_median(cluster, tmp_path):
    """The median of 200 reserve+commit pairs in one process, and of
    reserves alone, printed for the record."""
    os.chmod(tmp_path, 0o700)
    c = write_conf(str(tmp_path / "c.conf"), cluster.ledger_keys(
        prefix=f"/bench/{os.urandom(4).hex()}/"))
    p = subprocess.run([sys.executable, os.path.join(
        HERE, "..", "..", "bench", "ledger_etcd.py"), "--probe-config", c,
        "--n", "200"], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PMPGATE_BUILD=BUILD))
    if p.returncode == 2 and "no bench driver" in p.stderr:
        pytest.skip(p.stderr)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    print(f"\netcd ledger, 3 members, TLS: reserve median "
          f"{r['reserve_median_ms']:.2f} ms, commit median "
          f"{r['commit_median_ms']:.2f} ms (n={r['n']})")
    assert 0 < r["reserve_median_ms"] < 1000


def test_two_hosts_race_conflicting_roles(cluster, tmp_path):
    """Probes as two hosts (their own configs, the endpoints in opposite
    orders, so each host talks to another member first): 16 x
    procurement-manager on one, 16 x pmp-administrator on the other, for
    one user, 20 rounds: exactly the requests of one role pass."""
    os.chmod(tmp_path, 0o700)
    for rnd in range(ROUNDS):
        prefix = f"/two/{rnd}-{os.urandom(4).hex()}/"
        host_a = write_conf(str(tmp_path / f"a{rnd}.conf"),
                            cluster.ledger_keys(prefix=prefix,
                                                timeout="5s"))
        host_b = write_conf(str(tmp_path / f"b{rnd}.conf"),
                            cluster.ledger_keys(
                                prefix=prefix, timeout="5s",
                                endpoints=" ".join(cluster.endpoints[::-1])))
        jobs = [(host_a, PM, f"T{i}") if i % 2 else (host_b, ADMIN, f"T{i}")
                for i in range(RACERS)]
        procs = [subprocess.Popen([PROBE, c, "reserve", "alice", role, t],
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for c, role, t in jobs]
        res = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            res.append((p.returncode, out.strip(), err.strip()))
        won = {jobs[i][1] for i, r in enumerate(res) if r[0] == 0}
        assert len(won) == 1, (rnd, res)
        for i, (rc, out, err) in enumerate(res):
            if jobs[i][1] in won:
                assert (rc, out) == (0, "ok"), (rnd, i, out, err)
            else:
                assert rc == 1 and out.startswith("denied R6:"), \
                    (rnd, i, out, err)


# ---- password authentication -----------------------------------------------------

def test_password_authentication(cluster, tmp_path):
    """etcd RBAC: a user limited to its prefix works with password_file;
    a wrong password or a prefix outside its permission is refused."""
    os.chmod(tmp_path, 0o700)
    ctl = cluster.etcdctl
    steps = [("user", "add", "root:rootpw"),
             ("role", "add", "pmpgate"),
             ("role", "grant-permission", "pmpgate", "readwrite",
              "/auth/", "--prefix=true"),
             ("user", "add", "pmpgate:s3cret"),
             ("user", "grant-role", "pmpgate", "pmpgate"),
             ("user", "grant-role", "root", "root"),
             ("auth", "enable")]
    for s in steps:
        p = ctl(*s)
        assert p.returncode == 0, (s, p.stderr)
    try:
        def pwfile(name, text):
            path = str(tmp_path / name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text + "\n")
            return path

        nocn = {"cert_file": cluster.client_cert_nocn[0],
                "key_file": cluster.client_cert_nocn[1]}
        good = write_conf(str(tmp_path / "good.conf"), cluster.ledger_keys(
            prefix="/auth/", password_file=pwfile("pw", "pmpgate:s3cret"),
            **nocn))
        p = probe(good, "reserve", "alice", PM, "T1")
        assert (p.returncode, p.stdout.strip()) == (0, "ok"), p.stderr
        p = probe(good, "reserve", "bob", PM, "T1")
        assert p.stdout.startswith("denied R7:"), (p.stdout, p.stderr)

        bad = write_conf(str(tmp_path / "bad.conf"), cluster.ledger_keys(
            prefix="/auth/", password_file=pwfile("badpw", "pmpgate:nope"),
            **nocn))
        p = probe(bad, "reserve", "carol", PM, "T2")
        assert p.returncode == 2 and "authentication" in p.stderr, p.stderr
        assert "nope" not in p.stderr and "s3cret" not in p.stderr

        outside = write_conf(str(tmp_path / "out.conf"), cluster.ledger_keys(
            prefix="/elsewhere/",
            password_file=pwfile("pw2", "pmpgate:s3cret"), **nocn))
        p = probe(outside, "reserve", "carol", PM, "T3")
        assert p.returncode == 2 and "permission denied" in p.stderr, \
            p.stderr
        assert p.stdout == ""

        # a certificate with a Common Name: the gateway refuses it
        cn = write_conf(str(tmp_path / "cn.conf"), cluster.ledger_keys(
            prefix="/auth/", password_file=pwfile("pw3", "pmpgate:s3cret")))
        p = probe(cn, "reserve", "carol", PM, "T4")
        assert p.returncode == 2 and "CommonName" in p.stderr, p.stderr
    finally:
        p = ctl("auth", "disable", user="root:rootpw")
        assert p.returncode == 0, p.stderr


def test_password_file_checked(cluster, tmp_path):
    os.chmod(tmp_path, 0o700)
    path = str(tmp_path / "pw")
    with open(path, "w") as f:
        f.write("no-colon\n")
    os.chmod(path, 0o600)
    c = write_conf(str(tmp_path / "c.conf"),
                   cluster.ledger_keys(password_file=path))
    p = probe(c, "last", "alice", PM)
    assert p.returncode == 2 and "user:password" in p.stderr, p.stderr
    os.chmod(path, 0o644)
    p = probe(c, "last", "alice", PM)
    assert p.returncode == 2, p.stderr


# ---- two hosts -----------------------------------------------------------------

_n = [3000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


def host_ledger(cluster, host, prefix):
    """[ledger] for HOST: the client key as a secret the daemon owns."""
    with open(cluster.client_cert[1]) as f:
        key = host.secret("etcd-client.key", f.read())
    return cluster.ledger_keys(prefix=prefix, key_file=key,
                               timeout=f"{TIMEOUT}s")


@pytest.fixture(scope="module")
def hosts(cluster):
    if os.geteuid() != 0:
        pytest.skip("runs clients as test uids (root)")
    tmp = tempfile.mkdtemp(prefix="pmpgate-hosts-")
    w = worldmod.World(tmp)
    prefix = f"/hosts/{os.urandom(4).hex()}/"
    common_overrides = {
        "daemon": {"workers": "8", "max_per_uid": "64", "deadline": "6s"},
        f"role {PM}": {"max_uses": "1"},
    }
    b = None
    try:
        w.overrides = dict(common_overrides)
        w.overrides["ledger"] = host_ledger(cluster, w.daemon, prefix)
        w.start()
        b = w.add_host("hostb")
        b.write_config(w.config_text(
            _daemon=b, ledger=host_ledger(cluster, b, prefix)))
        b.start()
        yield w, w.daemon, b
    finally:
        if b is not None:
            b.stop()
        w.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def ask(w, host, user, role, ticket):
    argv = [daemon.binary("pmpgate-credentials"), "--role", role,
            "--socket", host.socket, "--ticket", ticket]
    return daemon.as_user(user, argv, env={"PATH": "/usr/bin:/bin"})


def test_two_hosts_race_one_ticket(hosts):
    """32 concurrent requests for one ticket (max_uses = 1) split across
    both hosts: exactly one issued, the others refused with R7."""
    w, a, b = hosts
    with concurrent.futures.ThreadPoolExecutor(RACERS) as pool:
        for rnd in range(ROUNDS):
            t = new_id()
            w.ticket(t, requested_for="alice", approvers=["erin"])
            futs = [pool.submit(ask, w, a if i % 2 else b, "alice", PM, t)
                    for i in range(RACERS)]
            res = [f.result() for f in futs]
            ok = [r for r in res if r.returncode == 0]
            assert len(ok) == 1, (rnd, [(r.returncode, r.stderr)
                                        for r in res])
            for r in res:
                if r.returncode != 0:
                    assert r.returncode == 1 and "R7" in r.stderr, \
                        (rnd, r.returncode, r.stderr)


def test_ticket_used_on_one_host_refused_on_the_other(hosts):
    w, a, b = hosts
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    r = ask(w, a, "alice", PM, t)
    assert r.returncode == 0, r.stderr
    r = ask(w, b, "alice", PM, t)
    assert r.returncode == 1 and "R7" in r.stderr, r.stderr
    assert "used 1 times (max_uses 1)" in r.stderr


def test_two_hosts_no_quorum(hosts, cluster):
    """Two members killed: both hosts refuse (R9) within the deadline and
    say why; with the members back, they issue again."""
    w, a, b = hosts
    t1, t2 = new_id(), new_id()
    w.ticket(t1, requested_for="alice", approvers=["erin"])
    w.ticket(t2, requested_for="alice", approvers=["erin"])
    try:
        cluster.kill(0)
        cluster.kill(2)
        for host, t in ((a, t1), (b, t2)):
            start = time.monotonic()
            r = ask(w, host, "alice", PM, t)
            took = time.monotonic() - start
            assert r.returncode == 3, (r.returncode, r.stderr)
            assert r.stdout == ""
            assert "R9" in r.stderr and "etcd" in r.stderr, r.stderr
            assert took < 6, took   # [daemon] deadline
            assert "etcd" in host.output()
            with open(host.audit_log) as f:
                last = json.loads(f.read().splitlines()[-1])
            assert last["user"] == "alice" and last["ticket"] == t, last
            assert "R9" in json.dumps(last), last
            assert "etcd" in json.dumps(last), last
    finally:
        restore(cluster)
    assert ask(w, b, "alice", PM, t1).returncode == 0
