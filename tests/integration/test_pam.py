"""pam_pmpgate.so through real PAM stacks, against the real daemon, slapd
and the emulators.

The PAM library is driven by python3-pypamtest (libpamtest) and by
pamtester, both under pam_wrapper: service files come from a temporary
directory (PAM_WRAPPER_SERVICE_DIR), never from /etc/pam.d.  nss_wrapper
gives the test users the uids of daemon.USERS.  pam_wrapper copies the
module's LOG_ERR syslog lines to stderr, which the tests read.
"""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import daemon  # noqa: E402
import world as worldmod  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs PAM stacks as root")

LIBDIR = "/usr/lib/x86_64-linux-gnu"
PAM_WRAPPER = os.path.join(LIBDIR, "libpam_wrapper.so")
SECURITY = os.path.join(LIBDIR, "security")
MODULE = daemon.binary("pam_pmpgate.so")

PAM_SUCCESS = 0
PAM_SERVICE_ERR = 3
PAM_PERM_DENIED = 6
PAM_AUTH_ERR = 7
PAM_AUTHINFO_UNAVAIL = 9
PAM_USER_UNKNOWN = 10
PAM_SESSION_ERR = 14

PM = "procurement-manager"
ADMIN = "pmp-administrator"

_n = [5000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


# A libpamtest driver: one PAM transaction, the expected code of each
# step, the messages the module sent, and the PAM environment at the end.
DRIVER = r'''
import json, sys
import pypamtest as p
spec = json.loads(sys.argv[1])
ops = {"auth": p.PAMTEST_AUTHENTICATE, "account": p.PAMTEST_ACCOUNT,
       "open": p.PAMTEST_OPEN_SESSION, "close": p.PAMTEST_CLOSE_SESSION,
       "env": p.PAMTEST_GETENVLIST}
cases = [p.TestCase(ops[o], e) for o, e in spec["ops"]]
out = {"ok": True, "error": "", "info": [], "errors": [], "env": {}}
try:
    r = p.run_pamtest(spec["user"], spec["service"], cases, [],
                      spec.get("answers", []))
    out["info"] = list(r.info)
    out["errors"] = list(r.errors)
    for c in cases:
        if c.pam_operation == p.PAMTEST_GETENVLIST and c.pam_env:
            out["env"] = dict(c.pam_env)
except p.PamTestError as e:
    out["ok"] = False
    out["error"] = str(e)
print(json.dumps(out))
'''


class Pam:
    """Service files and PAM runs for one world."""

    def __init__(self, w):
        self.w = w
        self.dir = os.path.join(w.dir, "pam.d")
        os.makedirs(self.dir, exist_ok=True)
        self.driver = os.path.join(w.dir, "pamdriver.py")
        with open(self.driver, "w") as f:
            f.write(DRIVER)
        # the base of the credentials directories: root's, 0755
        self.creds = os.path.join(w.dir, "creds")
        os.makedirs(self.creds, exist_ok=True)
        os.chmod(self.creds, 0o755)
        self.write("other",
                   f"auth required {SECURITY}/pam_deny.so\n"
                   f"account required {SECURITY}/pam_deny.so\n"
                   f"session required {SECURITY}/pam_deny.so\n")

    def write(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)
        return name

    def service(self, name, role=PM, extra="", session="", auth=None,
                account=None, socket_path=None):
        """A stack: auth collects (then pam_permit), account decides,
        session issues when SESSION names "issue"."""
        sock = socket_path or self.w.daemon.socket
        common = f"role={role} socket={sock} {extra}".strip()
        auth = common if auth is None else auth
        account = common if account is None else account
        lines = [f"auth required {MODULE} {auth}",
                 f"auth required {SECURITY}/pam_permit.so",
                 f"account required {MODULE} {account}"]
        if session:
            lines.append(f"session required {MODULE} {common} "
                         f"credentials_dir={self.creds} {session}")
        else:
            lines.append(f"session required {SECURITY}/pam_permit.so")
        return self.write(name, "\n".join(lines) + "\n")

    def env(self):
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LD_PRELOAD": f"{PAM_WRAPPER}:{daemon.NSS_WRAPPER}",
            "PAM_WRAPPER": "1",
            "PAM_WRAPPER_SERVICE_DIR": self.dir,
            "NSS_WRAPPER_PASSWD": self.w.daemon.passwd,
            "NSS_WRAPPER_GROUP": self.w.daemon.group,
        }

    def run(self, service, user, ops, answers=(), timeout=60):
        """Run OPS [(op, expected code)] in one PAM transaction."""
        spec = {"service": service, "user": user, "ops": ops,
                "answers": list(answers)}
        r = subprocess.run(["/usr/bin/python3", self.driver,
                            json.dumps(spec)], env=self.env(),
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, (r.stdout, r.stderr)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out["log"] = r.stderr
        return out

    def pamtester(self, service, user, *ops, items=(), envs=(), stdin="",
                  timeout=60):
        argv = ["pamtester", "-v"]
        for i in items:
            argv += ["-I", i]
        for e in envs:
            argv += ["-E", e]
        argv += [service, user, *ops]
        return subprocess.run(argv, env=self.env(), input=stdin,
                              capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="module")
def w():
    tmp = tempfile.mkdtemp(prefix="pmpgate-pam-")
    wd = worldmod.World(tmp)
    try:
        wd.start()
        yield wd
    finally:
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def pam(w):
    return Pam(w)


@pytest.fixture
def restore(w):
    """Put the world back as it was after a test that changes it."""
    yield w
    if not w.slapd.running():
        w.slapd.start()
    if not w.daemon.running():
        w.daemon.start()


def refused_with(out, rule, *words):
    assert out["ok"], out
    errs = [e for e in out["errors"] if e.startswith("pmpgate: refused: ")]
    assert len(errs) == 1, out
    assert f"({rule} " in errs[0], errs[0]
    for word in words:
        assert word in errs[0], errs[0]
    return errs[0]


# ---- the shared object ------------------------------------------------------

def test_exports_only_pam_sm_functions():
    r = subprocess.run(["nm", "-D", "--defined-only", MODULE],
                       capture_output=True, text=True, check=True)
    names = {line.split()[-1] for line in r.stdout.splitlines()
             if line.strip()}
    assert names == {"pam_sm_authenticate", "pam_sm_setcred",
                     "pam_sm_acct_mgmt", "pam_sm_open_session",
                     "pam_sm_close_session"}, names


def test_links_libpam_libc_and_jansson_only():
    r = subprocess.run(["readelf", "-d", MODULE], capture_output=True,
                       text=True, check=True)
    needed = {line.split("[")[1].rstrip("]") for line in r.stdout.splitlines()
              if "(NEEDED)" in line}
    assert needed <= {"libpam.so.0", "libjansson.so.4", "libc.so.6"}, needed
    r = subprocess.run(["ldd", MODULE], capture_output=True, text=True,
                       check=True)
    for lib in ("libldap", "liblber", "libcurl", "libssl", "libcrypto",
                "libgnutls", "libpthread", "libexpat"):
        assert lib not in r.stdout, r.stdout


# ---- allowed -----------------------------------------------------------------

def test_allowed_user_with_prompted_ticket(w, pam):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    svc = pam.service("pm-login")
    out = pam.run(svc, "alice", [("auth", PAM_SUCCESS),
                                 ("account", PAM_SUCCESS)], answers=[t])
    assert out["ok"], out
    assert out["errors"] == [], out
    # the decision was the daemon's, for alice, from the PAM service
    log = w.daemon.output()
    assert f"decide user=alice uid=0 role={PM} ticket={t} " \
           f"service=pm-login decision=allow" in log, log


def test_account_collects_when_auth_was_skipped(w, pam):
    """sshd with public keys runs no auth: account asks for the ticket."""
    t = new_id()
    w.ticket(t)
    svc = pam.service("pm-acct-only")
    out = pam.run(svc, "alice", [("account", PAM_SUCCESS)], answers=[t])
    assert out["ok"], out


def test_role_prompt_lists_the_daemons_roles(w, pam):
    t = new_id()
    w.ticket(t, requested_for="bob", role=ADMIN, approvers=["grace"],
             requester="carol")
    svc = pam.service("role-prompt", role="prompt")
    r = pam.pamtester(svc, "bob", "authenticate", "acct_mgmt",
                      stdin=f"{ADMIN}\n{t}\n")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"Role ({PM}, {ADMIN}): " in r.stdout + r.stderr
    assert "Ticket: " in r.stdout + r.stderr
    assert f"role={ADMIN} ticket={t} service={svc} decision=allow" in \
        w.daemon.output()


def test_role_prompt_refuses_a_role_not_offered(w, pam):
    svc = pam.service("role-prompt-bad", role="prompt")
    out = pam.run(svc, "alice", [("auth", PAM_AUTH_ERR)],
                  answers=["root-of-all-evil", "CHG0000001"])
    assert out["ok"], out
    assert any("is not offered here" in e for e in out["errors"]), out


def test_ticket_from_the_pam_environment(w, pam):
    t = new_id()
    w.ticket(t)
    svc = pam.service("pm-env", extra="ticket=env")
    r = pam.pamtester(svc, "alice", "acct_mgmt",
                      envs=[f"PMPGATE_TICKET={t}"])
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"ticket={t} service={svc} decision=allow" in w.daemon.output()
    # without it: refused, and the user is told why
    r = pam.pamtester(svc, "alice", "acct_mgmt")
    assert r.returncode != 0
    assert "PMPGATE_TICKET is not set" in r.stdout + r.stderr
    assert "Permission denied" in r.stdout + r.stderr


def test_auth_carries_role_and_ticket_in_the_pam_environment(w, pam):
    t = new_id()
    svc = pam.service("carry", role="prompt")
    out = pam.run(svc, "alice", [("auth", PAM_SUCCESS), ("env", PAM_SUCCESS)],
                  answers=[PM, t])
    assert out["ok"], out
    assert out["env"].get("PMPGATE_TICKET") == t, out
    assert out["env"].get("PMPGATE_ROLE") == PM, out


def test_session_in_another_process_uses_the_pam_environment(w, pam):
    """sshd authenticates in a child and opens the session in its monitor,
    which has the child's PAM environment but not its module data."""
    t = new_id()
    w.ticket(t)
    svc = pam.service("monitor", role="prompt", session="issue")
    _, d, path = cred_paths(pam, "alice")
    r = pam.pamtester(svc, "alice", "open_session",
                      envs=[f"PMPGATE_TICKET={t}", f"PMPGATE_ROLE={PM}"])
    try:
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert "Ticket:" not in r.stdout + r.stderr
        assert "Role" not in r.stdout + r.stderr
        assert f"[{PM}]" in open(path).read()
    finally:
        r = pam.pamtester(svc, "alice", "close_session")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert not os.path.lexists(path)


CONF_PAMD = os.path.join(HERE, "..", "..", "conf", "pam.d")


def shipped_stack(pam, name, sock):
    """conf/pam.d/NAME made loadable here: module paths absolute, the
    world's socket and credentials directory, each "@include common-KIND"
    replaced by a pam_permit line of that kind."""
    text = open(os.path.join(CONF_PAMD, name)).read()
    text = re.sub(r"(?m)^@include common-(\w+)\S*$",
                  lambda m: f"{m.group(1)} required pam_permit.so", text)
    text = re.sub(r"(?m)\bpam_pmpgate\.so (.*)$",
                  lambda m: f"{MODULE} {m.group(1)} socket={sock} "
                  f"credentials_dir={pam.creds}", text)
    text = re.sub(r"(?<![/\w])(pam_\w+\.so)", SECURITY + r"/\1", text)
    return pam.write("shipped-" + name, text)


@pytest.mark.parametrize("name,role,user,approver", [
    ("pmpgate-procurement-manager", PM, "alice", "erin"),
    ("pmpgate-pmp-administrator", ADMIN, "bob", "grace"),
    ("sudo", PM, "alice", "erin")])
def test_shipped_stacks_work(w, pam, name, role, user, approver):
    t = new_id()
    w.ticket(t, requested_for=user, role=role, approvers=[approver],
             requester="carol")
    svc = shipped_stack(pam, name, w.daemon.socket)
    _, d, path = cred_paths(pam, user)
    r = pam.pamtester(svc, user, "authenticate", "acct_mgmt",
                      "open_session", stdin=f"{t}\n")
    try:
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert f"[{role}]" in open(path).read()
    finally:
        r = pam.pamtester(svc, user, "close_session")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert not os.path.lexists(path)


def test_shipped_sshd_stack_parses(w, pam):
    """The sshd example names the right module lines (its other session
    modules need a real login to run)."""
    text = open(os.path.join(CONF_PAMD, "sshd")).read()
    lines = [ln.split() for ln in text.splitlines()
             if ln.strip() and not ln.startswith("#")]
    mine = [ln for ln in lines if "pam_pmpgate.so" in ln]
    assert [ln[0] for ln in mine] == ["auth", "account", "session"]
    assert all("role=prompt" in ln for ln in mine)
    assert "issue" in mine[2]


# ---- refused by policy ----------------------------------------------------------

REFUSALS = [
    # id, user, ticket overrides, ticket id (None = new), rule, words
    ("not-in-group", "carol", {"requested_for": "carol"}, None, "R1",
     ["not a member"]),
    ("pending", "alice", {"state": "requested"}, None, "R3",
     ["not approved"]),
    ("other-role", "alice", {"role": ADMIN}, None, "R3",
     [f"for role {ADMIN}"]),
    ("other-person", "alice", {"requested_for": "dave"}, None, "R3",
     ["is for dave, not for alice"]),
    ("window-passed", "alice",
     {"start": time.time() - 7200, "end": time.time() - 60}, None, "R3",
     ["window closed"]),
    ("unknown-ticket", "alice", None, "CHG0999999", "R3", ["not found"]),
    ("malformed-id", "alice", None, "../etc/passwd", "R3", ["ticket id"]),
    ("self-approval", "alice", {"approvers": ["alice"]}, None, "R4",
     ["four-eyes"]),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refusal(w, pam, case):
    _, user, overrides, ticket, rule, words = case
    if ticket is None:
        ticket = new_id()
        w.ticket(ticket, **overrides)
    svc = pam.service("pm-refuse")
    out = pam.run(svc, user, [("auth", PAM_SUCCESS),
                              ("account", PAM_PERM_DENIED)],
                  answers=[ticket])
    refused_with(out, rule, *words)


def test_user_not_in_the_directory(w, pam):
    t = new_id()
    w.ticket(t, requested_for="nobody-in-ldap")
    svc = pam.service("pm-unknown")
    out = pam.run(svc, "nobody-in-ldap", [("account", PAM_USER_UNKNOWN)],
                  answers=[t])
    refused_with(out, "R1", "not in the directory")


def test_empty_ticket_is_refused_before_the_daemon(w, pam):
    svc = pam.service("pm-empty")
    out = pam.run(svc, "alice", [("account", PAM_PERM_DENIED)],
                  answers=["   "])
    assert out["ok"], out
    assert "pmpgate: a ticket is required" in out["errors"], out


# ---- unavailable: still a refusal ----------------------------------------------

def test_daemon_down(w, pam, restore):
    svc = pam.service("pm-down")
    w.daemon.stop()
    out = pam.run(svc, "alice", [("auth", PAM_SUCCESS),
                                 ("account", PAM_AUTHINFO_UNAVAIL)],
                  answers=["CHG0000001"])
    assert out["ok"], out
    assert any(e.startswith("pmpgate: error: ") and "not running" in e
               for e in out["errors"]), out


def test_directory_down(w, pam, restore):
    t = new_id()
    w.ticket(t)
    svc = pam.service("pm-nodir")
    w.slapd.stop()
    try:
        out = pam.run(svc, "alice", [("account", PAM_AUTHINFO_UNAVAIL)],
                      answers=[t])
    finally:
        w.slapd.start()
    assert out["ok"], out
    errs = [e for e in out["errors"] if e.startswith("pmpgate: error: ")]
    assert errs and "(R9 " in errs[0] and "directory" in errs[0], out


# ---- options ------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["rol=procurement-manager", "debugg",
                                 "ticket=ask", "timeout=0", "timeout=x",
                                 "socket=relative/sock",
                                 "role=Procurement_Manager"])
