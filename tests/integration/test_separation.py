"""Separation of duties at issuance (R2, R4, R5, R6, R7) through the real
binaries: pmpgate-credentials -> pmpgated -> slapd, ticket emulator, STS
emulator, and the file ledger.
"""
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import world as worldmod  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs clients as test uids (root)")

PM, ADM = "procurement-manager", "pmp-administrator"
PEOPLE = "ou=people,dc=example,dc=com"
WINDOW = 4  # seconds: [separation] window of this module's daemon

_n = [2000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


def dn(user):
    return f"uid={user},{PEOPLE}"


@pytest.fixture(scope="module")
def w():
    tmp = tempfile.mkdtemp(prefix="pmpgate-sod-")
    wd = worldmod.World(tmp)
    wd.overrides = {"separation": {"window": f"{WINDOW}s"},
                    f"role {ADM}": {"max_uses": "1"}}
    try:
        wd.start()
        yield wd
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def outcome(r):
    """(exit code, the rule ids named on stderr)."""
    rules = sorted({t.strip("(") for t in r.stderr.split()
                    if t.strip("(").startswith("R") and
                    t.strip("(")[1:].isdigit()})
    return r.returncode, rules


def allowed(r):
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('{"Version":1,')


def refused(r, *rules):
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stdout == ""
    got = outcome(r)[1]
    for rule in rules:
        assert rule in got, (rule, r.stderr)
    return r.stderr


# ---- R4 four-eyes ---------------------------------------------------------

def test_self_approval_refused(w):
    t = new_id()
    w.ticket(t, approvers=["alice"])
    assert "approved only by you" in refused(
        w.credentials("alice", PM, t), "R4")


def test_self_approval_in_other_letter_case_refused(w):
    t = new_id()
    w.ticket(t, approvers=["ALICE"])
    refused(w.credentials("alice", PM, t), "R4")


def test_approval_by_the_requester_refused(w):
    t = new_id()
    w.ticket(t, requester="erin", approvers=["erin"])
    assert "approved only by its requester" in refused(
        w.credentials("alice", PM, t), "R4")


def test_approver_outside_the_approver_group_refused(w):
    t = new_id()
    w.ticket(t, approvers=["mallory"])
    assert "outside the approver group" in refused(
        w.credentials("alice", PM, t), "R4")


def test_approver_unknown_to_the_directory_refused(w):
    t = new_id()
    w.ticket(t, approvers=["ghost"])
    refused(w.credentials("alice", PM, t), "R4")


def test_one_approver_listed_twice_where_two_are_needed(w):
    t = new_id()
    w.ticket(t, category="private-offer", approvers=["erin", "ERIN", "erin"])
    assert "1 approval that counts, 2 needed" in refused(
        w.credentials("alice", PM, t), "R4")


def test_two_distinct_approvals_on_a_private_offer(w):
    t = new_id()
    w.ticket(t, category="private-offer", approvers=["erin", "frank"])
    allowed(w.credentials("alice", PM, t))
    req = [x for x in w.sts.requests() if x.get("action") == "AssumeRole"][-1]
    assert req["tags"]["pmpgate:approvers"] == "erin frank"


def test_one_approval_on_a_public_offer(w):
    t = new_id()
    w.ticket(t, category="public-offer", approvers=["frank"])
    allowed(w.credentials("alice", PM, t))


def test_nested_approver_group_membership_counts(w):
    # grace approves through cn=marketplace-approvers; nest that group
    # inside the procurement approvers for this test
    group = "cn=marketplace-approvers,ou=groups,dc=example,dc=com"
    w.slapd.add_member(worldmod.APPROVERS[PM], group)
    try:
        t = new_id()
        w.ticket(t, approvers=["grace"])
        allowed(w.credentials("alice", PM, t))
    finally:
        w.slapd.remove_member(worldmod.APPROVERS[PM], group)


# ---- R5 requester-holds ---------------------------------------------------

def test_requester_may_not_receive_pmp_administrator(w):
    t = new_id()
    w.ticket(t, role=ADM, requested_for="bob", requester="bob",
             approvers=["grace"])
    refused(w.credentials("bob", ADM, t), "R5")


def test_requester_may_hold_procurement_manager(w):
    t = new_id()
    w.ticket(t, requested_for="alice", requester="alice", approvers=["erin"])
    allowed(w.credentials("alice", PM, t))


# ---- R2 conflicting groups --------------------------------------------------

@pytest.mark.parametrize("role,approver", [(PM, "erin"), (ADM, "grace")])
def test_member_of_both_groups_refused_both(w, role, approver):
    t = new_id()
    w.ticket(t, role=role, requested_for="dave", approvers=[approver])
    refused(w.credentials("dave", role, t), "R2")


# ---- every failing rule ---------------------------------------------------

def test_every_failing_rule_is_reported(w):
    # dave: both groups (R2), self-approved (R4), requester (R5, admin)
    t = new_id()
    w.ticket(t, role=ADM, requested_for="dave", requester="dave",
             approvers=["dave"], category="private-offer")
    err = refused(w.credentials("dave", ADM, t), "R2", "R4", "R5")
    assert "R2 conflicting-groups" in err
    assert "R4 four-eyes" in err
    assert "R5 requester-holds" in err


# ---- R6 conflicting issuance (the ledger) -----------------------------------

def test_conflicting_issuance_within_and_after_the_window(w):
    """carol is a procurement-manager, is issued it, then the identity
    team moves her to the administrators: within the window she may not
    be issued pmp-administrator; after it she may."""
    w.slapd.add_member(worldmod.GROUPS[PM], dn("carol"))
    try:
        t1 = new_id()
        w.ticket(t1, requested_for="carol", requester="frank",
                 approvers=["erin"])
        allowed(w.credentials("carol", PM, t1))
    finally:
        w.slapd.remove_member(worldmod.GROUPS[PM], dn("carol"))
    w.slapd.add_member(worldmod.GROUPS[ADM], dn("carol"))
    try:
        t2 = new_id()
        w.ticket(t2, role=ADM, requested_for="carol", requester="frank",
                 approvers=["grace"])
        assert "issued conflicting role procurement-manager" in refused(
            w.credentials("carol", ADM, t2), "R6")
        time.sleep(WINDOW + 1)
        allowed(w.credentials("carol", ADM, t2))
    finally:
        w.slapd.remove_member(worldmod.GROUPS[ADM], dn("carol"))


def test_one_person_named_two_ways(w):
    """With a user_filter that matches two attributes, root (the PAM
    module) may name carol as "carol" or as "carol@example.com".  The
    ledger knows the person, not the spelling: R6 and R7 see both."""
    time.sleep(WINDOW + 1)  # nothing issued to carol before counts
    w.configure(directory={"user_filter":
                           "(&(objectClass=posixAccount)"
                           "(|(uid=%u)(mail=%u)))"})
    w.daemon.reload()
    time.sleep(0.5)

    def issue(user, role, ticket):
        return w.daemon.request({"v": 1, "op": "issue", "user": user,
                                 "role": role, "ticket": ticket})
    try:
        w.slapd.add_member(worldmod.GROUPS[PM], dn("carol"))
        try:
            t1 = new_id()
            w.ticket(t1, requested_for="carol", requester="frank",
                     approvers=["erin"])
            ans = issue("carol@example.com", PM, t1)
            assert ans["status"] == "allow", ans
            # the same ticket by the other spelling: the same person (R7)
            ans = issue("carol", PM, t1)
            assert ans["status"] == "allow", ans
        finally:
            w.slapd.remove_member(worldmod.GROUPS[PM], dn("carol"))
        w.slapd.add_member(worldmod.GROUPS[ADM], dn("carol"))
        try:
            t2 = new_id()
            w.ticket(t2, role=ADM, requested_for="carol", requester="frank",
                     approvers=["grace"])
            for name in ("carol", "carol@example.com"):
                ans = issue(name, ADM, t2)
                assert ans["status"] == "deny", ans
                assert "R6" in ans["rules"], ans
                assert "issued conflicting role procurement-manager" in \
                    ans["reason"], ans
        finally:
            w.slapd.remove_member(worldmod.GROUPS[ADM], dn("carol"))
    finally:
        w.configure()
        w.daemon.reload()
        time.sleep(0.5)
    time.sleep(WINDOW + 1)


def test_ledger_name_is_the_least_login_value(w):
    """The ledger's name for a person is the least value of the login
    attribute, whatever order the server keeps the values in."""
    time.sleep(WINDOW + 1)
    w.slapd.modify(f"dn: {dn('carol')}\nchangetype: modify\n"
                   "add: uid\nuid: a-carol\n")
    w.slapd.add_member(worldmod.GROUPS[PM], dn("carol"))
    try:
        t = new_id()
        w.ticket(t, requested_for="carol", requester="frank",
                 approvers=["erin"])
        ans = w.daemon.request({"v": 1, "op": "issue", "user": "carol",
                                "role": PM, "ticket": t})
        assert ans["status"] == "allow", ans
        state = ""
        for name in ("ledger.json", "ledger.journal"):
            path = os.path.join(w.daemon.state, name)
            if os.path.exists(path):
                with open(path) as f:
                    state += f.read()
        assert '"user":"a-carol"' in state.replace(" ", ""), state[-2000:]
    finally:
        w.slapd.remove_member(worldmod.GROUPS[PM], dn("carol"))
        w.slapd.modify(f"dn: {dn('carol')}\nchangetype: modify\n"
                       "delete: uid\nuid: a-carol\n")
    time.sleep(WINDOW + 1)


def test_entry_without_a_login_value_is_refused(w):
    """When the first (ATTR=%u) attribute of user_filter is missing from
    the entry, the ledger cannot name the person: refused (R9)."""
    w.configure(directory={"user_filter":
                           "(&(objectClass=posixAccount)"
                           "(|(employeeNumber=%u)(uid=%u)))"})
    w.daemon.reload()
    time.sleep(0.5)
    try:
        t = new_id()
        w.ticket(t, requested_for="alice", approvers=["erin"])
        ans = w.daemon.request({"v": 1, "op": "decide", "user": "alice",
                                "role": PM, "ticket": t})
        assert ans["status"] == "error" and ans["rules"] == ["R9"], ans
        assert "names people in the ledger" in ans["reason"], ans
    finally:
        w.configure()
        w.daemon.reload()
        time.sleep(0.5)


def test_memberuid_approver_named_by_mail(w):
    """With memberUid groups (login names) and people named by mail in
    tickets, an approver counts by the login name of the entry the mail
    resolves to, not by the mail itself."""
    groups = "ou=groups,dc=example,dc=com"
    w.slapd.add_ldif(f"dn: cn=pm-approvers-posix,{groups}\n"
                     "objectClass: posixGroup\ncn: pm-approvers-posix\n"
                     "gidNumber: 30077\nmemberUid: erin\n")
    w.configure(directory={"group_membership": "memberUid",
                           "ticket_user_attr": "mail"},
                **{f"role {PM}": {
                    "group": f"cn=pm-posix,{groups}",
                    "approver_group": f"cn=pm-approvers-posix,{groups}"}})
    w.daemon.reload()
    time.sleep(0.5)
    try:
        t = new_id()
        w.ticket(t, requested_for="alice@example.com",
                 requester="carol@example.com",
                 approvers=["erin@example.com"])
        ans = w.daemon.request({"v": 1, "op": "decide", "user": "alice",
                                "role": PM, "ticket": t})
        assert ans["status"] == "allow", ans
        # and one not in the group still does not count
        t2 = new_id()
        w.ticket(t2, requested_for="alice@example.com",
                 requester="carol@example.com",
                 approvers=["grace@example.com"])
        ans = w.daemon.request({"v": 1, "op": "decide", "user": "alice",
                                "role": PM, "ticket": t2})
        assert ans["status"] == "deny" and "R4" in ans["rules"], ans
    finally:
        w.configure()
        w.daemon.reload()
        time.sleep(0.5)


# ---- R7 ticket binding ------------------------------------------------------

def test_ticket_reused_by_a_second_user(w):
    """A ticket issued to alice, then edited to name carol (also a
    procurement-manager now), is bound to alice."""
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    allowed(w.credentials("alice", PM, t))
    w.slapd.add_member(worldmod.GROUPS[PM], dn("mhernandez"))
    try:
        w.ticket(t, requested_for="mhernandez", approvers=["erin"])
        assert "bound to another user" in refused(
            w.credentials("mhernandez", PM, t), "R7")
    finally:
        w.slapd.remove_member(worldmod.GROUPS[PM], dn("mhernandez"))


def test_ticket_reused_for_the_other_role(w):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    allowed(w.credentials("alice", PM, t))
    w.ticket(t, role=ADM, requested_for="alice", approvers=["grace"])
    ans = w.daemon.request({"v": 1, "op": "decide", "user": "alice",
                            "role": ADM, "ticket": t})
    assert ans["status"] == "deny"
    assert "R7" in ans["rules"], ans


def test_same_user_same_role_may_reuse_the_ticket(w):
    t = new_id()
    w.ticket(t, approvers=["erin"])
    allowed(w.credentials("alice", PM, t))
    allowed(w.credentials("alice", PM, t))


def test_max_uses(w):
    t = new_id()
    w.ticket(t, role=ADM, requested_for="bob", approvers=["grace"])
    allowed(w.credentials("bob", ADM, t))
    assert "max_uses 1" in refused(w.credentials("bob", ADM, t), "R7")


# ---- races -------------------------------------------------------------------

def test_race_one_ticket_max_uses_one(w):
    """32 concurrent helpers spend a ticket that may be used once: exactly
    one gets credentials, every time."""
    for _ in range(20):
        t = new_id()
        w.ticket(t, role=ADM, requested_for="bob", approvers=["grace"])
        with concurrent.futures.ThreadPoolExecutor(32) as ex:
            rs = list(ex.map(lambda _: w.credentials("bob", ADM, t),
                             range(32)))
        codes = sorted(r.returncode for r in rs)
        ok = [r for r in rs if r.returncode == 0]
        assert len(ok) == 1, codes
        for r in rs:
            if r.returncode != 0:
                assert r.stdout == ""
                # refused by the binding (R7), or told the daemon is busy
                assert r.returncode in (1, 3), r.stderr
                assert "(R7" in r.stderr or "busy" in r.stderr, r.stderr
