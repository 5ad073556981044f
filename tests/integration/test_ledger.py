"""The ledger conformance suite: core/ledger.c across processes
(build/probe/ledgerprobe), run against every backend.

Every probe is its own process with its own ledger handle, as several
daemons or tools on one host (file) or on several hosts (etcd) would be.
Each test runs once per backend: `file` on a fresh directory, `etcd` on a
3-member cluster (tests/harness/etcd.py, one per module, with TLS and
client certificates) under a fresh key prefix.  The races start 32 probes
at once; with the file backend, in half of the rounds they are held at
the ledger's own lock until all of them have started, so that they really
contend (etcd has no such lock: all its rounds run free).
"""
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import common  # noqa: E402,F401
import etcd as etcdmod  # noqa: E402

BUILD = os.environ.get("PMPGATE_BUILD", "/work/main/build")
PROBE = os.path.join(BUILD, "probe", "ledgerprobe")
PM = "procurement-manager"
ADMIN = "pmp-administrator"
ROUNDS = 20
RACERS = 32

CONF = """
[daemon]
deadline = 2s

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
{pm_extra}

[role pmp-administrator]
group = cn=pmp-administrators,ou=groups,dc=example,dc=com
role_arn = arn:aws:iam::123456789012:role/pmp-administrator
conflicts = procurement-manager

[separation]
window = {window}

[ledger]
{ledger}
"""


class Ledger:
    """A config naming a fresh ledger (a directory, or a prefix in the
    etcd cluster), and probes against it."""

    def __init__(self, tmp, name, window="1h", pm_extra="", backend=None):
        self.backend = backend or Backend("file")
        self.dir = os.path.join(tmp, name)
        self.path = os.path.join(self.dir, "ledger")
        os.makedirs(self.dir, mode=0o700)
        self.conf = os.path.join(self.dir, "pmpgate.conf")
        if self.backend.name == "file":
            keys = {"backend": "file", "path": self.path}
        else:
            self.prefix = f"/conformance/{name}-{os.urandom(4).hex()}/"
            keys = self.backend.cluster.ledger_keys(prefix=self.prefix,
                                                    timeout="5s")
        ledger = "\n".join(f"{k} = {v}" for k, v in keys.items())
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(CONF.format(window=window, ledger=ledger,
                                pm_extra=pm_extra))

    def argv(self, *args, now=None):
        extra = ["--now", str(now)] if now is not None else []
        return [PROBE, self.conf, *extra, *args]

    def run(self, *args, now=None):
        return subprocess.run(self.argv(*args, now=now), capture_output=True,
                              text=True, timeout=30)

    def reserve(self, user, role, ticket, now=None):
        return self.run("reserve", user, role, ticket, now=now)

    def facts(self, user, role, ticket="-", now=None):
        p = self.run("facts", user, role, ticket, now=now)
        assert p.returncode == 0, p.stderr
        return dict(line.split(" ", 1) for line in p.stdout.splitlines())

    def race(self, jobs, barrier):
        """Run the probes JOBS (argument lists) at once; their results.
        BARRIER (file backend only): hold them at the ledger's lock until
        all have started."""
        assert not barrier or self.backend.name == "file"
        lock = None
        if barrier:
            # create the directory and lock file, then hold the lock
            assert self.run("last", "nobody", PM).returncode == 0
            lock = os.open(os.path.join(self.path, "ledger.lock"),
                           os.O_RDWR | os.O_NOFOLLOW)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            procs = [subprocess.Popen(self.argv(*j), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
                     for j in jobs]
            if barrier:
                time.sleep(0.3)      # all started and polling the lock
                fcntl.flock(lock, fcntl.LOCK_UN)
            out = []
            for p in procs:
                o, e = p.communicate(timeout=60)
                out.append((p.returncode, o.strip(), e.strip()))
            return out
        finally:
            if lock is not None:
                os.close(lock)


class Backend:
    """The backend under test; CLUSTER is the etcd cluster for etcd."""

    def __init__(self, name, cluster=None):
        self.name = name
        self.cluster = cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One 3-member etcd cluster for this module's etcd runs."""
    d = str(tmp_path_factory.mktemp("etcd-conformance"))
    c = etcdmod.EtcdCluster(d, common.TestCA(d)).start()
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["file", "etcd"])
def backend(request):
    if request.param == "etcd":
        return Backend("etcd", request.getfixturevalue("cluster"))
    return Backend("file")


