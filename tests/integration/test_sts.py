"""core/sts.c against the STS emulator (through build/probe/stsprobe).

The emulator verifies every request's SigV4 signature with botocore, so a
passing test means libcurl's signature is one AWS would accept.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import common  # noqa: E402
import sts_emulator  # noqa: E402

BUILD = os.environ.get("PMPGATE_BUILD", "/work/main/build")
PROBE = os.path.join(BUILD, "probe", "stsprobe")
PM = "procurement-manager"
ADMIN = "pmp-administrator"

CONF = """
[daemon]
deadline = {deadline}

[directory]
uri = ldap://127.0.0.1:9
base = dc=example,dc=com
allow_plaintext = yes

[tickets]
provider = servicenow
url = https://127.0.0.1:9/api/now/table/change_request?number={{ticket}}
id_pattern = CHG[0-9]{{7}}

[aws]
region = us-east-1
sts_endpoint = {url}
credentials = file:{credfile}
ca_file = {ca}
timeout = {timeout}
{aws_extra}

[role procurement-manager]
group = cn=procurement-managers,ou=groups,dc=example,dc=com
role_arn = arn:aws:iam::{account}:role/procurement-manager
max_duration = 12h

[role pmp-administrator]
group = cn=pmp-administrators,ou=groups,dc=example,dc=com
role_arn = arn:aws:iam::{account}:role/pmp-administrator
external_id = pmpgate-admin
session_policy_file = {policy}
"""

POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["aws-marketplace:ViewSubscriptions",
                                   "aws-marketplace:Describe*"], "Resource": "*"}]}


def _private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class Env:
    """Writes configs and runs the probe against one emulator."""

    def __init__(self, tmp, ca, emu):
        self.tmp = tmp
        self.ca = ca
        self.emu = emu
        self.n = 0

    def conf(self, secret=None, key_id=None, token="default", ca=None,
             deadline="4s", timeout="2s", url=None, aws_extra=""):
        self.n += 1
        d = os.path.join(self.tmp, f"conf{self.n}")
        os.makedirs(d, mode=0o700)
        token = self.emu.base_token if token == "default" else token
        creds = ("[default]\n"
                 f"aws_access_key_id = {key_id or self.emu.base_key_id}\n"
                 f"aws_secret_access_key = {secret or self.emu.base_secret}\n")
        if token:
            creds += f"aws_session_token = {token}\n"
        credfile = _private(os.path.join(d, "credentials"), creds)
        policy = _private(os.path.join(d, "policy.json"), json.dumps(POLICY))
        return _private(os.path.join(d, "pmpgate.conf"), CONF.format(
            deadline=deadline, url=url or self.emu.url, credfile=credfile,
            ca=ca or self.ca.cert, timeout=timeout, account=self.emu.account,
            aws_extra=aws_extra, policy=policy))

    def probe(self, conf, *args, timeout=30):
        t0 = time.monotonic()
        p = subprocess.run([PROBE, conf, *args], capture_output=True, text=True,
                           timeout=timeout)
        p.elapsed = time.monotonic() - t0
        p.fields = dict(line.split(" ", 1) for line in p.stdout.splitlines()
                        if " " in line)
        return p

    def assume(self, *extra, conf=None, user="alice", ticket="CHG0012345",
               duration="3600", role=PM):
        return self.probe(conf or self.conf(), "assume", role, user, ticket,
                          duration, *extra)


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return common.TestCA(str(tmp_path_factory.mktemp("ca")))


def _emulator(tmp_path_factory, ca, **kw):
    tmp = str(tmp_path_factory.mktemp("sts"))
    emu = sts_emulator.StsEmulator(tmp, ca, **kw)
    emu.start()
    return tmp, emu


@pytest.fixture(scope="module")
def world(tmp_path_factory, ca):
    if not os.access(PROBE, os.X_OK):
        pytest.fail(f"{PROBE} is not built (make probes)")
    tmp, emu = _emulator(tmp_path_factory, ca)
    yield Env(tmp, ca, emu)
    emu.stop()


@pytest.fixture
def env(world):
    world.emu.clear_faults()
    world.emu.clear_requests()
    yield world
    world.emu.clear_faults()


def _issued(emu):
    with open(os.path.join(emu.dir, "issued.json")) as f:
        return json.load(f)


def _assume_requests(emu):
    return [r for r in emu.requests() if r.get("action") == "AssumeRole"]


# ---- success -------------------------------------------------------------------

def test_assume_role_signed_and_tagged(env):
    p = env.assume("bob", "carol")
    assert p.returncode == 0, p.stderr
    f = p.fields
    assert f["key"].startswith("ASIA")
    assert f["arn"] == (f"arn:aws:sts::{env.emu.account}:assumed-role/"
                        f"{PM}/alice@CHG0012345")
    assert int(f["secret_len"]) == 40
    assert int(f["token_len"]) > 500
    assert abs(int(f["expiration_epoch"]) - (time.time() + 3600)) < 60

    reqs = _assume_requests(env.emu)
    assert len(reqs) == 1
    r = reqs[0]
    assert r["signature_ok"] is True
    assert r["caller_key_id"] == env.emu.base_key_id
    assert r["request_id"] == f["request_id"]
    assert r["role_arn"] == env.emu.role_arn(PM)
    assert r["session_name"] == "alice@CHG0012345"
    assert r["source_identity"] == "alice"
    assert r["duration"] == 3600
    assert r["tags"] == {"pmpgate:ticket": "CHG0012345", "pmpgate:user": "alice",
                         "pmpgate:approvers": "bob carol"}
    assert r["transitive_tag_keys"] == ["pmpgate:ticket", "pmpgate:user",
                                        "pmpgate:approvers"]
    assert r["external_id"] is None
    assert r["policy"] is None
    assert r["session_token"] is False

    # The probe printed neither the secret nor the token.
    issued = _issued(env.emu)[f["key"]]
    out = p.stdout + p.stderr
    assert issued["secret"] not in out
    assert issued["token"] not in out


def test_assume_role_without_approvers_and_with_external_id(env):
    p = env.assume(role=ADMIN, user="bob", ticket="CHG7654321", duration="900")
    assert p.returncode == 0, p.stderr
    r = _assume_requests(env.emu)[-1]
    assert r["signature_ok"] is True
    assert r["tags"] == {"pmpgate:ticket": "CHG7654321", "pmpgate:user": "bob"}
    assert r["transitive_tag_keys"] == ["pmpgate:ticket", "pmpgate:user"]
    assert r["external_id"] == "pmpgate-admin"
    assert r["policy"] == POLICY
    assert r["duration"] == 900


def test_session_name_and_tags_are_sanitised(env):
    # A ticket with characters STS refuses in names and tags still works.
    p = env.assume("j\u00f6rg,x", ticket="CHG 1/2")
    assert p.returncode == 0, p.stderr
    r = _assume_requests(env.emu)[-1]
    assert r["session_name"] == "alice@CHG-1-2"
    assert r["tags"]["pmpgate:ticket"] == "CHG 1/2"
    assert r["tags"]["pmpgate:approvers"] == "j_rg_x"


def test_keep_alive_many_requests(env):
    conf = env.conf()
    for i in range(3):
        p = env.assume(conf=conf, ticket=f"CHG000000{i}")
        assert p.returncode == 0, p.stderr
    assert len({r["session_name"] for r in _assume_requests(env.emu)}) == 3


def test_whoami_base_principal(env):
    p = env.probe(env.conf(), "whoami")
    assert p.returncode == 0, p.stderr
    assert p.fields["arn"] == env.emu.base_arn
    r = env.emu.requests()[-1]
    assert r["action"] == "GetCallerIdentity" and r["signature_ok"] is True


def test_issued_credentials_work_with_the_aws_cli(env, tmp_path):
    aws = "/usr/bin/aws"
    if not os.access(aws, os.X_OK):
        pytest.skip("no /usr/bin/aws")
    p = env.assume()
    assert p.returncode == 0, p.stderr
    issued = _issued(env.emu)[p.fields["key"]]
    e = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    e.update(HOME=str(tmp_path), AWS_ACCESS_KEY_ID=p.fields["key"],
             AWS_SECRET_ACCESS_KEY=issued["secret"],
             AWS_SESSION_TOKEN=issued["token"], AWS_CA_BUNDLE=env.ca.cert,
             AWS_DEFAULT_REGION="us-east-1",
             AWS_CONFIG_FILE=str(tmp_path / "none"),
             AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    c = subprocess.run([aws, "sts", "get-caller-identity", "--output", "json",
                        "--endpoint-url", env.emu.url], capture_output=True,
                       text=True, env=e, timeout=60)
    assert c.returncode == 0, c.stderr
    assert json.loads(c.stdout)["Arn"] == p.fields["arn"]
    r = env.emu.requests()[-1]
    assert r["action"] == "GetCallerIdentity"
    assert r["signature_ok"] is True
    assert r["caller_key_id"] == p.fields["key"]
    assert r["caller_source_identity"] == "alice"


def test_throttling_is_retried(env):
    env.emu.set_fault("Throttling", count=2)
    p = env.assume()
    assert p.returncode == 0, p.stderr
    reqs = _assume_requests(env.emu)
    assert len(reqs) == 3
    assert [r.get("error") for r in reqs] == ["Throttling", "Throttling", None]
    assert all(r["signature_ok"] for r in reqs)


def test_non_xml_503_is_retried(env):
    env.emu.set_fault("503", count=1)
    p = env.assume()
    assert p.returncode == 0, p.stderr
    assert len(_assume_requests(env.emu)) == 2


# ---- a base principal with a session token --------------------------------------

@pytest.fixture(scope="module")
def token_world(tmp_path_factory, ca):
    tmp, emu = _emulator(tmp_path_factory, ca, base_token=True, name="sts-token")
    yield Env(tmp, ca, emu)
    emu.stop()


def test_session_token_base_principal(token_world):
    env = token_world
    p = env.assume("bob")
    assert p.returncode == 0, p.stderr
    r = _assume_requests(env.emu)[-1]
    assert r["signature_ok"] is True and r["session_token"] is True
    assert r["source_identity"] == "alice"
    p = env.probe(env.conf(), "whoami")
    assert p.returncode == 0, p.stderr


def test_session_token_wrong(token_world):
    env = token_world
    p = env.assume(conf=env.conf(token="FwoGZXIvYXdzEBogus"))
    assert p.returncode == 3, p.stderr
    assert "STS InvalidClientTokenId" in p.stderr


def test_session_token_missing(token_world):
    env = token_world
    p = env.assume(conf=env.conf(token=None))
    assert p.returncode == 3, p.stderr
    assert "InvalidClientTokenId" in p.stderr


# ---- refusals and failures --------------------------------------------------------

def test_wrong_secret(env):
    p = env.assume(conf=env.conf(secret="x" * 40))
    assert p.returncode == 3, p.stderr
    assert "STS SignatureDoesNotMatch" in p.stderr
    assert "x" * 40 not in p.stderr + p.stdout
    r = _assume_requests(env.emu)[-1]
    assert r["signature_ok"] is False and r["error"] == "SignatureDoesNotMatch"


def test_unknown_key(env):
    p = env.assume(conf=env.conf(key_id="AKIAUNKNOWNKEY000000"))
    assert p.returncode == 3, p.stderr
    assert "STS InvalidClientTokenId" in p.stderr


def test_access_denied(env):
    env.emu.set_fault("AccessDenied", count=1)
    p = env.assume()
    assert p.returncode == 3, p.stderr
    assert "STS AccessDenied" in p.stderr
    assert p.fields.get("error_code") == "AccessDenied"
    assert len(_assume_requests(env.emu)) == 1  # not retried


def test_validation_error_not_retried(env):
    # SourceIdentity may not contain a space: STS answers ValidationError.
    p = env.assume(user="al ice")
    assert p.returncode == 3, p.stderr
    assert "STS ValidationError" in p.stderr
    assert len(_assume_requests(env.emu)) == 1


def test_persistent_500_gives_up_within_deadline(env):
    env.emu.set_fault("500", count=-1)
    p = env.assume(conf=env.conf(deadline="3s"))
    assert p.returncode == 3, p.stderr
    assert "STS InternalFailure" in p.stderr
    assert p.elapsed < 4.0
    assert len(_assume_requests(env.emu)) >= 2


def test_slow_answer_times_out(env):
    env.emu.set_fault("slow:6", count=1)
    p = env.assume(conf=env.conf(timeout="1s", deadline="4s"))
    assert p.returncode == 3, p.stderr
    assert "error timeout" in p.stderr
    assert "timed out" in p.stderr
    assert p.elapsed < 3.0


@pytest.mark.parametrize("fault,message", [
    ("malformed", "malformed XML"),
    ("doctype", "DOCTYPE"),
    ("no-credentials", "no Credentials/AccessKeyId"),
    ("expired", "already expired"),
])
def test_unacceptable_answers(env, fault, message):
    env.emu.set_fault(fault, count=1)
    p = env.assume()
    assert p.returncode == 3, p.stderr
    assert "error protocol" in p.stderr
    assert message in p.stderr
    assert p.elapsed < 3.0
    assert "key " not in p.stdout


def test_wrong_ca(env, tmp_path):
    other = common.TestCA(str(tmp_path), name="other-ca")
    p = env.assume(conf=env.conf(ca=other.cert))
    assert p.returncode == 3, p.stderr
    assert "TLS" in p.stderr
    assert _assume_requests(env.emu) == []


def test_plain_http_endpoint_refused(env):
    # The configuration refuses an http:// STS endpoint outright.
    p = env.assume(conf=env.conf(url=env.emu.url.replace("https", "http")))
    assert p.returncode == 2, p.stderr
    assert "sts_endpoint must be https://" in p.stderr
    assert _assume_requests(env.emu) == []


def test_nothing_listening(env):
    p = env.assume(conf=env.conf(url=f"https://127.0.0.1:{common.free_port()}"))
    assert p.returncode == 3, p.stderr
    assert "error unavailable" in p.stderr
