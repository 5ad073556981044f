"""[aws] credentials = instance-profile: pmpgated takes its base
credentials from the instance metadata service (IMDSv2) and signs
AssumeRole with them.

The IMDS emulator (tests/harness/imds_emulator.py) hands out the STS
emulator's base key pair with a session token; the STS emulator verifies
every signature with botocore and requires that token.  Each test points
the daemon at a fresh IMDS emulator (a reload), so the daemon's cache of
instance-profile credentials starts cold.
"""
import concurrent.futures
import http.client
import json
import os
import shutil
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import imds_emulator  # noqa: E402
import sts_emulator  # noqa: E402
import world as worldmod  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs clients as test uids (root)")

PM = "procurement-manager"
_n = [4000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


@pytest.fixture(scope="module")
def w():
    tmp = tempfile.mkdtemp(prefix="pmpgate-imds-")
    wd = None
    try:
        wd = worldmod.World(tmp)
        # An STS whose base principal carries a session token, as
        # instance-profile credentials always do.
        wd.sts.stop()
        wd.sts = sts_emulator.StsEmulator(tmp, wd.ca, base_token=True,
                                          name="sts-imds").start()
        wd.imds = new_imds(wd)
        wd.overrides = {"aws": {"credentials": "instance-profile",
                                "metadata_endpoint": wd.imds.url}}
        wd.start()
        yield wd
    finally:
        try:
            if wd is not None:
                wd.daemon.stop()    # raises on sanitizer reports
        finally:
            if wd is not None:
                wd.stop()
                if getattr(wd, "imds", None) is not None:
                    wd.imds.stop()
            shutil.rmtree(tmp, ignore_errors=True)


def new_imds(w, **kw):
    return imds_emulator.ImdsEmulator(w.sts.base_key_id, w.sts.base_secret,
                                      w.sts.base_token, **kw).start()


def point_at(w, imds):
    """Reconfigure the daemon for IMDS at IMDS.url and reload it."""
    w.overrides = {"aws": {"credentials": "instance-profile",
                           "metadata_endpoint": imds.url}}
    w.configure()
    w.daemon.reload()
    time.sleep(0.4)


@pytest.fixture
def imds(w):
    """A fresh IMDS emulator the daemon uses (a cold cache)."""
    old = w.imds
    w.imds = new_imds(w)
    point_at(w, w.imds)
    old.stop()
    yield w.imds
    w.imds.clear_faults()


def issue(w, ticket, user="alice"):
    r = w.credentials(user, PM, ticket)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr,
                               w.daemon.output()[-2000:])
    return json.loads(r.stdout)


def assumes(w, ticket, user="alice"):
    return [r for r in w.sts.requests() if r.get("action") == "AssumeRole"
            and r.get("session_name") == f"{user}@{ticket}"]


def refused_r9(w, ticket, *needles):
    """An issuance refused R9 (exit 3), with an audit error record; the
    reason carries every NEEDLE.  Returns the helper's stderr."""
    r = w.credentials("alice", PM, ticket)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "R9" in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)
    errors = [x for x in w.daemon.audit_records()
              if x.get("event") == "error" and x.get("ticket") == ticket]
    assert errors, "no audit error record"
    assert errors[-1]["rules"] == ["R9"]
    for n in needles:
        assert n in errors[-1]["reason"], (n, errors[-1]["reason"])
    assert not assumes(w, ticket)
    return r.stderr


# ---- the emulator itself enforces IMDSv2 --------------------------------------