def test_unknown_or_bad_option_refuses(w, pam, bad):
    t = new_id()
    w.ticket(t)
    good = f"role={PM} socket={w.daemon.socket}"
    line = f"{good} {bad}" if not bad.startswith("rol") else \
        f"{bad} socket={w.daemon.socket}"
    svc = pam.write("pm-badopt",
                    f"auth required {MODULE} {line}\n"
                    f"account required {MODULE} {line}\n"
                    f"session required {MODULE} {line} issue\n")
    out = pam.run(svc, "alice", [("account", PAM_SERVICE_ERR)],
                  answers=[t])
    assert out["ok"], out
    assert "refusing" in out["log"], out["log"]
    out = pam.run(svc, "alice", [("auth", PAM_SERVICE_ERR)], answers=[t])
    assert out["ok"], out
    out = pam.run(svc, "alice", [("open", PAM_SERVICE_ERR)], answers=[t])
    assert out["ok"], out


def test_missing_role_option_refuses(w, pam):
    svc = pam.write("pm-norole",
                    f"account required {MODULE} socket={w.daemon.socket}\n")
    out = pam.run(svc, "alice", [("account", PAM_SERVICE_ERR)],
                  answers=["CHG0000001"])
    assert out["ok"], out


# ---- session: credentials for the AWS CLI ------------------------------------

