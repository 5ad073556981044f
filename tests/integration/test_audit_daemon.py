"""The daemon's audit trail: every decision leaves its records, in order
(DESIGN.md "Order of effects"), the chain verifies, and a trail that cannot
be written refuses issuance."""
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import daemon  # noqa: E402
import world as worldmod  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs clients as test uids (root)")
PM, ADM = "procurement-manager", "pmp-administrator"
_n = [3000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


@pytest.fixture(scope="module")
def w():
    tmp = tempfile.mkdtemp(prefix="pmpgate-audit-")
    wd = worldmod.World(tmp)
    try:
        wd.start()
        yield wd
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def new_records(w, before):
    return w.daemon.audit_records()[before:]


def events(recs):
    return [r["event"] for r in recs]


def test_every_decision_leaves_its_records(w):
    """One scenario per outcome; the suite counts the records."""
    scenarios = []
    t = new_id()
    w.ticket(t)
    scenarios.append(("allow", lambda: w.credentials("alice", PM, t),
                      0, ["grant", "issued"]))
    t2 = new_id()
    w.ticket(t2, requested_for="carol")
    scenarios.append(("not in group", lambda: w.credentials("carol", PM, t2),
                      1, ["deny"]))
    t3 = new_id()
    w.ticket(t3, state="requested")
    scenarios.append(("pending", lambda: w.credentials("alice", PM, t3),
                      1, ["deny"]))
    t4 = new_id()
    w.ticket(t4, status=503)
    scenarios.append(("ticket system down",
                      lambda: w.credentials("alice", PM, t4), 3, ["error"]))
    total = 0
    for name, run, code, expect in scenarios:
        before = len(w.daemon.audit_records())
        r = run()
        assert r.returncode == code, (name, r.stderr)
        recs = new_records(w, before)
        assert events(recs) == expect, (name, recs)
        total += len(recs)
        for rec in recs:
            assert rec["uid"] == daemon.USERS[rec["user"]]
            assert rec["client"]["service"] == "credential_process"
    assert total == 5


def test_issued_record_content(w):
    t = new_id()
    w.ticket(t, approvers=["erin", "frank"], category="private-offer")
    before = len(w.daemon.audit_records())
    r = w.credentials("alice", PM, t)
    assert r.returncode == 0, r.stderr
    creds = json.loads(r.stdout)
    grant, issued = new_records(w, before)
    assert grant["event"] == "grant" and issued["event"] == "issued"
    assert issued["prev"] == grant["hash"]
    assert issued["seq"] == grant["seq"] + 1
    assert issued["user"] == "alice" and issued["role"] == PM
    assert issued["ticket"] == t
    assert issued["approvers"] == ["erin", "frank"]
    assert issued["access_key_id"] == creds["AccessKeyId"]
    assert issued["sts_request_id"]
    assert issued["rules"] == []
    line = open(w.daemon.audit_log).read()
    # never the secret or the session token
    assert creds["SecretAccessKey"] not in line
    assert creds["SessionToken"] not in line


def test_deny_record_names_every_failing_rule(w):
    t = new_id()
    w.ticket(t, role=ADM, requested_for="dave", requester="dave",
             approvers=["dave"])
    before = len(w.daemon.audit_records())
    r = w.credentials("dave", ADM, t)
    assert r.returncode == 1
    (rec,) = new_records(w, before)
    assert rec["event"] == "deny"
    assert {"R2", "R4", "R5"} <= set(rec["rules"])


def test_decide_leaves_permit_or_deny_with_pam_context(w):
    t = new_id()
    w.ticket(t)
    before = len(w.daemon.audit_records())
    ans = w.daemon.request({"v": 1, "op": "decide", "user": "alice",
                            "role": PM, "ticket": t,
                            "context": {"service": "sshd", "tty": "ssh",
                                        "rhost": "203.0.113.9"}})
    assert ans["status"] == "allow"
    ans = w.daemon.request({"v": 1, "op": "decide", "user": "carol",
                            "role": PM, "ticket": t,
                            "context": {"service": "sudo", "tty": "pts/3"}})
    assert ans["status"] == "deny"
    permit, deny = new_records(w, before)
    assert permit["event"] == "permit" and permit["user"] == "alice"
    assert permit["client"] == {"service": "sshd", "tty": "ssh",
                                "rhost": "203.0.113.9",
                                "pid": permit["client"]["pid"]}
    assert deny["event"] == "deny" and deny["client"]["service"] == "sudo"


def test_sts_failure_leaves_grant_then_error(w):
    t = new_id()
    w.ticket(t)
    w.sts.set_fault("AccessDenied")
    try:
        before = len(w.daemon.audit_records())
        r = w.credentials("alice", PM, t)
        assert r.returncode == 3
        assert events(new_records(w, before)) == ["grant", "error"]
    finally:
        w.sts.clear_faults()


def test_chain_verifies(w):
    r = w.daemon.verify_audit()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("OK:")


def test_concurrent_helpers_record_count_and_chain(w):
    t = new_id()
    w.ticket(t)
    before = len(w.daemon.audit_records())
    ok = 0
    for _ in range(10):
        with concurrent.futures.ThreadPoolExecutor(64) as ex:
            rs = list(ex.map(lambda _: w.credentials("alice", PM, t),
                             range(64)))
        for r in rs:
            assert r.returncode in (0, 3), r.stderr
            if r.returncode == 0:
                ok += 1
            else:
                assert "busy" in r.stderr and r.stdout == ""
    recs = new_records(w, before)
    assert events(recs).count("grant") == ok
    assert events(recs).count("issued") == ok
    assert len(recs) == 2 * ok
    assert ok >= 64
    r = w.daemon.verify_audit()
    assert r.returncode == 0, r.stdout + r.stderr


def test_full_trail_refuses_issuance():
    """The trail's file system is full (RLIMIT_FSIZE on the daemon): once a
    record cannot be written, no credentials leave (exit 4, nothing on
    stdout), and what was written still verifies."""
    tmp = tempfile.mkdtemp(prefix="pmpgate-full-")
    wd = worldmod.World(tmp)
    wd.daemon.wrapper = ["prlimit", "--fsize=6000", "--"]
    try:
        wd.start()
        t = new_id()
        wd.ticket(t)
        codes = []
        for _ in range(20):
            r = wd.credentials("alice", PM, t)
            codes.append(r.returncode)
            if r.returncode != 0:
                assert r.returncode == 4, r.stderr
                assert r.stdout == ""
                assert "audit trail cannot be written" in r.stderr
                break
        assert codes[0] == 0 and codes[-1] == 4, codes
        # every credential handed out has its grant and issued records
        recs = wd.daemon.audit_records()
        assert sum(1 for x in recs if x["event"] == "issued") == \
            codes.count(0)
        ans = wd.daemon.request({"v": 1, "op": "decide", "user": "alice",
                                 "role": PM, "ticket": t})
        assert ans["status"] == "error" and ans["exit"] == 4
        r = wd.daemon.verify_audit()
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_kill_9_under_load_then_restart_verifies(w):
    t = new_id()
    w.ticket(t)
    for _ in range(3):
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(w.credentials, "alice", PM, t)
                    for _ in range(16)]
            time.sleep(0.05)
            w.daemon.proc.kill()
            for f in futs:
                r = f.result()
                assert r.returncode in (0, 3), r.stderr
        w.daemon.proc = None
        w.daemon.start()
        r = w.credentials("alice", PM, t)
        assert r.returncode == 0, r.stderr
    r = w.daemon.verify_audit()
    assert r.returncode == 0, r.stdout + r.stderr