def test_emulator_enforces_imdsv2(imds):
    """So that a passing daemon test means the daemon sends the token."""
    c = http.client.HTTPConnection("127.0.0.1", imds.port, timeout=5)

    def req(method, path, headers):
        c.request(method, path, headers=headers)
        r = c.getresponse()
        return r.status, r.read().decode()

    ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    assert req("PUT", imds_emulator.TOKEN_PATH, {})[0] == 400
    assert req("PUT", imds_emulator.TOKEN_PATH,
               {"X-aws-ec2-metadata-token-ttl-seconds": "21601"})[0] == 400
    assert req("PUT", imds_emulator.TOKEN_PATH,
               dict(ttl, **{"X-Forwarded-For": "10.0.0.1"}))[0] == 403
    st, tok = req("PUT", imds_emulator.TOKEN_PATH, ttl)
    assert st == 200 and tok
    assert req("GET", imds_emulator.CREDS_PATH, {})[0] == 401
    assert req("GET", imds_emulator.CREDS_PATH,
               {"X-aws-ec2-metadata-token": tok + "x"})[0] == 401
    st, role = req("GET", imds_emulator.CREDS_PATH,
                   {"X-aws-ec2-metadata-token": tok})
    assert (st, role) == (200, imds_emulator.DEFAULT_ROLE)
    st, body = req("GET", imds_emulator.CREDS_PATH + role,
                   {"X-aws-ec2-metadata-token": tok})
    assert st == 200 and json.loads(body)["Code"] == "Success"
    c.close()


# ---- issuing ------------------------------------------------------------------

def test_issues_with_instance_profile_credentials(w, imds):
    t = new_id()
    w.ticket(t)
    creds = issue(w, t)
    assert creds["AccessKeyId"].startswith("ASIA")
    assert creds["AccessKeyId"] != w.sts.base_key_id
    # One IMDSv2 exchange: a token, the role, its credentials.
    assert imds.counts() == {"token": 1, "role": 1, "creds": 1, "other": 0}
    put = [x for x in imds.log if x["method"] == "PUT"]
    assert put and put[0]["ttl"] == "60" and not put[0]["forwarded"]
    gets = [x for x in imds.log if x["method"] == "GET"]
    assert all(x["had_token"] for x in gets)
    assert gets[-1]["path"] == (imds_emulator.CREDS_PATH +
                                imds_emulator.DEFAULT_ROLE)
    # STS verified the signature made with the base keys and their token.
    a = assumes(w, t)
    assert len(a) == 1
    assert a[0]["signature_ok"] is True
    assert a[0]["caller_key_id"] == w.sts.base_key_id
    assert a[0]["session_token"] is True


def test_aws_cli_with_instance_profile(w, imds):
    t = new_id()
    w.ticket(t, approvers=["erin", "frank"])
    r = w.aws("alice", "sts", "get-caller-identity", "--output", "json",
              ticket=t)
    assert r.returncode == 0, r.stderr
    ident = json.loads(r.stdout)
    assert ident["Arn"] == (f"arn:aws:sts::{worldmod.ACCOUNT}:assumed-role/"
                            f"{PM}/alice@{t}")
    assert imds.counts()["creds"] == 1


def test_second_issuance_makes_no_imds_request(w, imds):
    t1, t2, t3 = new_id(), new_id(), new_id()
    for t in (t1, t2, t3):
        w.ticket(t)
    issue(w, t1)
    assert imds.counts()["creds"] == 1
    # Other tickets: no cached STS answer, so AssumeRole runs again, but
    # with the cached base credentials.
    issue(w, t2)
    issue(w, t3)
    assert imds.counts() == {"token": 1, "role": 1, "creds": 1, "other": 0}
    assert len(assumes(w, t2)) == 1 and len(assumes(w, t3)) == 1


def test_concurrent_first_issuances_fetch_once(w, imds):
    """Workers that find the cache cold at once wait for one refresh."""
    tickets = [new_id() for _ in range(4)]
    for t in tickets:
        w.ticket(t)
    imds.set_fault("slow:0.3", step="creds", count=1)
    with concurrent.futures.ThreadPoolExecutor(len(tickets)) as ex:
        results = list(ex.map(lambda t: w.credentials("alice", PM, t),
                              tickets))
    assert [r.returncode for r in results] == [0] * len(tickets), \
        [r.stderr for r in results]
    assert imds.counts()["creds"] == 1


def test_near_expiry_credentials_are_refreshed(w, imds):
    # Credentials that expire in 4 minutes: inside the 5-minute margin,
    # so every load fetches again.
    imds.expires_in = 240
    tickets = [new_id() for _ in range(4)]
    for t in tickets:
        w.ticket(t)
    issue(w, tickets[0])
    issue(w, tickets[1])
    assert imds.counts()["creds"] == 2
    assert imds.counts()["token"] == 2
    # Rotated to 6 hours: one more fetch, then reuse.
    imds.expires_in = 6 * 3600
    issue(w, tickets[2])
    issue(w, tickets[3])
    assert imds.counts()["creds"] == 3