def rounds(backend, barrier, n):
    """Rounds of a race test: N split over barrier/free for the file
    backend; all N free for etcd (the barrier variant is skipped)."""
    if backend.name == "etcd":
        if barrier:
            pytest.skip("the lock barrier exists in the file backend only")
        return n
    return n // 2


def outcome(result):
    rc, out, err = result
    if rc == 0 and out == "ok":
        return "ok"
    if rc == 1 and out.startswith("denied R6:"):
        return "R6"
    if rc == 1 and out.startswith("denied R7:"):
        return "R7"
    raise AssertionError(f"unexpected probe result {result!r}")


@pytest.fixture
def tmp(tmp_path):
    os.chmod(tmp_path, 0o700)
    return str(tmp_path)


@pytest.mark.parametrize("barrier", [True, False], ids=["barrier", "free"])
def test_race_conflicting_roles(tmp, backend, barrier):
    """16 x procurement-manager and 16 x pmp-administrator for one user:
    all of one role succeed, none of the other."""
    for rnd in range(rounds(backend, barrier, ROUNDS)):
        lg = Ledger(tmp, f"roles{rnd}", backend=backend)
        jobs = [("reserve", "alice", PM if i % 2 else ADMIN, f"T{i}")
                for i in range(RACERS)]
        res = [outcome(r) for r in lg.race(jobs, barrier)]
        won = {jobs[i][2] for i, r in enumerate(res) if r == "ok"}
        assert len(won) == 1, (rnd, res)
        for i, r in enumerate(res):
            assert r == ("ok" if jobs[i][2] in won else "R6"), (rnd, i, res)
        # the record agrees: the other role is refused now, this one not
        lost = ADMIN if won == {PM} else PM
        assert lg.facts("alice", lost)["conflict_role"] == won.pop()
        assert lg.facts("alice", jobs[0][2] if jobs[0][2] != lost
                        else jobs[1][2])["conflict_role"] == "-"


@pytest.mark.parametrize("barrier", [True, False], ids=["barrier", "free"])
def test_race_one_ticket(tmp, backend, barrier):
    """32 users race for one ticket: exactly one gets it."""
    for rnd in range(rounds(backend, barrier, ROUNDS)):
        lg = Ledger(tmp, f"ticket{rnd}", backend=backend)
        jobs = [("reserve", f"user{i}", PM, "T1") for i in range(RACERS)]
        res = [outcome(r) for r in lg.race(jobs, barrier)]
        assert res.count("ok") == 1, (rnd, res)
        assert res.count("R7") == RACERS - 1, (rnd, res)
        winner = jobs[res.index("ok")][1]
        f = lg.facts("someone", PM, "T1")
        assert (f["bound_user"], f["bound_role"], f["uses"]) == \
            (winner, PM, "1")


def test_race_max_uses(tmp, backend):
    """max_uses = 2: of 32 concurrent uses of one ticket by its user, 2."""
    for rnd in range(5):
        lg = Ledger(tmp, f"uses{rnd}", pm_extra="max_uses = 2",
                    backend=backend)
        jobs = [("reserve", "alice", PM, "T1")] * RACERS
        res = [outcome(r) for r in lg.race(
            jobs, rnd % 2 == 0 and backend.name == "file")]
        assert res.count("ok") == 2, (rnd, res)
        assert res.count("R7") == RACERS - 2, (rnd, res)
        assert lg.facts("alice", PM, "T1")["uses"] == "2"


