"""The credential cache and parallel gathering, through the real binaries:
pmpgated with slapd (TLS), the ticket emulator and the STS emulator.

Credentials are reused per (user, role, ticket), but every request is
decided again: a refusal for the key wipes what was cached, the ledger
still counts every hand-out, and a reload starts empty.  What STS was
asked is read from the STS emulator's request log.
"""
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import world as worldmod  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs clients as test uids (root)")

PM = "procurement-manager"
ALICE = "uid=alice,ou=people,dc=example,dc=com"

_n = [3000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


@pytest.fixture(scope="module")
def w():
    tmp = tempfile.mkdtemp(prefix="pmpgate-cache-")
    wd = worldmod.World(tmp)
    try:
        wd.start()
        yield wd
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def restore(w):
    yield w
    w.overrides = {}
    w.configure()
    w.daemon.reload()
    time.sleep(0.3)


def assumes(w, user, ticket):
    """AssumeRole requests STS received for USER and TICKET."""
    return [r for r in w.sts.requests() if r.get("action") == "AssumeRole"
            and r.get("session_name") == f"{user}@{ticket}"]


def issue(w, user, ticket, *extra, role=PM):
    r = w.credentials(user, role, ticket, *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def refused(r, code, rule):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert f"({rule}" in r.stderr, r.stderr


def test_second_issuance_reuses_the_credentials(w):
    t = new_id()
    w.ticket(t)
    first = issue(w, "alice", t)
    second = issue(w, "alice", t)
    assert second == first
    assert len(assumes(w, "alice", t)) == 1
    out = w.daemon.output()
    assert f"ticket={t} " in out and "source=cache" in out
    # the cached secret never reaches the log either
    assert first["SecretAccessKey"] not in out
    assert first["SessionToken"] not in out


def test_key_is_user_role_and_ticket(w):
    t1, t2 = new_id(), new_id()
    w.ticket(t1)
    w.ticket(t2)
    a1 = issue(w, "alice", t1)
    a2 = issue(w, "alice", t2)          # another ticket: STS again
    assert a2["AccessKeyId"] != a1["AccessKeyId"]
    # bob and the other role: his own key
    t3 = new_id()
    w.ticket(t3, requested_for="bob", role="pmp-administrator",
             approvers=["grace"])
    b3 = issue(w, "bob", t3, role="pmp-administrator")
    assert b3["AccessKeyId"] not in (a1["AccessKeyId"], a2["AccessKeyId"])
    assert len(assumes(w, "alice", t1)) == 1
    assert len(assumes(w, "alice", t2)) == 1
    assert len(assumes(w, "bob", t3)) == 1
    # and each key is reused on its own
    assert issue(w, "alice", t1) == a1
    assert issue(w, "alice", t2) == a2
    assert issue(w, "bob", t3, role="pmp-administrator") == b3
    assert len(assumes(w, "bob", t3)) == 1


def test_removed_from_group_is_refused_at_once_and_cache_wiped(w):
    t = new_id()
    w.ticket(t)
    group = worldmod.GROUPS[PM]
    first = issue(w, "alice", t)
    w.slapd.remove_member(group, ALICE)
    try:
        r = w.credentials("alice", PM, t)
        refused(r, 1, "R1")
        assert first["SecretAccessKey"] not in r.stderr
    finally:
        w.slapd.add_member(group, ALICE)
    # back in the group: the refusal wiped the cached credentials, so
    # these are new ones from STS
    again = issue(w, "alice", t)
    assert again["AccessKeyId"] != first["AccessKeyId"]
    assert len(assumes(w, "alice", t)) == 2


def test_ticket_withdrawn_is_refused_and_cache_wiped(w):
    t = new_id()
    w.ticket(t)
    first = issue(w, "alice", t)
    w.ticket(t, state="pending")
    refused(w.credentials("alice", PM, t), 1, "R3")
    w.ticket(t)
    again = issue(w, "alice", t)
    assert again["AccessKeyId"] != first["AccessKeyId"]


def test_decide_refusal_wipes_too(w):
    """A PAM account check refused for the key wipes it as well."""
    t = new_id()
    w.ticket(t)
    first = issue(w, "alice", t)
    w.ticket(t, approvers=["alice"])   # now self-approved: R4
    ans = w.daemon.request({"v": 1, "op": "decide", "user": "alice",
                            "role": PM, "ticket": t})
    assert ans["status"] == "deny" and "R4" in ans["rules"], ans
    w.ticket(t)
    assert issue(w, "alice", t)["AccessKeyId"] != first["AccessKeyId"]


def test_directory_unavailable_refuses_even_with_cached_credentials(w):
    t = new_id()
    w.ticket(t)
    first = issue(w, "alice", t)
    w.slapd.stop()
    try:
        r = w.credentials("alice", PM, t)
        refused(r, 3, "R9")
    finally:
        w.slapd.start()
    assert issue(w, "alice", t)["AccessKeyId"] != first["AccessKeyId"]


def test_shorter_duration_is_not_served_from_longer_credentials(w):
    t = new_id()
    w.ticket(t)
    first = issue(w, "alice", t)                       # up to 1 h
    short = issue(w, "alice", t, "--duration", "900")  # R8 allows 15 min
    assert short["AccessKeyId"] != first["AccessKeyId"]
    reqs = assumes(w, "alice", t)
    assert len(reqs) == 2 and int(reqs[-1]["duration"]) == 900
    # the short ones are now cached and serve a later short request
    assert issue(w, "alice", t, "--duration", "900") == short


def test_cached_answers_still_count_in_the_ledger(w, restore):
    """max_uses: the ledger reserves and commits for cached answers too."""
    w.configure(**{f"role {PM}": {"max_uses": "2"}})
    w.daemon.reload()
    time.sleep(0.3)
    t = new_id()
    w.ticket(t)
    first = issue(w, "alice", t)
    assert issue(w, "alice", t) == first       # second use, from cache
    refused(w.credentials("alice", PM, t), 1, "R7")
    assert len(assumes(w, "alice", t)) == 1


def test_reload_starts_with_an_empty_cache(w):
    t = new_id()
    w.ticket(t)
    first = issue(w, "alice", t)
    w.daemon.reload()
    time.sleep(0.3)
    assert issue(w, "alice", t)["AccessKeyId"] != first["AccessKeyId"]
    assert len(assumes(w, "alice", t)) == 2


def test_concurrent_requests_for_one_key(w):
    t = new_id()
    w.ticket(t)
    first = issue(w, "alice", t)
    results = []

    def one():
        results.append(w.credentials("alice", PM, t))

    # [daemon] max_per_uid (4) bounds one uid's requests in flight
    threads = [threading.Thread(target=one) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [r.returncode for r in results] == [0] * 3, \
        [r.stderr for r in results]
    assert all(json.loads(r.stdout) == first for r in results)
    assert len(assumes(w, "alice", t)) == 1


# ---- parallel gathering -----------------------------------------------------

def test_slow_ticket_and_directory_facts_still_combine(w):
    """The ticket arrives late (fetched while the directory is asked):
    the people it names are still resolved and judged."""
    t = new_id()
    w.ticket(t, approvers=["erin"], delay=0.5)
    assert w.credentials("alice", PM, t).returncode == 0
    t2 = new_id()
    w.ticket(t2, approvers=["carol"], requester="carol", delay=0.5)
    refused(w.credentials("alice", PM, t2), 1, "R4")


def test_ticket_refusal_and_directory_refusal_both_reported(w):
    """Both halves of the facts are gathered even when each fails."""
    t = new_id()
    w.ticket(t, requested_for="grace", state="pending", delay=0.3)
    ans = w.daemon.request({"v": 1, "op": "check", "user": "grace",
                            "role": PM, "ticket": t})
    assert ans["status"] == "deny", ans
    assert "R1" in ans["rules"] and "R3" in ans["rules"], ans


def test_ticket_fetch_bounded_by_the_request_deadline(w, restore):
    w.configure(daemon={"deadline": "2s"}, tickets={"timeout": "30s"})
    w.daemon.reload()
    time.sleep(0.3)
    t = new_id()
    w.ticket(t, delay=10)
    start = time.monotonic()
    r = w.credentials("alice", PM, t)
    elapsed = time.monotonic() - start
    refused(r, 3, "R9")
    assert elapsed < 6, elapsed
    # the worker (and its fetcher) serve the next request normally
    t2 = new_id()
    w.ticket(t2)
    assert w.credentials("alice", PM, t2).returncode == 0