# ---- refusals -----------------------------------------------------------------

def test_imds_down_refuses_r9(w, imds):
    imds.stop()
    t = new_id()
    w.ticket(t)
    t0 = time.monotonic()
    err = refused_r9(w, t, "instance metadata", imds.url, "did not answer",
                     "token (PUT /latest/api/token)")
    assert time.monotonic() - t0 < 6
    assert "pmpgate-credentials:" in err
    # Back up: issued again, without a restart of the daemon.
    imds.start()
    t2 = new_id()
    w.ticket(t2)
    issue(w, t2)
    assert imds.counts()["creds"] == 1


@pytest.mark.parametrize("kind,step,needles", [
    ("500", "token", ("token (PUT /latest/api/token): HTTP 500",)),
    ("401", "role", ("role name (GET /latest/meta-data/iam/security-"
                     "credentials/): HTTP 401",)),
    ("404", "role", ("HTTP 404 (no IAM role is attached to this instance)",)),
    ("500", "creds", ("credentials (GET /latest/meta-data/iam/security-"
                      "credentials/pmpgate-broker-instance): HTTP 500",)),
    ("not-json", "creds", ("credentials answer is not one JSON object",)),
    ("failure", "creds", ('Code "Failure", not "Success": Instance profile '
                          'is not ready',)),
    ("no-token", "creds", ("credentials answer has no Token",)),
    ("expired", "creds", ("the credentials expired at",)),
    ("bad-role", "role", ("not an IAM role name",)),
    ("huge", "creds", ("answer is larger than 16384 bytes",)),
    ("huge", "token", ("answer is larger than 1024 bytes",)),
])
def test_imds_faults_refuse_r9(w, imds, kind, step, needles):
    imds.set_fault(kind, step=step, count=-1)
    t = new_id()
    w.ticket(t)
    refused_r9(w, t, "instance metadata", *needles)
    # Nothing was cached: once IMDS recovers, the next request fetches.
    imds.clear_faults()
    t2 = new_id()
    w.ticket(t2)
    issue(w, t2)
    assert imds.counts()["creds"] >= 1


def test_slow_imds_is_bounded(w, imds):
    imds.set_fault("slow:3", step="creds", count=1)
    t = new_id()
    w.ticket(t)
    t0 = time.monotonic()
    refused_r9(w, t, "instance metadata", "did not answer", "timed out")
    took = time.monotonic() - t0
    # 2 s for the three requests, well inside the 8 s request deadline.
    assert took < 5, took


def test_failed_refresh_does_not_use_stale_credentials(w, imds):
    imds.expires_in = 240
    t1, t2 = new_id(), new_id()
    w.ticket(t1)
    w.ticket(t2)
    issue(w, t1)
    # The cached ones are still valid for 4 minutes, but inside the
    # refresh margin: a failed refresh refuses, never falls back.
    imds.set_fault("500", step="creds", count=-1)
    refused_r9(w, t2, "HTTP 500")


# ---- secrets ------------------------------------------------------------------

def test_secrets_never_logged(w, imds):
    imds.expires_in = 240
    t1, t2 = new_id(), new_id()
    w.ticket(t1)
    w.ticket(t2)
    r1 = w.credentials("alice", PM, t1)
    imds.set_fault("huge", step="creds", count=-1)
    r2 = w.credentials("alice", PM, t2)
    assert r1.returncode == 0 and r2.returncode == 3
    assert imds.tokens
    log = w.daemon.output()
    with open(w.daemon.audit_log) as f:
        audit = f.read()
    for secret in imds.tokens + [w.sts.base_secret, w.sts.base_token]:
        assert secret not in log
        assert secret not in audit
        assert secret not in r1.stderr and secret not in r2.stderr
    # The daemon did log the refusal, naming the step.
    assert "instance metadata" in log