def cred_paths(pam, user):
    uid = daemon.USERS[user]
    d = os.path.join(pam.creds, str(uid))
    return uid, d, os.path.join(d, "credentials")


def test_session_issues_credentials_the_aws_cli_uses(w, pam):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    svc = pam.service("pm-session", session="issue")
    uid, d, path = cred_paths(pam, "alice")
    out = pam.run(svc, "alice", [("auth", PAM_SUCCESS),
                                 ("account", PAM_SUCCESS),
                                 ("open", PAM_SUCCESS),
                                 ("env", PAM_SUCCESS)], answers=[t])
    assert out["ok"], out
    assert out["env"].get("AWS_SHARED_CREDENTIALS_FILE") == path, out
    assert out["env"].get("AWS_PROFILE") == PM, out
    assert out["env"].get("PMPGATE_TICKET") == t, out
    assert any(path in i for i in out["info"]), out

    st = os.lstat(d)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert (st.st_uid, st.st_gid) == (uid, uid)
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (uid, uid)
    assert st.st_nlink == 1
    text = open(path).read()
    assert text.startswith(f"# pmpgate: role {PM}, ticket {t}, user alice, "
                           "expires "), text
    assert f"\n[{PM}]\naws_access_key_id = ASIA" in text
    assert "aws_secret_access_key = " in text
    assert "aws_session_token = " in text
    assert not [f for f in os.listdir(d) if f != "credentials"]
    # the secret stays out of logs
    secret = [ln.split("=", 1)[1].strip() for ln in text.splitlines()
              if ln.startswith("aws_secret_access_key")][0]
    assert secret not in out["log"]
    assert secret not in w.daemon.output()

    # the real AWS CLI, as alice, with the session's environment
    home = daemon.user_home(w.dir, "alice")
    env = {"PATH": "/usr/bin:/bin", "HOME": home,
           "AWS_CONFIG_FILE": os.path.join(home, "no-config"),
           "AWS_SHARED_CREDENTIALS_FILE": path, "AWS_PROFILE": PM,
           "AWS_CA_BUNDLE": w.ca.cert, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_PAGER": "", "AWS_EC2_METADATA_DISABLED": "true"}
    r = daemon.as_user("alice", ["/usr/bin/aws", "sts",
                                 "get-caller-identity", "--output", "json",
                                 "--endpoint-url", w.sts.url], env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    ident = json.loads(r.stdout)
    assert ident["Arn"] == (f"arn:aws:sts::{worldmod.ACCOUNT}:assumed-role/"
                            f"{PM}/alice@{t}")

    # close_session (a later transaction, as sshd's monitor may do)
    out = pam.run(svc, "alice", [("close", PAM_SUCCESS)])
    assert out["ok"], out
    assert "SYSLOG(3)" not in out["log"], out["log"]  # no error logged
    assert not os.path.lexists(path)
    assert not os.path.lexists(d)


def test_session_refused_writes_nothing(w, pam):
    t = new_id()
    w.ticket(t, state="requested")
    svc = pam.service("pm-session-no", session="issue")
    _, d, path = cred_paths(pam, "alice")
    out = pam.run(svc, "alice", [("open", PAM_SESSION_ERR),
                                 ("env", PAM_SUCCESS)], answers=[t])
    assert out["ok"], out
    refused_with(out, "R3", "not approved")
    assert not os.path.lexists(path)
    assert "AWS_SHARED_CREDENTIALS_FILE" not in out["env"]


def test_planted_symlink_at_credentials_path_is_refused(w, pam):
    t = new_id()
    w.ticket(t)
    svc = pam.service("pm-session-link", session="issue")
    uid, d, path = cred_paths(pam, "alice")
    victim = os.path.join(w.dir, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    os.makedirs(d, exist_ok=True)
    os.chown(d, uid, uid)
    os.chmod(d, 0o700)
    os.symlink(victim, path)
    try:
        out = pam.run(svc, "alice", [("open", PAM_SESSION_ERR)],
                      answers=[t])
        assert out["ok"], out
        assert any("symbolic link" in e for e in out["errors"]), out
        assert open(victim).read() == "precious\n"
        assert os.stat(victim).st_uid == 0
        assert os.path.islink(path)
    finally:
        os.unlink(path)
        os.rmdir(d)


def test_planted_symlink_at_user_directory_is_refused(w, pam):
    t = new_id()
    w.ticket(t)
    svc = pam.service("pm-session-dirlink", session="issue")
    uid, d, path = cred_paths(pam, "alice")
    elsewhere = os.path.join(w.dir, "elsewhere")
    os.makedirs(elsewhere, exist_ok=True)
    os.symlink(elsewhere, d)
    try:
        out = pam.run(svc, "alice", [("open", PAM_SESSION_ERR)],
                      answers=[t])
        assert out["ok"], out
        assert any("symbolic link" in e for e in out["errors"]), out
        assert os.listdir(elsewhere) == []
        assert os.stat(elsewhere).st_uid == 0
    finally:
        os.unlink(d)
        os.rmdir(elsewhere)


def test_user_directory_of_another_owner_is_refused(w, pam):
    t = new_id()
    w.ticket(t)
    svc = pam.service("pm-session-owner", session="issue")
    uid, d, path = cred_paths(pam, "alice")
    os.makedirs(d)
    os.chown(d, daemon.USERS["mallory"], daemon.USERS["mallory"])
    try:
        out = pam.run(svc, "alice", [("open", PAM_SESSION_ERR)],
                      answers=[t])
        assert out["ok"], out
        assert any("not by the user" in e for e in out["errors"]), out
        assert os.listdir(d) == []
    finally:
        os.rmdir(d)


@pytest.mark.parametrize("how", ["group-writable", "foreign-owner"])
def test_unsafe_credentials_base_is_refused(w, pam, how):
    t = new_id()
    w.ticket(t)
    base = os.path.join(w.dir, "creds-" + how)
    os.makedirs(base)
    if how == "group-writable":
        os.chmod(base, 0o775)
    else:
        os.chmod(base, 0o755)
        os.chown(base, daemon.USERS["mallory"], daemon.USERS["mallory"])
    common = f"role={PM} socket={w.daemon.socket}"
    svc = pam.write("pm-base-" + how,
                    f"session required {MODULE} {common} issue "
                    f"credentials_dir={base}\n")
    try:
        out = pam.run(svc, "alice", [("open", PAM_SESSION_ERR)],
                      answers=[t])
        assert out["ok"], out
        assert any("refusing to write credentials" in e
                   for e in out["errors"]), out
        assert os.listdir(base) == []
    finally:
        shutil.rmtree(base)


# ---- the request on the wire: a stand-in daemon ---------------------------------

class FakeDaemon:
    """A unix socket that records each request line and answers with
    ANSWER (bytes), or never answers when ANSWER is None."""

    def __init__(self, directory, answer):
        self.path = os.path.join(directory, "fake.sock")
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.answer = answer
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                buf = b""
                conn.settimeout(5)
                try:
                    while not buf.endswith(b"\n"):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                    self.requests.append(json.loads(buf))
                    if self.answer is None:
                        time.sleep(4)
                    else:
                        conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self):
        self.stopping = True
        self.sock.close()
        os.unlink(self.path)


def answer(**kw):
    a = {"v": 1, "status": "allow", "rules": [], "reason": "ok", "exit": 0}
    a.update(kw)
    return (json.dumps(a) + "\n").encode()


def test_request_names_user_role_ticket_and_context(w, pam):
    fake = FakeDaemon(w.dir, answer())
    try:
        svc = pam.service("sshd", socket_path=fake.path)
        r = pam.pamtester(svc, "alice", "acct_mgmt",
                          items=["tty=/dev/pts/7", "rhost=203.0.113.9"],
                          stdin="CHG0000042\n")
        assert r.returncode == 0, (r.stdout, r.stderr)
        req = fake.requests[-1]
        assert req == {"v": 1, "op": "decide", "role": PM,
                       "ticket": "CHG0000042", "user": "alice",
                       "context": {"service": "sshd", "tty": "/dev/pts/7",
                                   "rhost": "203.0.113.9"}}, req
    finally:
        fake.close()


@pytest.mark.parametrize("raw,code", [
    (b"not json\n", PAM_AUTHINFO_UNAVAIL),
    (answer(status="allow", exit=1), PAM_AUTHINFO_UNAVAIL),
    (answer(v=2), PAM_AUTHINFO_UNAVAIL),
    (b'{"v":1,"status":"allow","exit":0}\n', PAM_AUTHINFO_UNAVAIL),
    (b"", PAM_AUTHINFO_UNAVAIL),
    (answer(status="error", exit=4, reason="audit trail unwritable",
            rules=["R9"]), PAM_AUTHINFO_UNAVAIL),
    (answer(status="error", exit=2, reason="bad request"),
     PAM_AUTHINFO_UNAVAIL),
    (answer(status="deny", exit=1, rules=["R1"],
            reason="user alice is not in the directory (R1 not-in-group)"),
     PAM_USER_UNKNOWN),
    (answer(status="deny", exit=1, rules=["R1", "R3"],
            reason="user alice is not in the directory (R1 not-in-group); "
                   "ticket CHG0000042 is for bob, not for alice "
                   "(R3 ticket-not-approved)"),
     PAM_USER_UNKNOWN),
    (answer(status="deny", exit=1, rules=["R1"],
            reason="user bob is not in the directory (R1 not-in-group)"),
     PAM_PERM_DENIED),
    (answer(status="deny", exit=1, rules=["R3"],
            reason="ticket is for user alice is not in the directory "
                   "(R1 x) (R3 ticket-not-approved)"),
     PAM_PERM_DENIED),
    (answer(status="deny", exit=1, rules=["R2"],
            reason="in both groups\x1b[31m (R2 conflicting-groups)"),
     PAM_PERM_DENIED),
], ids=["not-json", "allow-with-exit-1", "version-2", "no-reason",
        "closed-silently", "audit-error", "usage-error", "user-unknown",
        "user-unknown-and-more", "other-user-unknown", "phrase-without-r1",
        "deny-with-escape"])
def test_answers_map_to_pam_codes(w, pam, raw, code):
    fake = FakeDaemon(w.dir, raw)
    try:
        svc = pam.service("map", socket_path=fake.path)
        out = pam.run(svc, "alice", [("account", code)],
                      answers=["CHG0000042"])
        assert out["ok"], out
        assert out["errors"], out
        for e in out["errors"]:
            assert "\x1b" not in e
    finally:
        fake.close()


def test_hung_daemon_is_bounded_by_the_client_timeout(w, pam):
    fake = FakeDaemon(w.dir, None)
    try:
        svc = pam.service("hung", socket_path=fake.path, extra="timeout=1")
        start = time.monotonic()
        out = pam.run(svc, "alice", [("account", PAM_AUTHINFO_UNAVAIL)],
                      answers=["CHG0000042"])
        elapsed = time.monotonic() - start
        assert out["ok"], out
        assert any("timed out" in e for e in out["errors"]), out
        assert elapsed < 3.5, elapsed
    finally:
        fake.close()


# ---- memory checking: the module inside pamtester ------------------------------

def memcheck_scenarios(w, pam, module, prefix, extra_env):
    """Allowed login with a session (issue + close), a refusal, a daemon
    that answers nonsense, and an unknown option, each through pamtester
    loaded with MODULE and run under PREFIX; the return codes."""
    t = new_id()
    w.ticket(t)
    denied = new_id()
    w.ticket(denied, state="requested")
    sock = w.daemon.socket
    common = f"role={PM} socket={sock}"
    pam.write("mem-ok",
              f"auth required {module} {common}\n"
              f"auth required {SECURITY}/pam_permit.so\n"
              f"account required {module} {common}\n"
              f"session required {module} {common} issue "
              f"credentials_dir={pam.creds}\n")
    fake = FakeDaemon(w.dir, b'{"v":1,"status":"allow","exit":1}\n')
    pam.write("mem-bad", f"account required {module} role=prompt "
                         f"socket={fake.path}\n")
    pam.write("mem-opt", f"account required {module} {common} bogus\n")
    env = pam.env()
    env.update(extra_env)
    env["LD_PRELOAD"] = ":".join(
        [p for p in [extra_env.get("LD_PRELOAD")] if p] +
        [PAM_WRAPPER, daemon.NSS_WRAPPER])
    runs = [("mem-ok", ["authenticate", "acct_mgmt", "open_session",
                        "close_session"], f"{t}\n"),
            ("mem-ok", ["acct_mgmt"], f"{denied}\n"),
            ("mem-bad", ["acct_mgmt"], f"{PM}\n{t}\n"),
            ("mem-opt", ["acct_mgmt"], f"{t}\n")]
    codes = []
    try:
        for svc, ops, stdin in runs:
            r = subprocess.run(prefix + ["pamtester", svc, "alice", *ops],
                               env=env, input=stdin, capture_output=True,
                               text=True, timeout=120)
            codes.append((r.returncode, r.stderr))
    finally:
        fake.close()
    assert not os.path.lexists(cred_paths(pam, "alice")[2])
    return codes


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="no valgrind")
def test_module_under_valgrind(w, pam):
    codes = memcheck_scenarios(
        w, pam, MODULE,
        ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
         "--errors-for-leak-kinds=definite"], {})
    assert [c for c, _ in codes] == [0, 1, 1, 1], codes


