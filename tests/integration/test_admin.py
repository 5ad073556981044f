"""The administrators' commands through the real binaries: `pmpgate check`,
`pmpgate doctor`, `pmpgate review` and `pmpgate iam`, against pmpgated with
a real slapd, the ticket and STS emulators and the file ledger.

check must say exactly what the helper then does: every scenario below is
run through `pmpgate check` first (which records nothing) and then
through pmpgate-credentials as the user, and the verdicts, exit codes and
rules must agree.
"""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import common  # noqa: E402
import daemon  # noqa: E402
import world as worldmod  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs clients as test uids (root)")

PM, ADM = "procurement-manager", "pmp-administrator"
PEOPLE = "ou=people,dc=example,dc=com"
BASE_PRINCIPAL = f"arn:aws:iam::{worldmod.ACCOUNT}:user/pmpgate-broker"
ROLE_IDS = [f"R{i}" for i in range(1, 10)]

_n = [3000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


def dn(user):
    return f"uid={user},{PEOPLE}"


def pmpgate(*args, user=None, env=None, timeout=60):
    argv = [daemon.binary("pmpgate"), *args]
    e = {"PATH": "/usr/bin:/bin"}
    e.update(env or {})
    if user is not None:
        return daemon.as_user(user, argv, env=e, timeout=timeout)
    return subprocess.run(argv, capture_output=True, text=True, env=e,
                          timeout=timeout)


@pytest.fixture(scope="module")
def w():
    tmp = tempfile.mkdtemp(prefix="pmpgate-admin-")
    wd = worldmod.World(tmp)
    # lets the same tests run the sanitizer build (PMPGATE_BUILD=build-asan)
    wd.daemon.extra_env["NSS_WRAPPER_DISABLE_DEEPBIND"] = "1"
    wd.overrides = {
        "daemon": {"admin_group": daemon.ADMIN_GROUP},
        "aws": {"base_principal": BASE_PRINCIPAL},
    }
    try:
        wd.start()
        yield wd
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def restore(w):
    """Put the world back after a test that changes it."""
    overrides = json.loads(json.dumps(w.overrides))
    yield w
    if not w.slapd.running():
        w.slapd.start()
    w.sts.clear_faults()
    w.overrides = overrides
    w.configure()
    w.daemon.secret("ldap.pw", w.slapd.bind_password + "\n")
    if not w.daemon.running():
        w.daemon.start()
    else:
        w.daemon.reload()
        time.sleep(0.3)


def reload(w, **sections):
    w.configure(**sections)
    w.daemon.reload()
    time.sleep(0.3)


# ---- check agrees with the helper --------------------------------------------

def check_json(w, user, role, ticket=None):
    args = ["check", "--socket", w.daemon.socket, "--json", user, role]
    if ticket is not None:
        args.append(ticket)
    r = pmpgate(*args)
    assert r.stdout.strip(), (r.returncode, r.stderr)
    ans = json.loads(r.stdout)
    return r, ans


def helper_rules(r):
    return {t.strip("(") for t in r.stderr.split()
            if t.strip("(").startswith("R") and t.strip("(")[1:].isdigit()}


def agree(w, user, role, ticket, expect_exit, expect_rules=()):
    """check first (nothing recorded), then the helper: same verdict."""
    r, ans = check_json(w, user, role, ticket)
    failing = {c["id"] for c in ans["checks"] if c["result"] == "fail"}
    assert [c["id"] for c in ans["checks"]] == ROLE_IDS, ans
    assert r.returncode == ans["exit"] == expect_exit, (r.returncode, ans)
    assert failing == set(expect_rules), (failing, ans)
    assert set(ans.get("rules", [])) == failing, ans
    h = w.credentials(user, role, ticket)
    assert h.returncode == expect_exit, (h.returncode, h.stderr, ans)
    if expect_exit == 0:
        assert failing == set() and ans["status"] == "allow"
        assert json.loads(h.stdout)["AccessKeyId"].startswith("ASIA")
    else:
        named = helper_rules(h)
        assert named and named <= failing, (named, failing, h.stderr)
    return ans


def test_check_allow_explains_every_rule(w):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    ans = agree(w, "alice", PM, t, 0)
    # R5 applies only where requester_may_hold = no
    assert {c["id"]: c["result"] for c in ans["checks"]} == dict(
        {r: "pass" for r in ROLE_IDS}, R5="not-evaluated"), ans
    ev = ans["evidence"]
    assert ev["user_dn"] == dn("alice")
    assert ev["group_path"] == [worldmod.GROUPS[PM]]
    assert ev["ticket"]["state"] == "approved"
    assert ev["ticket"]["min_approvals"] == 1
    assert ev["approvers"] == [{"name": "erin", "dn": dn("erin"),
                                "counted": True, "why": "counted"}]


def test_check_nested_member_shows_the_group_path(w):
    t = new_id()
    w.ticket(t, requested_for="bob", role=ADM, approvers=["grace"])
    ans = agree(w, "bob", ADM, t, 0)
    assert ans["evidence"]["group_path"] == [
        "cn=catalogue-team,ou=teams,dc=example,dc=com",
        worldmod.GROUPS[ADM]]


SCENARIOS = {
    # name: (user, role, ticket fields, exit, failing rules)
    "R1 not in group": ("carol", PM, dict(requested_for="carol"), 1,
                        {"R1"}),
    "R1 no directory entry": ("nobody-in-ldap", PM,
                              dict(requested_for="nobody-in-ldap"), 1,
                              {"R1", "R3"}),
    "R3 pending": ("alice", PM, dict(state="requested"), 1, {"R3"}),
    "R3 other role": ("alice", PM, dict(role=ADM), 1, {"R3"}),
    "R3 other person": ("alice", PM, dict(requested_for="frank"), 1,
                        {"R3"}),
    "R3 window closed": ("alice", PM, dict(start=-7200, end=-60), 1,
                         {"R3"}),
    "R3 window not open": ("alice", PM, dict(start=3600, end=7200), 1,
                           {"R3"}),
    "R4 self-approval": ("alice", PM, dict(approvers=["alice"]), 1,
                         {"R4"}),
    "R4 requester approves": ("alice", PM, dict(approvers=["carol"]), 1,
                              {"R4"}),
    "R4 approver outside the approver group": (
        "alice", PM, dict(approvers=["grace"]), 1, {"R4"}),
    "R4 private offer needs two": (
        "alice", PM, dict(approvers=["erin"], category="private-offer"),
        1, {"R4"}),
    "R4 private offer with two": (
        "alice", PM, dict(approvers=["erin", "frank"],
                          category="private-offer"), 0, set()),
    "R4 the same person twice": (
        "alice", PM, dict(approvers=["erin", "erin"],
                          category="private-offer"), 1, {"R4"}),
    "R5 requester holds": ("bob", ADM, dict(requested_for="bob", role=ADM,
                                            requester="bob",
                                            approvers=["grace"]), 1,
                           {"R5"}),
    "R2 dave in both groups": ("dave", PM, dict(requested_for="dave"), 1,
                               {"R2"}),
    "R2 dave asks the other role": (
        "dave", ADM, dict(requested_for="dave", role=ADM,
                          approvers=["grace"]), 1, {"R2"}),
    "R8 window too short": ("alice", PM, dict(end=600), 1, {"R8"}),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_check_agrees_with_helper(w, name):
    user, role, fields, ex, rules = SCENARIOS[name]
    t = new_id()
    fields = dict(fields)
    now = time.time()
    for k in ("start", "end"):
        if k in fields:
            fields[k] = now + fields[k]
    w.ticket(t, **fields)
    agree(w, user, role, t, ex, rules)


def test_check_unknown_and_malformed_ticket(w):
    agree(w, "alice", PM, "CHG0999999", 1, {"R3"})
    agree(w, "alice", PM, "../etc/passwd", 1, {"R3"})


def test_check_r7_ticket_bound_to_another_user(w, restore):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    agree(w, "alice", PM, t, 0)
    # the ticket is now bound to alice: frank, once in the group and the
    # ticket rewritten for him, is still refused by the ledger
    w.slapd.add_member(worldmod.GROUPS[PM], dn("frank"))
    try:
        w.ticket(t, requested_for="frank", approvers=["erin"])
        ans = agree(w, "frank", PM, t, 1, {"R7"})
        assert ans["evidence"]["ticket_bound"]["user"] == "alice"
    finally:
        w.slapd.remove_member(worldmod.GROUPS[PM], dn("frank"))


def test_check_r6_conflicting_issuance(w, restore):
    # frank gets pmp-administrator, leaves its group, joins
    # procurement-managers: only the ledger (R6) stands in the way.
    w.slapd.add_member(worldmod.GROUPS[ADM], dn("frank"))
    t1 = new_id()
    w.ticket(t1, requested_for="frank", role=ADM, approvers=["grace"])
    agree(w, "frank", ADM, t1, 0)
    w.slapd.remove_member(worldmod.GROUPS[ADM], dn("frank"))
    w.slapd.add_member(worldmod.GROUPS[PM], dn("frank"))
    try:
        t2 = new_id()
        w.ticket(t2, requested_for="frank", approvers=["erin"])
        ans = agree(w, "frank", PM, t2, 1, {"R6"})
        assert ans["evidence"]["conflicting_issuance"]["role"] == ADM
    finally:
        w.slapd.remove_member(worldmod.GROUPS[PM], dn("frank"))


def test_check_r9_directory_down(w, restore):
    t = new_id()
    w.ticket(t)
    w.slapd.stop()
    agree(w, "alice", PM, t, 3, {"R9"})


def test_check_records_nothing(w):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    before = len([x for x in w.sts.requests()
                  if x.get("action") == "AssumeRole"])
    for _ in range(3):
        r, ans = check_json(w, "alice", PM, t)
        assert ans["status"] == "allow"
    after = len([x for x in w.sts.requests()
                 if x.get("action") == "AssumeRole"])
    assert before == after
    # the ticket is not bound: another check for another role still
    # shows only the rules that concern that role
    r, ans = check_json(w, "alice", ADM, t)
    failing = {c["id"] for c in ans["checks"] if c["result"] == "fail"}
    assert "R7" not in failing, ans


def test_check_without_ticket(w):
    r, ans = check_json(w, "alice", PM)
    failing = {c["id"] for c in ans["checks"] if c["result"] == "fail"}
    r1 = [c for c in ans["checks"] if c["id"] == "R1"][0]
    assert r1["result"] == "pass", ans
    assert "R3" in failing and r.returncode == 1


def test_check_text_output(w):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin", "grace"])
    r = pmpgate("check", "--socket", w.daemon.socket, "alice", PM, t)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"alice {PM} {t}: ALLOW" in out.splitlines()[0]
    for rid in ROLE_IDS:
        assert f"\n  {rid} " in out, out
    assert "group path:" in out and worldmod.GROUPS[PM] in out
    assert "grace (" in out and "not a member of the approver group" in out
    assert "erin (" in out and ": counted" in out
    assert out.rstrip().splitlines()[-1].startswith("decision: ")


def test_check_refuses_non_admins(w):
    t = new_id()
    w.ticket(t)
    r = pmpgate("check", "--socket", w.daemon.socket, "alice", PM, t,
                user="alice")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert r.stderr.startswith("pmpgate: error: ")
    assert "admin_group" in r.stderr
    # nobody-in-ldap is no admin either, and cannot learn about others
    r = pmpgate("check", "--socket", w.daemon.socket, "--json", "alice", PM,
                t, user="mallory")
    assert r.returncode == 2 and "checks" not in r.stdout


def test_check_allows_admin_group_members(w):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    r = pmpgate("check", "--socket", w.daemon.socket, "--json", "alice", PM,
                t, user="erin")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "allow"


@pytest.mark.parametrize("args", [[], ["alice"], ["a", "b", "c", "d"],
                                  ["alice", "Bad_Role"], ["--bogus"],
                                  ["alice", PM, "--socket"]])
def test_check_usage(w, args):
    r = pmpgate("check", "--socket", w.daemon.socket, *args)
    assert r.returncode == 2, (args, r.stderr)
    assert r.stdout == ""
    assert r.stderr.startswith("pmpgate: usage: "), r.stderr


# ---- review --------------------------------------------------------------------

def review(w, *args, user=None):
    return pmpgate("review", "--socket", w.daemon.socket, *args, user=user)


def rows_by(doc):
    return {(m["role"], m["user"]): m for m in doc["members"]}


def test_review_json_lists_members_stale_and_conflicts(w):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    assert w.credentials("alice", PM, t).returncode == 0
    r = review(w, "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["stale_days"] == 180
    rows = rows_by(doc)
    assert set(rows) >= {(PM, "alice"), (PM, "dave"), (ADM, "bob"),
                         (ADM, "dave")}
    alice = rows[(PM, "alice")]
    assert alice["dn"] == dn("alice") and alice["stale"] is False
    assert alice["last_issuance"].endswith("Z")
    assert rows[(PM, "dave")]["stale"] is True
    assert rows[(PM, "dave")]["last_issuance"] is None
    # dave is in both groups: R2 would refuse him either role
    assert rows[(PM, "dave")]["conflicting_roles"] == [ADM]
    assert rows[(ADM, "dave")]["conflicting_roles"] == [PM]
    assert rows[(PM, "alice")]["conflicting_roles"] == []
    assert rows[(ADM, "bob")]["via"] == \
        "cn=catalogue-team,ou=teams,dc=example,dc=com"


def test_review_stale_days(w):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    assert w.credentials("alice", PM, t).returncode == 0
    doc = json.loads(review(w, "--format", "json", "--stale-days",
                            "1").stdout)
    assert rows_by(doc)[(PM, "alice")]["stale"] is False
    assert doc["stale_days"] == 1


def test_review_flags_approvers_holding_the_role(w):
    w.slapd.add_member(worldmod.GROUPS[PM], dn("erin"))
    try:
        doc = json.loads(review(w, "--format", "json").stdout)
        rows = rows_by(doc)
        assert rows[(PM, "erin")]["approver"] is True
        assert rows[(PM, "alice")]["approver"] is False
    finally:
        w.slapd.remove_member(worldmod.GROUPS[PM], dn("erin"))


def test_review_table_and_csv(w):
    r = review(w)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    dave = [x for x in lines if x.strip().startswith("dave ")]
    assert len(dave) == 2, r.stdout
    assert all("stale" in x for x in dave)
    assert any(f"conflict:{ADM}" in x for x in dave)
    assert any(f"conflict:{PM}" in x for x in dave)
    assert f"{PM} (group {worldmod.GROUPS[PM]})" in r.stdout
    r = review(w, "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert set(rows[0]) == {"role", "user", "dn", "last_issuance", "stale",
                            "conflicting_roles", "approver", "via"}
    dave = [x for x in rows if x["user"] == "dave"]
    assert {x["conflicting_roles"] for x in dave} == {ADM, PM}
    assert all(x["stale"] == "yes" for x in dave)
    # a DN holds commas: the field is quoted, and parses back whole
    assert {x["dn"] for x in dave} == {dn("dave")}


def test_review_is_for_admins(w):
    r = review(w, user="alice")
    assert r.returncode == 2 and r.stdout == ""
    assert "admin_group" in r.stderr
    r = review(w, "--format", "json", user="erin")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args", [["--stale-days", "0"],
                                  ["--stale-days", "x"],
                                  ["--stale-days", "9999"],
                                  ["--format", "xml"], ["extra"]])
def test_review_usage(w, args):
    r = review(w, *args)
    assert r.returncode == 2 and r.stderr.startswith("pmpgate: usage: ")


def test_review_directory_down_is_an_error(w, restore):
    w.slapd.stop()
    r = review(w, "--format", "json")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert r.stdout == ""
    assert "directory" in r.stderr or "ldap" in r.stderr


# ---- doctor -------------------------------------------------------------------

def doctor(w, *args):
    env = w.daemon.env()   # nss_wrapper: the daemon's user exists
    return pmpgate("doctor", "-c", w.daemon.config, "--socket",
                   w.daemon.socket, *args, env=env)


def lines_of(r, result=None, check=None):
    out = []
    for line in r.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        if result is not None and parts[0] != result:
            continue
        if check is not None and parts[1] != check:
            continue
        out.append(line)
    return out


def test_doctor_all_ok(w):
    r = doctor(w)
    assert r.returncode == 0, r.stdout + r.stderr
    assert lines_of(r, "FAIL") == [], r.stdout
    for check in ("config", "conflicts", "principal", "daemon-user",
                  "config-file", "secret", "state-dir", "log-dir",
                  "socket", "daemon", "directory", "tickets", "sts",
                  "ledger", "audit-key"):
        assert lines_of(r, "OK", check), (check, r.stdout)
    assert BASE_PRINCIPAL in "\n".join(lines_of(r, "OK", "sts"))
    # every line is one check: RESULT NAME detail
    for line in r.stdout.splitlines():
        assert line.split()[0] in ("OK", "WARN", "SKIP", "FAIL"), line


def test_doctor_world_writable_config(w, restore):
    os.chmod(w.daemon.config, 0o666)
    try:
        r = doctor(w, "--offline")
        assert r.returncode == 1, r.stdout
        bad = lines_of(r, "FAIL", "config-file")
        assert bad and "writable by group or others" in bad[0], r.stdout
        assert "fix: chmod go-w" in bad[0]
        assert lines_of(r, "FAIL", "config"), r.stdout  # pmpgated -t too
        assert lines_of(r, "SKIP", "live")
    finally:
        os.chmod(w.daemon.config, 0o644)


def test_doctor_secret_readable_by_others(w, restore):
    pw = os.path.join(w.daemon.secrets, "ldap.pw")
    os.chmod(pw, 0o644)
    try:
        r = doctor(w, "--offline")
        bad = [x for x in lines_of(r, "FAIL", "secret") if pw in x]
        assert bad and "readable by others" in bad[0], r.stdout
        assert r.returncode == 1
    finally:
        os.chmod(pw, 0o600)


def test_doctor_wrong_bind_password(w, restore):
    w.daemon.secret("ldap.pw", "not-the-password\n")
    r = doctor(w)
    assert r.returncode == 1, r.stdout
    bad = lines_of(r, "FAIL", "directory")
    assert bad and "nvalid credentials" in bad[0], r.stdout
    assert "bind_password_file" in bad[0]
    assert "not-the-password" not in r.stdout + r.stderr
    assert w.slapd.bind_password not in r.stdout + r.stderr
    assert lines_of(r, "OK", "sts") and lines_of(r, "OK", "tickets")


def test_doctor_wrong_directory_ca(w, restore):
    other = common.TestCA(os.path.join(w.dir, "other-ca"), name="other")
    reload(w, directory={"ca_file": other.cert})
    r = doctor(w)
    assert r.returncode == 1, r.stdout
    bad = lines_of(r, "FAIL", "directory")
    assert bad and "TLS" in bad[0] and "ca_file" in bad[0], r.stdout


def test_doctor_unreachable_sts(w, restore):
    port = common.free_port()
    reload(w, aws={"sts_endpoint": f"https://127.0.0.1:{port}"})
    r = doctor(w)
    assert r.returncode == 1, r.stdout
    bad = lines_of(r, "FAIL", "sts")
    assert bad and "sts_endpoint" in bad[0], r.stdout
    assert lines_of(r, "OK", "directory")


def test_doctor_base_principal_mismatch(w, restore):
    reload(w, aws={"base_principal":
                   f"arn:aws:iam::{worldmod.ACCOUNT}:role/someone-else"})
    r = doctor(w)
    bad = lines_of(r, "FAIL", "sts")
    assert bad and "someone-else" in bad[0] and "pmpgate-broker" in bad[0]


def test_doctor_wrong_ticket_token(w, restore):
    w.daemon.secret("tickets.token", "wrong-token\n")
    try:
        r = doctor(w)
        bad = lines_of(r, "FAIL", "tickets")
        assert bad and "refused our credentials" in bad[0], r.stdout
        assert "wrong-token" not in r.stdout
    finally:
        w.daemon.secret("tickets.token", w.token + "\n")


def test_doctor_one_sided_conflicts(w, restore):
    reload(w, **{f"role {ADM}": {"conflicts": None}})
    r = doctor(w, "--offline")
    bad = lines_of(r, "FAIL", "conflicts")
    assert bad and f"add {PM} to [role {ADM}] conflicts" in bad[0], r.stdout


def test_doctor_daemon_down(w, restore):
    w.daemon.stop()
    r = doctor(w)
    assert r.returncode == 1
    assert lines_of(r, "FAIL", "daemon"), r.stdout
    assert lines_of(r, "FAIL", "socket"), r.stdout


def test_doctor_live_checks_are_for_admins(w):
    env = w.daemon.env()
    r = pmpgate("doctor", "-c", w.daemon.config, "--socket", w.daemon.socket,
                user="alice", env=env)
    bad = lines_of(r, "FAIL", "daemon")
    assert bad and "admin_group" in bad[0], r.stdout


# ---- iam ---------------------------------------------------------------------

def iam(w, *args):
    return pmpgate("iam", *args, "-c", w.daemon.config)


@pytest.mark.parametrize("role", [PM, ADM])
def test_iam_trust_policy(w, role):
    r = iam(w, "trust-policy", role)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["Version"] == "2012-10-17"
    (st,) = doc["Statement"]
    assert st["Effect"] == "Allow"
    assert st["Principal"] == {"AWS": BASE_PRINCIPAL}
    assert set(st["Action"]) == {"sts:AssumeRole", "sts:TagSession",
                                 "sts:SetSourceIdentity"}
    c = st["Condition"]
    assert c["Null"] == {"sts:SourceIdentity": "false",
                         "aws:RequestTag/pmpgate:ticket": "false"}
    assert set(c["ForAllValues:StringEquals"]["aws:TagKeys"]) == {
        "pmpgate:ticket", "pmpgate:user", "pmpgate:approvers"}


def test_iam_trust_policy_with_external_id(w, restore):
    w.configure(**{f"role {PM}": {"external_id": "ext-1234"}})
    r = iam(w, "trust-policy", PM)
    cond = json.loads(r.stdout)["Statement"][0]["Condition"]
    assert cond["StringEquals"] == {"sts:ExternalId": "ext-1234"}


def test_iam_trust_policy_needs_base_principal(w, restore):
    w.configure(aws={"base_principal": None})
    r = iam(w, "trust-policy", PM)
    assert r.returncode == 2 and r.stdout == ""
    assert "base_principal" in r.stderr


def test_iam_scp(w):
    r = iam(w, "scp")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["Version"] == "2012-10-17"
    st = {s["Sid"]: s for s in doc["Statement"]}
    admin_arn = f"arn:aws:iam::{worldmod.ACCOUNT}:role/{ADM}"
    pm_arn = f"arn:aws:iam::{worldmod.ACCOUNT}:role/{PM}"
    assert all(s["Effect"] == "Deny" for s in doc["Statement"])
    pmp = st["PrivateMarketplaceOnlyByPmpAdministrator"]
    for a in ("AssociateProductsWithPrivateMarketplace",
              "DisassociateProductsFromPrivateMarketplace",
              "CreatePrivateMarketplace", "UpdatePrivateMarketplaceSettings"):
        assert f"aws-marketplace:{a}" in pmp["Action"]
    assert pmp["Condition"] == {"ArnNotLike": {"aws:PrincipalArn":
                                               admin_arn}}
    cs = st["PrivateMarketplaceChangeSetsOnlyByPmpAdministrator"]
    assert cs["Action"] == "aws-marketplace:StartChangeSet"
    assert {"AllowProductProcurement", "DenyProductProcurement"} <= set(
        cs["Condition"]["StringEquals"]["catalog:ChangeType"])
    assert cs["Condition"]["ArnNotLike"] == {"aws:PrincipalArn": admin_arn}
    sub = st["SubscriptionsOnlyByProcurementManager"]
    assert {"aws-marketplace:Subscribe", "aws-marketplace:Unsubscribe",
            "aws-marketplace:CreatePrivateMarketplaceRequests"} <= set(
        sub["Action"])
    assert sub["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": pm_arn}}
    si = st["MarketplaceRolesOnlyThroughPmpgate"]
    assert si["Action"] == "aws-marketplace:*"
    assert set(si["Condition"]["ArnLike"]["aws:PrincipalArn"]) == {
        admin_arn, pm_arn}
    assert si["Condition"]["Null"] == {"aws:SourceIdentity": "true"}


