"""core/tickets.c against the ticket-service emulator (build/probe/ticketprobe).

The module-scoped emulator requires a bearer token; tests that need
another authorization or certificate start their own.
"""
import calendar
import json
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import common  # noqa: E402
import ticket_emulator  # noqa: E402

BUILD = os.environ.get("PMPGATE_BUILD", "/work/main/build")
PROBE = os.path.join(BUILD, "probe", "ticketprobe")

TOKEN = "tkt-" + os.urandom(16).hex()

OTHER_SECTIONS = """
[directory]
uri = ldaps://127.0.0.1:9
base = dc=example,dc=com
ca_file = {ca}

[aws]
region = eu-west-1
credentials = env

[role procurement-manager]
group = cn=procurement-managers,ou=groups,dc=example,dc=com
role_arn = arn:aws:iam::123456789012:role/procurement-manager
"""


def utc(text):
    """Epoch of "YYYY-MM-DD HH:MM:SS" in UTC (independent of the C code)."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def sn_record(number, **over):
    rec = {
        "number": number,
        "approval": "approved",
        "requested_for": "alice",
        "opened_by": "bob",
        "u_approvers": ["carol", "dave"],
        "u_aws_role": "procurement-manager",
        "category": "public-offer",
        "start_date": "2026-11-29 10:00:00",
        "end_date": "2026-11-29 18:00:00",
    }
    rec.update(over)
    return {"result": [rec]}


def jira_issue(key, status="Approved"):
    return {
        "id": "10042", "key": key,
        "fields": {
            "status": {"name": status},
            "reporter": {"name": "bob"},
            "customfield_10100": {"name": "alice@example.com"},
            "customfield_10101": [{"name": "carol"}, {"name": "erin"}],
            "customfield_10102": {"value": "pmp-administrator"},
            "customfield_10103": {"value": "private-offer"},
            "customfield_10104": "2026-11-29T10:00:00.000+0000",
            "customfield_10105": "2026-11-29T20:00:00.000+0200",
        },
    }


class Result:
    def __init__(self, rc, out, err, elapsed):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed
        self.lines = out.splitlines()

    def field(self, key):
        vals = [ln.split("=", 1)[1] for ln in self.lines
                if ln.startswith(key + "=")]
        return vals

    def one(self, key):
        vals = self.field(key)
        assert len(vals) == 1, (key, self.out)
        return vals[0]

    def __repr__(self):
        return f"rc={self.rc} out={self.out!r} err={self.err!r}"


class Env:
    def __init__(self, tmp, ca, svc):
        self.tmp = tmp
        self.ca = ca
        self.svc = svc
        self.n = 0

    def secret(self, text):
        self.n += 1
        path = os.path.join(self.tmp, f"secret-{self.n}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        return path

    def conf(self, provider="servicenow", url=None, svc=None, token=TOKEN,
             **keys):
        """A pmpgate.conf whose [tickets] points at the emulator; KEYS
        (with '.' for field.NAME given as field_NAME) add or override."""
        svc = svc or self.svc
        if url is None:
            url = {"servicenow": svc.url_servicenow, "jira": svc.url_jira,
                   "generic": svc.url_generic}[provider]
        t = {
            "provider": provider,
            "url": url,
            "id_pattern": {"servicenow": "CHG[0-9]{7}",
                           "jira": "[A-Z]+-[0-9]+",
                           "generic": "T-[0-9]+"}[provider],
            "ca_file": self.ca.cert,
            "timeout": "3s",
        }
        if token is not None:
            t["token_file"] = self.secret(token)
            t["auth"] = "bearer"
        for k, v in keys.items():
            k = k.replace("field_", "field.", 1)
            if v is None:
                t.pop(k, None)
            else:
                t[k] = v
        text = "[tickets]\n" + "".join(f"{k} = {v}\n" for k, v in t.items())
        text += OTHER_SECTIONS.format(ca=self.ca.cert)
        self.n += 1
        path = os.path.join(self.tmp, f"pmpgate-{self.n}.conf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path


def probe(conf, ticket, *opts, timeout=30):
    t0 = time.monotonic()
    p = subprocess.run([PROBE, *opts, conf, ticket], capture_output=True,
                       text=True, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not os.access(PROBE, os.X_OK):
        pytest.fail(f"{PROBE} is missing: run 'make probes'")
    tmp = str(tmp_path_factory.mktemp("tickets"))
    ca = common.TestCA(tmp)
    svc = ticket_emulator.TicketService(tmp, ca, token=TOKEN).start()
    try:
        yield Env(tmp, ca, svc)
    finally:
        svc.stop()


def new_requests(svc, before):
    return svc.requests()[before:]


# ---- answers that parse ---------------------------------------------------

def test_servicenow_approved(world):
    world.svc.put_ticket("servicenow", "CHG0000101", sn_record("CHG0000101"))
    r = probe(world.conf(), "CHG0000101")
    assert r.rc == 0, r
    assert r.one("id") == "CHG0000101"
    assert r.one("state") == "approved"
    assert r.one("approved") == "yes"
    assert r.one("requested_for") == "alice"
    assert r.one("requester") == "bob"
    assert r.field("approver") == ["carol", "dave"]
    assert r.one("role") == "procurement-manager"
    assert r.one("category") == "public-offer"
    assert int(r.one("window_start")) == utc("2026-11-29 10:00:00")
    assert int(r.one("window_end")) == utc("2026-11-29 18:00:00")


def test_jira_approved(world):
    world.svc.put_ticket("jira", "PROC-42", jira_issue("PROC-42"))
    r = probe(world.conf("jira"), "PROC-42")
    assert r.rc == 0, r
    assert r.one("state") == "Approved"
    assert r.one("approved") == "yes"
    assert r.one("requested_for") == "alice@example.com"
    assert r.field("approver") == ["carol", "erin"]
    assert r.one("role") == "pmp-administrator"
    assert r.one("category") == "private-offer"
    assert int(r.one("window_start")) == utc("2026-11-29 10:00:00")
    # 20:00 at +02:00 is 18:00 UTC
    assert int(r.one("window_end")) == utc("2026-11-29 18:00:00")


def test_generic_with_field_map(world):
    body = {"ticket": {"status": "OK", "for": "alice", "by": "bob",
                       "approvals": [{"who": {"login": "carol"}},
                                     {"who": {"login": "erin"}}],
                       "aws_role": "procurement-manager",
                       "from": 1795946400, "until": 1795975200.5}}
    world.svc.put_ticket("generic", "T-7", body)
    r = probe(world.conf("generic", field_state="/ticket/status",
                         approved_states="OK DONE",
                         field_requested_for="/ticket/for",
                         field_requester="/ticket/by",
                         field_approvers="/ticket/approvals/*/who/login",
                         field_role="/ticket/aws_role",
                         field_window_start="/ticket/from",
                         field_window_end="/ticket/until"), "T-7")
    assert r.rc == 0, r
    assert r.one("approved") == "yes"
    assert r.field("approver") == ["carol", "erin"]
    assert r.field("category") == []
    assert r.one("window_start") == "1795946400"
    assert r.one("window_end") == "1795975200"


def test_pending_then_approved_while_running(world):
    world.svc.put_ticket("servicenow", "CHG0000102",
                         sn_record("CHG0000102", approval="requested"))
    conf = world.conf()
    r = probe(conf, "CHG0000102")
    assert r.rc == 0, r
    assert r.one("approved") == "no"
    world.svc.put_ticket("servicenow", "CHG0000102", sn_record("CHG0000102"))
    r = probe(conf, "CHG0000102")
    assert r.rc == 0, r
    assert r.one("approved") == "yes"


# ---- not found, unavailable, protocol ---------------------------------------

def test_servicenow_unknown_is_not_found(world):
    r = probe(world.conf(), "CHG0999999")
    assert r.rc == 1, r
    assert r.lines == ["error not-found: ticket CHG0999999 not found"]


def test_jira_unknown_is_not_found(world):
    r = probe(world.conf("jira"), "NOPE-1")
    assert r.rc == 1, r
    assert r.lines == ["error not-found: ticket NOPE-1 not found"]


def test_503_is_unavailable(world):
    world.svc.put_ticket("servicenow", "CHG0000103", status=503)
    r = probe(world.conf(), "CHG0000103")
    assert r.rc == 3, r
    assert r.out.startswith("error unavailable: "), r
    assert "HTTP 503" in r.out


def test_redirect_is_not_followed(world):
    world.svc.put_ticket("servicenow", "CHG0000104", status=302,
                         headers={"Location": world.svc.url_servicenow.replace(
                             "{ticket}", "CHG0000101")})
    before = len(world.svc.requests())
    r = probe(world.conf(), "CHG0000104")
    assert r.rc == 3, r
    assert "HTTP 302" in r.out
    assert len(new_requests(world.svc, before)) == 1


@pytest.mark.parametrize("raw", [
    "not json",
    '{"result": [{"approval": "approved"',
    '{"result": [{"approval": "rejected", "approval": "approved"}]}',
    "[" * 10000 + "]" * 10000,
    '{"result": [{"approval": "approved"}]} trailing',
], ids=["garbage", "truncated", "duplicate-key", "deep-10000", "trailing"])
def test_malformed_json_is_protocol_error(world, raw):
    world.svc.put_ticket("servicenow", "CHG0000105", raw=raw)
    r = probe(world.conf(), "CHG0000105")
    assert r.rc == 3, r
    assert r.out.startswith("error protocol: "), r
    assert "invalid JSON" in r.out


@pytest.mark.parametrize("field,value,words", [
    ("requested_for", 42, "is a number, expected a string"),
    ("approval", ["approved"], "is an array, expected a string"),
    ("u_approvers", [{"name": "carol"}], "is an object, expected a string"),
    ("start_date", "next tuesday", "is not a valid time"),
    ("end_date", True, "is a boolean, expected a time"),
    ("opened_by", "bo\u001bb", "control character"),
    ("u_aws_role", "x" * 257, "longer than 256 bytes"),
])
def test_wrong_field_types_are_protocol_errors(world, field, value, words):
    world.svc.put_ticket("servicenow", "CHG0000106",
                         sn_record("CHG0000106", **{field: value}))
    r = probe(world.conf(), "CHG0000106")
    assert r.rc == 3, r
    assert r.out.startswith("error protocol: ticket field "), r
    assert words in r.out
    assert "\x1b" not in r.out


def test_null_fields_are_not_set(world):
    # Jira and ServiceNow say "not set" with null and "": not an error.
    world.svc.put_ticket("servicenow", "CHG0000108",
                         sn_record("CHG0000108", category=None,
                                   end_date="", u_approvers=None))
    r = probe(world.conf(), "CHG0000108")
    assert r.rc == 0, r
    assert "category=" not in r.out
    assert "approvers=0" in r.out
    assert "window_end=" not in r.out
    assert "window_start=" in r.out


def test_oversize_body(world):
    rec = sn_record("CHG0000107", short_description="x" * 200000)
    world.svc.put_ticket("servicenow", "CHG0000107", rec)
    r = probe(world.conf(max_response="64k"), "CHG0000107")
    assert r.rc == 3, r
    assert r.out.startswith("error protocol: "), r
    assert "larger than" in r.out
    # The same ticket under the default cap (1 MiB) parses.
    r = probe(world.conf(), "CHG0000107")
    assert r.rc == 0, r


# ---- credentials, TLS, time ---------------------------------------------------

def test_wrong_token_is_refused(world):
    world.svc.put_ticket("servicenow", "CHG0000108", sn_record("CHG0000108"))
    before = len(world.svc.requests())
    r = probe(world.conf(token="wrong-" + TOKEN), "CHG0000108")
    assert r.rc == 3, r
    assert r.out.startswith("error unavailable: "), r
    assert "refused our credentials" in r.out
    reqs = new_requests(world.svc, before)
    assert [q["auth"] for q in reqs] == [False]
    assert TOKEN not in r.out + r.err


def test_no_token_is_refused(world):
    world.svc.put_ticket("servicenow", "CHG0000108", sn_record("CHG0000108"))
    r = probe(world.conf(token=None), "CHG0000108")
    assert r.rc == 3, r
    assert "refused our credentials (HTTP 401)" in r.out


def test_right_token_is_sent_and_never_logged(world):
    world.svc.put_ticket("servicenow", "CHG0000109", sn_record("CHG0000109"))
    before = len(world.svc.requests())
    r = probe(world.conf(), "CHG0000109")
    assert r.rc == 0, r
    assert [q["auth"] for q in new_requests(world.svc, before)] == [True]
    with open(world.svc.log_path, encoding="utf-8") as f:
        assert TOKEN not in f.read()
    assert TOKEN not in world.svc.proc.output()
    assert TOKEN not in r.out + r.err


def test_basic_auth(world):
    svc = ticket_emulator.TicketService(world.tmp, world.ca,
                                        basic="pmpgate:pa55:word",
                                        name="tickets-basic").start()
    try:
        svc.put_ticket("jira", "PROC-9", jira_issue("PROC-9"))
        r = probe(world.conf("jira", svc=svc, token="pmpgate:pa55:word",
                             auth="basic"), "PROC-9")
        assert r.rc == 0, r
        assert r.one("approved") == "yes"
        r = probe(world.conf("jira", svc=svc, token="pmpgate:wrong",
                             auth="basic"), "PROC-9")
        assert r.rc == 3, r
        assert "refused our credentials" in r.out
        # a bearer token is not basic credentials
        r = probe(world.conf("jira", svc=svc, token="pmpgate:pa55:word"),
                  "PROC-9")
        assert r.rc == 3, r
        assert [q["auth"] for q in svc.requests()] == [True, False, False]
        with open(svc.log_path, encoding="utf-8") as f:
            assert "pa55" not in f.read()
    finally:
        svc.stop()


def test_wrong_ca_is_a_tls_error(world):
    other = common.TestCA(world.tmp, name="some-other-ca")
    world.svc.put_ticket("servicenow", "CHG0000110", sn_record("CHG0000110"))
    before = len(world.svc.requests())
    r = probe(world.conf(ca_file=other.cert), "CHG0000110")
    assert r.rc == 3, r
    assert r.out.startswith("error unavailable: "), r
    assert "TLS" in r.out
    assert new_requests(world.svc, before) == []


def test_plain_http_is_refused_without_allow_plaintext(world):
    url = world.svc.url_servicenow.replace("https://", "http://")
    r = probe(world.conf(url=url), "CHG0000101")
    assert r.rc == 2, r
    assert r.out.startswith("error configuration: "), r


def test_slow_answer_times_out(world):
    world.svc.put_ticket("servicenow", "CHG0000111", sn_record("CHG0000111"),
                         delay=6)
    r = probe(world.conf(timeout="1s"), "CHG0000111")
    assert r.rc == 3, r
    assert r.out.startswith("error timeout: "), r
    assert r.elapsed < 1.0 + 1.0, r.elapsed


def test_deadline_shorter_than_timeout(world):
    world.svc.put_ticket("servicenow", "CHG0000112", sn_record("CHG0000112"),
                         delay=6)
    r = probe(world.conf(timeout="5s"), "CHG0000112", "-d", "700")
    assert r.rc == 3, r
    assert r.out.startswith("error timeout: "), r
    assert r.elapsed < 0.7 + 1.0, r.elapsed


def test_service_down_is_unavailable(world):
    port = common.free_port()
    url = f"https://127.0.0.1:{port}/rest/api/2/issue/{{ticket}}"
    r = probe(world.conf("jira", url=url), "PROC-1")
    assert r.rc == 3, r
    assert r.out.startswith("error unavailable: "), r


# ---- ids ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    "CHG000010",            # too short for the pattern
    "CHG0000101/../x",
    "../CHG0000101",
    "CHG0000101?sysparm_query=x",
    "CHG0000101#x",
    "CHG%2F000101",
    "CHG0000101\r\nX-Injected: 1",
    "CHG 0000101",
    "CHG000010\u00e9",
    "C" * 129,
    "",
])
def test_malformed_id_makes_no_request(world, bad):
    before = len(world.svc.requests())
    r = probe(world.conf(), bad)
    assert r.rc == 1, r
    assert r.out.startswith("error invalid-input: ticket id"), r
    assert "\r" not in r.out and "\n" not in r.out.rstrip("\n")
    time.sleep(0.05)
    assert new_requests(world.svc, before) == []


@pytest.mark.parametrize("provider,path_start", [
    ("generic", "/tickets/"),
    ("jira", "/rest/api/2/issue/"),
    ("servicenow", "/api/now/table/change_request?sysparm_query=number="),
])
def test_id_is_url_encoded(world, provider, path_start):
    tid = "T-1/2?x=3&y#4%+.."
    pattern = "T-[0-9/?=&#%+.a-z]+"
    body = {"generic": {"state": "ok"},
            "jira": {"fields": {"status": {"name": "Approved"}}},
            "servicenow": {"result": [{"approval": "approved"}]}}[provider]
    world.svc.put_ticket(provider, tid, body)
    keys = {"id_pattern": pattern}
    if provider == "generic":
        keys.update(field_state="/state", approved_states="ok",
                    field_requested_for="/for", field_role="/role")
    before = len(world.svc.requests())
    r = probe(world.conf(provider, **keys), tid)
    assert r.rc == 0, r
    assert r.one("id") == tid
    assert r.one("approved") == "yes"
    reqs = new_requests(world.svc, before)
    assert len(reqs) == 1
    assert reqs[0]["id"] == tid
    enc = "T-1%2F2%3Fx%3D3%26y%234%25%2B.."
    assert reqs[0]["path"].startswith(path_start + enc), reqs[0]["path"]


def test_every_ticket_mark_is_replaced(world):
    world.svc.put_ticket("generic", "T-77", {"state": "ok", "for": "alice",
                                              "role": "procurement-manager"})
    url = world.svc.url_generic + "?id={ticket}&again={ticket}{ticket}"
    before = len(world.svc.requests())
    r = probe(world.conf("generic", url=url, field_state="/state",
                         approved_states="ok", field_requested_for="/for",
                         field_role="/role"), "T-77")
    assert r.rc == 0, r
    assert r.one("requested_for") == "alice"
    reqs = new_requests(world.svc, before)
    assert [q["path"] for q in reqs] == ["/tickets/T-77?id=T-77&again=T-77T-77"]