def forged_after(line, edit):
    """A record that follows LINE in the chain, with EDIT applied, a hash
    that matches its content and a copied (so wrong) signature: what a
    writer without the key could append."""
    import hashlib
    prev = json.loads(line)
    rec = dict(prev)
    rec.update(seq=prev["seq"] + 1, prev=prev["hash"], user="mallory")
    rec.update(edit)
    body = {k: v for k, v in rec.items() if k not in ("hash", "sig")}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"))
    if "hash" not in edit:
        rec["hash"] = hashlib.sha256(
            (rec["prev"] + "\n" + canon).encode()).hexdigest()
    return json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n"


@pytest.fixture(scope="module")
def wf():
    """A world of its own: these tests leave forged records in its log."""
    tmp = tempfile.mkdtemp(prefix="pmpgate-audit-forged-")
    wd = worldmod.World(tmp)
    try:
        wd.start()
        yield wd
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("edit,says", [
    ({}, "is not signed by this daemon's key"),
    ({"hash": "ab" * 32}, "does not match its hash"),
])
def test_a_head_someone_else_wrote_is_reported(wf, edit, says):
    """The daemon continues the chain from whatever record ends the log,
    but says so at once when it did not sign that record."""
    w = wf
    t = new_id()
    w.ticket(t)
    assert w.credentials("alice", PM, t).returncode == 0
    w.daemon.stop()
    with open(w.daemon.audit_log) as f:
        last = f.readlines()[-1]
    with open(w.daemon.audit_log, "a") as f:
        f.write(forged_after(last, edit))
    seen = w.daemon.output().count(says)
    w.daemon.start()
    assert w.credentials("alice", PM, t).returncode == 0
    out = w.daemon.output()
    assert out.count(says) == seen + 1, out[-2000:]
    assert "run pmpgate audit verify" in out
    r = w.daemon.verify_audit()
    assert r.returncode == 1 and "FAIL" in r.stdout, r.stdout + r.stderr
    # a restart after the daemon's own record says nothing
    w.daemon.stop()
    w.daemon.start()
    assert w.credentials("alice", PM, t).returncode == 0
    assert w.daemon.output().count(says) == seen + 1


def test_own_head_is_not_reported(w):
    t = new_id()
    w.ticket(t)
    assert w.credentials("alice", PM, t).returncode == 0
    seen = w.daemon.output().count("someone else wrote to the audit log")
    w.daemon.stop()
    w.daemon.start()
    assert w.credentials("alice", PM, t).returncode == 0
    assert w.daemon.output().count(
        "someone else wrote to the audit log") == seen