ASAN_MODULE = os.path.join(os.path.dirname(daemon.build_dir().rstrip("/")),
                           "build-asan", "pam_pmpgate.so")


def _asan_module_fresh():
    src = os.path.join(HERE, "..", "..", "module", "pam_pmpgate.c")
    return (os.path.exists(ASAN_MODULE) and
            os.path.getmtime(ASAN_MODULE) >= os.path.getmtime(src))


@pytest.mark.skipif(not _asan_module_fresh(),
                    reason="no up-to-date build-asan/pam_pmpgate.so "
                           "(make SANITIZE=1 build-asan/pam_pmpgate.so)")
def test_module_under_asan(w, pam):
    rt = subprocess.run(["clang", "-print-file-name=libclang_rt.asan-x86_64.so"],
                        capture_output=True, text=True).stdout.strip()
    codes = memcheck_scenarios(w, pam, os.path.abspath(ASAN_MODULE), [], {
        "LD_PRELOAD": rt,
        # the sanitizer runtime and RTLD_DEEPBIND do not mix (pam_wrapper
        # 1.1.4 reads UID_WRAPPER_DISABLE_DEEPBIND)
        "PAM_WRAPPER_DISABLE_DEEPBIND": "1",
        "UID_WRAPPER_DISABLE_DEEPBIND": "1",
        "NSS_WRAPPER_DISABLE_DEEPBIND": "1",
        "ASAN_OPTIONS": "detect_leaks=1:exitcode=98",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=97",
    })
    assert [c for c, _ in codes] == [0, 1, 1, 1], codes