def test_iam_scp_other_role_names(w):
    r = iam(w, "scp", "--admin-role", "catalogue", "--subscriber-role", PM)
    assert r.returncode == 2 and "[role catalogue]" in r.stderr


@pytest.mark.parametrize("args", [[], ["trust-policy"], ["scp", "x"],
                                  ["trust-policy", "Bad_Role"], ["bogus"]])
def test_iam_usage(w, args):
    r = iam(w, *args)
    assert r.returncode == 2 and r.stderr.startswith("pmpgate: usage: ")


def test_iam_unknown_role(w):
    r = iam(w, "trust-policy", "no-such-role")
    assert r.returncode == 2 and "no [role no-such-role]" in r.stderr


def test_iam_templates_parse():
    d = os.path.join(HERE, "..", "..", "conf", "iam")
    tp = json.load(open(os.path.join(d, "trust-policy.json")))
    assert tp["Statement"][0]["Condition"]["Null"][
        "sts:SourceIdentity"] == "false"
    scp = json.load(open(os.path.join(d, "scp.json")))
    assert len(scp["Statement"]) == 4


# ---- help and version ---------------------------------------------------------

@pytest.mark.parametrize("cmd", ["check", "doctor", "review", "iam"])
def test_help(cmd):
    r = pmpgate(cmd, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"Usage: pmpgate {cmd}")
    assert r.stderr == ""


def test_top_level_help_lists_commands():
    r = pmpgate("--help")
    assert r.returncode == 0
    for cmd in ("check USER ROLE", "doctor", "review", "iam trust-policy"):
        assert cmd in r.stdout