def _hold(lg, user, role, ticket, seconds=3600):
    p = subprocess.Popen(lg.argv("reserve-hold", user, role, ticket,
                                 str(seconds)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "reserved", p.stderr.read()
    return p


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_kill_9_during_reserve(tmp, backend, reap):
    """A process killed with -9 while holding a reservation blocks nothing
    afterwards (its reservation is void once it is dead), while it was
    alive its reservation counted for R6 and R7."""
    lg = Ledger(tmp, "kill", backend=backend)
    p = _hold(lg, "alice", PM, "T1")
    try:
        assert outcome(astuple(lg.reserve("alice", ADMIN, "T2"))) == "R6"
        assert outcome(astuple(lg.reserve("bob", PM, "T1"))) == "R7"
    finally:
        p.send_signal(signal.SIGKILL)
    if reap:
        p.wait(timeout=10)
    else:
        # not reaped: a zombie holds the pid, and still counts as dead
        common.wait_for(lambda: _state(p.pid) == "Z", timeout=10)
    try:
        assert outcome(astuple(lg.reserve("alice", ADMIN, "T2"))) == "ok"
        assert outcome(astuple(lg.reserve("bob", PM, "T1"))) == "ok"
        assert lg.facts("x", PM, "T1")["bound_user"] == "bob"
    finally:
        p.wait(timeout=10)
        p.stdout.close()
        p.stderr.close()


def _state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def astuple(cp):
    return (cp.returncode, cp.stdout.strip(), cp.stderr.strip())


def test_hold_then_commit(tmp, backend):
    """A slow issuance in one process blocks a conflicting one in another
    until it is recorded, and its record then keeps blocking it."""
    lg = Ledger(tmp, "slow", backend=backend)
    p = _hold(lg, "alice", PM, "T1", seconds=1)
    assert outcome(astuple(lg.reserve("alice", ADMIN, "T2"))) == "R6"
    assert p.stdout.readline().strip() == "committed"
    assert p.wait(timeout=10) == 0
    p.stdout.close()
    p.stderr.close()
    assert outcome(astuple(lg.reserve("alice", ADMIN, "T2"))) == "R6"
    assert int(lg.run("last", "alice", PM).stdout.split()[1]) > 0


def test_processes_share_records(tmp, backend):
    """What one process records, another sees: facts, verdicts, last."""
    lg = Ledger(tmp, "share", backend=backend)
    t = int(time.time())
    assert outcome(astuple(lg.reserve("alice", PM, "T1", now=t))) == "ok"
    f = lg.facts("alice", ADMIN, "T2", now=t + 1)
    assert f["conflict_role"] == PM and f["conflict_ts"] == str(t)
    f = lg.facts("bob", PM, "T1", now=t + 1)
    assert (f["bound_user"], f["bound_role"], f["uses"]) == \
        ("alice", PM, "1")
    assert outcome(astuple(lg.reserve("bob", PM, "T1", now=t + 1))) == "R7"
    assert outcome(astuple(lg.reserve("alice", ADMIN, "T1",
                                      now=t + 1))) == "R6"
    assert lg.run("last", "alice", PM).stdout.strip() == f"last {t}"
    assert lg.run("last", "alice", ADMIN).stdout.strip() == "last 0"


def test_window_across_processes(tmp, backend):
    """A separation window of seconds: refused within it, allowed after."""
    lg = Ledger(tmp, "window", window="5s", backend=backend)
    t = int(time.time())
    assert outcome(astuple(lg.reserve("alice", PM, "T1", now=t))) == "ok"
    assert outcome(astuple(lg.reserve("alice", ADMIN, "T2",
                                      now=t + 4))) == "R6"
    assert outcome(astuple(lg.reserve("alice", ADMIN, "T2",
                                      now=t + 5))) == "ok"
    assert outcome(astuple(lg.reserve("alice", PM, "T3",
                                      now=t + 6))) == "R6"


def test_release_across_processes(tmp, backend):
    """A released reservation (STS failed) leaves the ticket unbound."""
    lg = Ledger(tmp, "release", backend=backend)
    p = lg.run("release-after", "alice", PM, "T1")
    assert (p.returncode, p.stdout.strip()) == (0, "released"), p.stderr
    assert outcome(astuple(lg.reserve("alice", ADMIN, "T2"))) == "ok"
    assert outcome(astuple(lg.reserve("bob", PM, "T1"))) == "ok"


@pytest.mark.parametrize("content", [b"garbage", b"", b'{"version":2}',
                                     b'{"version":1,"issued":[],"tick'])
def _etcd_put(lg, key, content):
    p = lg.backend.cluster.etcdctl("put", key, "--", content.decode())
    assert p.returncode == 0, p.stderr


def _etcd_get(lg, key):
    p = lg.backend.cluster.etcdctl("get", key, "--print-value-only")
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("content", [b"garbage", b"", b'{"version":2}',
                                     b'{"version":1,"issued":[],"tick'])
def test_damaged_ledger_refuses(tmp, backend, content):
    """A damaged ledger refuses every process (exit 3) and is left as it
    was, never reset.  etcd: damaged records under the keys of a ticket's
    binding, of a conflicting role's issuance and of the last issuance."""
    lg = Ledger(tmp, "damaged", backend=backend)
    assert lg.run("last", "nobody", PM).returncode == 0
    if backend.name == "file":
        path = os.path.join(lg.path, "ledger.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, content)
        os.close(fd)
    else:
        keys = [lg.prefix + "t/T1/b", lg.prefix + f"u/alice/{ADMIN}/i/x1",
                lg.prefix + f"l/alice/{PM}/"]
        for k in keys:
            _etcd_put(lg, k, content)
    for args in (("reserve", "alice", PM, "T1"),
                 ("reserve", "alice", PM, "T2"),
                 ("facts", "alice", PM, "T1"), ("last", "alice", PM)):
        p = lg.run(*args)
        assert p.returncode == 3, (args, p.stdout, p.stderr)
        assert "damaged" in p.stderr and "ok" not in p.stdout
    if backend.name == "file":
        with open(path, "rb") as f:
            assert f.read() == content
    else:
        for k in keys:
            assert _etcd_get(lg, k) == content.decode() + "\n"


def test_symlinked_ledger_refuses(tmp):
    lg = Ledger(tmp, "symlink")
    assert lg.run("last", "nobody", PM).returncode == 0
    other = os.path.join(tmp, "other.json")
    with open(other, "w") as f:
        f.write('{"version":1,"issued":[],"tickets":{},"last":[],'
                '"reservations":[]}')
    os.symlink(other, os.path.join(lg.path, "ledger.json"))
    p = lg.reserve("alice", PM, "T1")
    assert p.returncode == 2 and "symbolic link" in p.stderr, p.stderr


# ---- file backend: the snapshot and its journal ----------------------------------

def _journal(lg):
    return os.path.join(lg.path, "ledger.journal")


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _header(lg):
    """The journal's header: (id, snapshot hash)."""
    head = json.loads(_read(_journal(lg)).split(b"\n", 1)[0])
    assert sorted(head) == ["id", "snapshot"], head
    assert re.fullmatch(r"[0-9a-f]{32}", head["id"]), head
    return head["id"], head["snapshot"]


def _snapshot(lg):
    return os.path.join(lg.path, "ledger.json")


def _assert_refused(lg, want, files):
    """Every process refuses (exit 3) saying the journal is damaged and
    WANT; FILES ({path: bytes or None}) are left as they were."""
    for args in (("reserve", "bob", PM, "T1"), ("reserve", "bob", PM, "T2"),
                 ("facts", "alice", PM, "T1"), ("last", "alice", PM)):
        p = lg.run(*args)
        assert p.returncode == 3, (args, p.stdout, p.stderr)
        assert "ledger.journal is damaged" in p.stderr, p.stderr
        assert want in p.stderr, p.stderr
        assert "ok" not in p.stdout
    for path, content in files.items():
        if content is None:
            assert not os.path.lexists(path), path
        else:
            assert _read(path) == content, path


def test_journal_layout(tmp):
    """An issuance leaves the snapshot (format version 2, compacting no
    journal) and a journal: a header naming the snapshot's SHA-256 and the
    journal's id, then one line per operation."""
    lg = Ledger(tmp, "layout")
    assert outcome(astuple(lg.reserve("alice", PM, "T1"))) == "ok"
    snap = _read(os.path.join(lg.path, "ledger.json"))
    doc = json.loads(snap)
    assert doc["version"] == 2 and doc["compacted"] is None, doc
    lines = _read(_journal(lg)).split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4, lines
    assert _header(lg)[1] == hashlib.sha256(snap).hexdigest()
    assert list(json.loads(lines[1])) == ["reserve"]
    commit = json.loads(lines[2])["commit"]
    assert (commit["user"], commit["role"], commit["ticket"]) == \
        ("alice", PM, "T1")
    for name in ("ledger.json", "ledger.journal"):
        assert os.stat(os.path.join(lg.path, name)).st_mode & 0o077 == 0


@pytest.mark.parametrize("line", [b"garbage", b"", b'{"delete":{"id":"x"}}',
                                  b'{"release":{"id":"ab","id":"ab"}}',
                                  b'{"release":{"id":7}}'])
def test_damaged_journal_refuses(tmp, line):
    """A complete line that is no operation: every process refuses (exit
    3), and neither file is rewritten."""
    lg = Ledger(tmp, "jdamaged")
    assert outcome(astuple(lg.reserve("alice", PM, "T1"))) == "ok"
    with open(_journal(lg), "ab") as f:
        f.write(line + b"\n")
    snap = _read(os.path.join(lg.path, "ledger.json"))
    journal = _read(_journal(lg))
    for args in (("reserve", "bob", PM, "T2"), ("facts", "alice", PM, "T1"),
                 ("last", "alice", PM)):
        p = lg.run(*args)
        assert p.returncode == 3, (args, p.stdout, p.stderr)
        assert "ledger.journal is damaged" in p.stderr, p.stderr
    assert _read(os.path.join(lg.path, "ledger.json")) == snap
    assert _read(_journal(lg)) == journal


def test_torn_journal_line(tmp):
    """A last line without its newline (a writer that died mid-append):
    other processes ignore it, the next writer cuts it off."""
    lg = Ledger(tmp, "torn")
    assert outcome(astuple(lg.reserve("alice", PM, "T1"))) == "ok"
    good = _read(_journal(lg))
    torn = (b'{"commit":{"access_key_id":"","expiration":1,"id":"ab",'
            b'"role":"' + ADMIN.encode() + b'","ticket":"T9","ts":1,'
            b'"user":"bob"}}')
    with open(_journal(lg), "ab") as f:
        f.write(torn)
    f = lg.facts("bob", PM, "T9")
    assert (f["conflict_role"], f["bound_user"]) == ("-", "-")
    assert _read(_journal(lg)) == good + torn
    assert outcome(astuple(lg.reserve("carol", PM, "T3"))) == "ok"
    after = _read(_journal(lg))
    assert after.startswith(good) and torn not in after
    assert after.count(b"\n") == good.count(b"\n") + 2
    assert lg.facts("bob", PM, "T9")["bound_user"] == "-"


def test_symlinked_journal_refuses(tmp):
    lg = Ledger(tmp, "jsymlink")
    assert outcome(astuple(lg.reserve("alice", PM, "T1"))) == "ok"
    other = os.path.join(tmp, "other.journal")
    shutil.copy(_journal(lg), other)
    os.unlink(_journal(lg))
    os.symlink(other, _journal(lg))
    for args in (("reserve", "bob", PM, "T2"), ("facts", "alice", PM, "T1")):
        p = lg.run(*args)
        assert p.returncode == 2 and "symbolic link" in p.stderr, p.stderr


def test_deleted_snapshot_refuses(tmp):
    """ledger.json deleted while the journal holds issuances: refused by
    every process, not read as an empty ledger (bob would be let through
    with alice's ticket, and her issuance dropped); the journal is left as
    it is, and with the snapshot back the history is whole."""
    lg = Ledger(tmp, "nosnap")
    assert outcome(astuple(lg.reserve("alice", PM, "T1"))) == "ok"
    snap = _read(_snapshot(lg))
    journal = _read(_journal(lg))
    os.unlink(_snapshot(lg))
    _assert_refused(lg, "ledger.json is missing",
                    {_snapshot(lg): None, _journal(lg): journal})
    with open(_snapshot(lg), "wb") as f:
        f.write(snap)
    assert outcome(astuple(lg.reserve("bob", PM, "T1"))) == "R7"
    assert lg.facts("bob", PM, "T1")["bound_user"] == "alice"


def test_replaced_snapshot_refuses(tmp):
    """ledger.json replaced by one its journal does not follow (edited by
    hand, or another ledger's that folded another journal in): refused by
    every process, neither file touched."""
    lg = Ledger(tmp, "replaced")
    assert outcome(astuple(lg.reserve("alice", PM, "T1"))) == "ok"
    snap = _read(_snapshot(lg))
    journal = _read(_journal(lg))
    doc = json.loads(snap)
    edited = dict(doc, last=[{"role": PM, "ts": 1, "user": "mallory"}])
    foreign = dict(doc, compacted=os.urandom(16).hex())
    for other in (edited, foreign):
        text = json.dumps(other, sort_keys=True,
                          separators=(",", ":")).encode() + b"\n"
        with open(_snapshot(lg), "wb") as f:
            f.write(text)
        _assert_refused(lg, "without its journal",
                        {_snapshot(lg): text, _journal(lg): journal})
    with open(_snapshot(lg), "wb") as f:
        f.write(snap)
    assert outcome(astuple(lg.reserve("bob", PM, "T1"))) == "R7"


def test_compaction_across_processes(tmp):
    """One process records more operations than the journal holds (it is
    compacted into the snapshot on the way); other processes, one of them
    having read the journal before, see every issuance.  The snapshot
    names a journal it compacted; the one from before, put back alone, is
    refused; both files put back from one copy are the ledger as it was."""
    lg = Ledger(tmp, "compact")
    assert outcome(astuple(lg.reserve("alice", PM, "T1"))) == "ok"
    assert lg.facts("alice", ADMIN)["conflict_role"] == PM
    old_snap = _read(_snapshot(lg))
    old_journal = _read(_journal(lg))
    old_id = _header(lg)[0]
    n = 2100                 # 4200 operations: over the bound of 4096
    p = subprocess.Popen(lg.argv("bench", str(n)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    lines = _read(_journal(lg)).count(b"\n")
    assert lines < n, lines              # compacted at least once
    for i in (0, 1, n // 2, n - 1):
        f = lg.facts("x", PM, f"B{p.pid}-{i}")
        assert (f["bound_user"], f["uses"]) == (f"b{i}", "1"), (i, f)
    assert lg.facts("alice", ADMIN)["conflict_role"] == PM
    assert outcome(astuple(lg.reserve("alice", ADMIN, "T2"))) == "R6"
    snap = _read(_snapshot(lg))
    doc = json.loads(snap)
    assert doc["version"] == 2, doc
    assert re.fullmatch(r"[0-9a-f]{32}", doc["compacted"]), doc
    new_id, new_hash = _header(lg)
    assert new_hash == hashlib.sha256(snap).hexdigest()
    # 4202 operations, under twice either bound: compacted once, the
    # journal alice's issuance started
    assert doc["compacted"] == old_id and new_id != old_id, (doc, new_id)

    # the snapshot from before the compaction put back alone: refused
    journal = _read(_journal(lg))
    with open(_snapshot(lg), "wb") as f:
        f.write(old_snap)
    _assert_refused(lg, "without its journal",
                    {_snapshot(lg): old_snap, _journal(lg): journal})
    # both files from before: the ledger as it was then (bench's gone)
    with open(_journal(lg), "wb") as f:
        f.write(old_journal)
    f = lg.facts("x", PM, f"B{p.pid}-0")
    assert (f["bound_user"], f["uses"]) == ("-", "0"), f
    assert lg.facts("alice", ADMIN)["conflict_role"] == PM