GOOD_CREDS = {"AccessKeyId": "ASIAFAKEFAKEFAKE0001",
              "SecretAccessKey": "s" * 40, "SessionToken": "t" * 64,
              "Expiration": "2099-01-01T00:00:00Z"}


@pytest.mark.parametrize("extra,ok", [
    ({"credentials": GOOD_CREDS, "user": "alice", "role": PM}, True),
    ({"credentials": GOOD_CREDS, "user": "mallory", "role": PM}, False),
    ({"credentials": GOOD_CREDS, "user": "alice", "role": ADMIN}, False),
    ({"user": "alice", "role": PM}, False),
    ({"credentials": dict(GOOD_CREDS, SecretAccessKey="x\ny"),
      "user": "alice", "role": PM}, False),
    ({"credentials": dict(GOOD_CREDS, Expiration="tomorrow"),
      "user": "alice", "role": PM}, False),
], ids=["good", "other-user", "other-role", "no-credentials",
        "newline-in-secret", "bad-expiration"])
def test_issue_answers_are_checked_before_anything_is_written(w, pam, extra,
                                                             ok):
    fake = FakeDaemon(w.dir, answer(**extra))
    _, d, path = cred_paths(pam, "alice")
    try:
        svc = pam.service("fake-issue", socket_path=fake.path,
                          session="issue")
        out = pam.run(svc, "alice",
                      [("open", PAM_SUCCESS if ok else PAM_SESSION_ERR)],
                      answers=["CHG0000042"])
        assert out["ok"], out
        assert fake.requests[-1]["op"] == "issue"
        if ok:
            text = open(path).read()
            assert "aws_secret_access_key = " + "s" * 40 in text
        else:
            assert not os.path.lexists(path)
            assert any(e.startswith("pmpgate: error: ")
                       for e in out["errors"]), out
    finally:
        fake.close()
        if os.path.lexists(path):
            os.unlink(path)
        if os.path.lexists(d):
            os.rmdir(d)


def test_account_decisions_are_audited_with_the_pam_context(w, pam):
    """Every account decision leaves a permit or deny record carrying the
    PAM service, tty and rhost, so an auditor sees refused logins too."""
    t = new_id()
    w.ticket(t)
    svc = pam.service("audited")
    before = len(w.daemon.audit_records())
    r = pam.pamtester(svc, "alice", "acct_mgmt",
                      items=["tty=pts/7", "rhost=198.51.100.23"],
                      stdin=f"{t}\n")
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = pam.pamtester(svc, "carol", "acct_mgmt",
                      items=["tty=pts/8", "rhost=198.51.100.24"],
                      stdin=f"{t}\n")
    assert r.returncode != 0
    recs = w.daemon.audit_records()[before:]
    assert [x["event"] for x in recs] == ["permit", "deny"], recs
    permit, deny = recs
    assert permit["user"] == "alice" and permit["uid"] == 0
    assert permit["client"]["service"] == svc
    assert permit["client"]["tty"] == "pts/7"
    assert permit["client"]["rhost"] == "198.51.100.23"
    assert deny["user"] == "carol" and "R1" in deny["rules"]
    assert deny["client"]["service"] == svc
    assert deny["client"]["rhost"] == "198.51.100.24"
