"""core/directory.c against a real slapd (through build/probe/dirprobe).

The module-scoped server holds the seed (tests/harness/ldif/seed.ldif) and
is never modified; tests that stop, restart or change the server start
their own.
"""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import common  # noqa: E402
import slapd  # noqa: E402

BUILD = os.environ.get("PMPGATE_BUILD", "/work/main/build")
PROBE = os.path.join(BUILD, "probe", "dirprobe")
# e.g. "valgrind -q --error-exitcode=99 --leak-check=full": runs every
# probe under it (the timing assertions then get more slack).
WRAPPER = os.environ.get("PMPGATE_PROBE_WRAPPER", "").split()
SLACK = 3.0 if WRAPPER else 0.0

BASE = "dc=example,dc=com"
G = "ou=groups," + BASE


def grp(cn):
    return f"cn={cn},{G}"


def person(uid):
    return f"uid={uid},ou=people,{BASE}"


TEAM = "cn=catalogue-team,ou=teams," + BASE
PM = grp("procurement-managers")
ADMIN = grp("pmp-administrators")

OTHER_SECTIONS = """
[tickets]
provider = servicenow
url = https://127.0.0.1:9/api/now/table/change_request?number={ticket}
id_pattern = CHG[0-9]{7}

[aws]
region = eu-west-1
credentials = env

[role procurement-manager]
group = %s
role_arn = arn:aws:iam::123456789012:role/procurement-manager
""" % PM


class Env:
    def __init__(self, tmp, ca, server):
        self.tmp = tmp
        self.ca = ca
        self.s = server
        self.n = 0

    def conf(self, uri=None, **keys):
        """Write a pmpgate.conf (mode 0600) whose [directory] points at
        the server, with KEYS added or overridden; returns its path."""
        self.n += 1
        path = os.path.join(self.tmp, f"pmpgate-{self.n}.conf")
        text = self.s.directory_section(uri=uri, **keys) + OTHER_SECTIONS
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path


class Result:
    def __init__(self, rc, out, err, elapsed):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed
        self.lines = out.splitlines()

    def __repr__(self):
        return (f"rc={self.rc} {self.elapsed:.2f}s out={self.out!r} "
                f"err={self.err!r}")


def probe(conf, *args, deadline=None, opts=(), timeout=60, env=None):
    argv = WRAPPER + [PROBE]
    if deadline is not None:
        argv += ["-d", str(deadline)]
    for o in opts:
        argv += ["-o", o]
    argv += [conf] + list(args)
    if env is None:
        env = dict(os.environ)
        env["LDAPNOINIT"] = "1"  # only the code's own settings count
    t0 = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=timeout)
    return Result(r.returncode, r.stdout.decode(), r.stderr.decode(),
                  time.monotonic() - t0)


def member_path(res):
    line = res.lines[0]
    assert line.startswith("member yes via "), res
    return line[len("member yes via "):].split(" > ")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not os.access(PROBE, os.X_OK):
        pytest.fail(f"{PROBE} missing: run make build/probe/dirprobe")
    tmp = str(tmp_path_factory.mktemp("dir"))
    ca = common.TestCA(tmp)
    s = slapd.Slapd(tmp, ca)
    yield Env(tmp, ca, s)
    s.stop()


@pytest.fixture
def own(tmp_path):
    """A server of the test's own, free to be stopped or changed."""
    ca = common.TestCA(str(tmp_path))
    s = slapd.Slapd(str(tmp_path), ca)
    yield Env(str(tmp_path), ca, s)
    s.stop()


# ---- users ------------------------------------------------------------------

def test_find_user(env):
    r = probe(env.conf(), "find", "alice")
    assert r.rc == 0, r
    assert r.lines == ["found " + person("alice")]


def test_find_user_not_found(env):
    r = probe(env.conf(), "find", "nosuchuser")
    assert r.rc == 1 and r.lines == ["notfound"], r


def test_find_user_ambiguous(env):
    conf = env.conf(user_filter="(&(objectClass=inetOrgPerson)(mail=%u))")
    r = probe(conf, "find", "dup@example.com")
    assert r.rc == 1 and r.lines == ["ambiguous"], r
    r = probe(conf, "find", "alice@example.com")
    assert r.rc == 0 and r.lines == ["found " + person("alice")], r


@pytest.mark.parametrize("name", [
    "*", "alice)(uid=*", "a\\", "alice*", "(uid=alice)", "*)(|(uid=*",
    "\\2a", "alice\\", "al*ce", "*@example.com",
])
def test_filter_metacharacters_find_nothing(env, name):
    # With a mail filter an unescaped '*' would match many entries
    # (ambiguous) and "*@example.com" everyone: escaped, nothing matches.
    for conf in (env.conf(), env.conf(user_filter="(mail=%u)")):
        r = probe(conf, "find", name)
        assert r.rc == 1 and r.lines == ["notfound"], (name, r)


def test_user_filter_with_two_placeholders(env):
    conf = env.conf(user_filter="(|(uid=%u)(mail=%u))")
    for name in ("alice", "alice@example.com"):
        r = probe(conf, "find", name)
        assert r.rc == 0 and r.lines == ["found " + person("alice")], r


@pytest.mark.parametrize("name,why", [
    ("", "empty"),
    ("a" * 257, "longer than 256"),
    ("al\tice", "control character"),
    ("alice\x1b[0m", "control character"),
    ("alice\x7f", "control character"),
])
def test_invalid_user_names(env, name, why):
    r = probe(env.conf(), "find", name)
    assert r.rc == 1, r
    assert r.lines[0].startswith("error invalid-input:"), r
    assert why in r.out, r


def test_invalid_utf8_user_name(env):
    argv = [a.encode() for a in WRAPPER] + [
        PROBE.encode(), env.conf().encode(), b"find", b"al\xffice"]
    r = subprocess.run(argv, stdout=subprocess.PIPE,
                       env=dict(os.environ, LDAPNOINIT="1"))
    assert r.returncode == 1
    assert b"error invalid-input" in r.stdout and b"UTF-8" in r.stdout


def test_longest_name_is_looked_up(env):
    r = probe(env.conf(), "find", "a" * 256)
    assert r.rc == 1 and r.lines == ["notfound"], r


# ---- membership: member ---------------------------------------------------------

def test_direct_member(env):
    r = probe(env.conf(), "member", "alice", PM)
    assert r.rc == 0, r
    assert member_path(r) == [PM]


def test_nested_member_with_path(env):
    r = probe(env.conf(), "member", "bob", ADMIN)
    assert r.rc == 0, r
    assert member_path(r) == [TEAM, ADMIN]


def test_direct_member_of_both_roles(env):
    conf = env.conf()
    for g in (PM, ADMIN):
        r = probe(conf, "member", "dave", g)
        assert r.rc == 0 and member_path(r) == [g], r


def test_not_member(env):
    conf = env.conf()
    for user, g in (("carol", PM), ("carol", ADMIN), ("alice", ADMIN),
                    ("bob", PM), ("mallory", PM), ("erin", ADMIN)):
        r = probe(conf, "member", user, g)
        assert r.rc == 1 and r.lines[0].startswith("member no"), (user, g, r)


def test_group_dn_case_and_spacing_do_not_matter(env):
    r = probe(env.conf(), "member", "bob",
              "CN=PMP-Administrators, OU=Groups, DC=Example, DC=Com")
    assert r.rc == 0, r
    assert member_path(r)[0] == TEAM


def test_nesting_off(env):
    conf = env.conf(nested_groups="no")
    r = probe(conf, "member", "bob", ADMIN)
    assert r.rc == 1 and r.lines[0].startswith("member no"), r
    r = probe(conf, "member", "alice", PM)
    assert r.rc == 0, r


def test_cycle_terminates(env):
    conf = env.conf()
    r = probe(conf, "member", "mallory", grp("cycle-a"))
    assert r.rc == 0, r
    assert member_path(r) == [grp("cycle-b"), grp("cycle-a")]
    r = probe(conf, "member", "mallory", grp("cycle-b"))
    assert r.rc == 0 and member_path(r) == [grp("cycle-b")], r
    # The walk goes round the cycle and must still end.
    r = probe(env.conf(max_depth=64), "member", "mallory", ADMIN)
    assert r.rc == 1 and r.lines[0].startswith("member no"), r
    assert r.elapsed < 5 + SLACK, r


def test_depth_bound(env):
    # carol is in deep-12; deep-N is reached after 12-N nesting steps.
    conf = env.conf()          # default max_depth = 8
    r = probe(conf, "member", "carol", grp("deep-4"))
    assert r.rc == 0, r
    assert member_path(r) == [grp(f"deep-{i}") for i in range(12, 3, -1)]
    r = probe(conf, "member", "carol", grp("deep-3"))
    assert r.rc == 1 and r.lines[0].startswith("member no"), r
    r = probe(conf, "member", "carol", grp("deep-1"))
    assert r.rc == 1, r
    r = probe(env.conf(max_depth=11), "member", "carol", grp("deep-1"))
    assert r.rc == 0 and len(member_path(r)) == 12, r
    r = probe(env.conf(max_depth=10), "member", "carol", grp("deep-1"))
    assert r.rc == 1, r
    r = probe(env.conf(max_depth=1), "member", "bob", ADMIN)
    assert r.rc == 0, r
    r = probe(env.conf(max_depth=1), "member", "carol", grp("deep-10"))
    assert r.rc == 1, r


def test_walk_cut_by_size_limit_is_an_error(own):
    """A nested walk that the server's size limit cuts short could miss
    the path to a conflicting group and so pass R2: it is an error, never
    "not a member"."""
    s = own.s
    s.stop()
    with open(s.conf) as f:
        text = f.read()
    with open(s.conf, "w") as f:
        f.write(text.replace("maxsize 33554432",
                             "maxsize 33554432\nsizelimit 3"))
    s.start()
    def groups(*ns):
        s.add_ldif("".join(
            f"dn: cn=many-{i},{G}\nobjectClass: groupOfNames\n"
            f"cn: many-{i}\nmember: {person('carol')}\n\n" for i in ns))
    # three groups hold carol (deep-12, many-0, many-1): within the limit,
    # a plain "no"
    groups(0, 1)
    r = probe(own.conf(), "member", "carol", ADMIN)
    assert r.rc == 1 and r.lines[0].startswith("member no"), r
    # six, one of them nested in the administrators: over the limit
    groups(2, 3, 4)
    s.add_member(ADMIN, f"cn=many-4,{G}")
    r = probe(own.conf(), "member", "carol", ADMIN)
    assert r.rc not in (0, 1), r
    assert "size limit" in r.out and "incomplete" in r.out, r


def test_group_that_does_not_exist(env):
    r = probe(env.conf(), "member", "alice", grp("no-such-group"))
    assert r.rc == 1, r
    assert r.lines[0].startswith("member no") and "does not exist" in r.out


def test_member_of_unknown_user(env):
    r = probe(env.conf(), "member", "nosuchuser", PM)
    assert r.rc == 1 and r.lines == ["notfound"], r


# ---- membership: other kinds ------------------------------------------------------

def test_memberuid(env):
    conf = env.conf(group_membership="memberUid")
    r = probe(conf, "member", "alice", grp("pm-posix"))
    assert r.rc == 0 and member_path(r) == [grp("pm-posix")], r
    r = probe(conf, "member", "bob", grp("pm-posix"))
    assert r.rc == 1 and r.lines[0].startswith("member no"), r
    r = probe(conf, "member", "alice", grp("no-such-posix"))
    assert r.rc == 1 and "does not exist" in r.out, r


def test_uniquemember(env):
    conf = env.conf(group_membership="uniqueMember")
    r = probe(conf, "member", "alice", grp("pm-unique"))
    assert r.rc == 0 and member_path(r) == [grp("pm-unique")], r
    r = probe(conf, "member", "bob", grp("pm-unique"))
    assert r.rc == 1 and r.lines[0].startswith("member no"), r
    # groupOfNames groups have no uniqueMember: not a member.
    r = probe(conf, "member", "alice", PM)
    assert r.rc == 1, r


def test_memberof_direct_and_nested(env):
    conf = env.conf(group_membership="memberOf")
    r = probe(conf, "member", "alice", PM)
    assert r.rc == 0 and member_path(r) == [PM], r
    r = probe(conf, "member", "bob", ADMIN)
    assert r.rc == 0 and member_path(r) == [TEAM, ADMIN], r
    r = probe(conf, "member", "carol", ADMIN)
    assert r.rc == 1 and r.lines[0].startswith("member no"), r
    r = probe(env.conf(group_membership="memberOf", nested_groups="no"),
              "member", "bob", ADMIN)
    assert r.rc == 1, r


def test_memberof_cycle_and_depth(env):
    conf = env.conf(group_membership="memberOf")
    r = probe(conf, "member", "mallory", grp("cycle-a"))
    assert r.rc == 0 and member_path(r) == [grp("cycle-b"), grp("cycle-a")], r
    r = probe(env.conf(group_membership="memberOf", max_depth=64),
              "member", "mallory", ADMIN)
    assert r.rc == 1, r
    r = probe(conf, "member", "carol", grp("deep-4"))
    assert r.rc == 0 and len(member_path(r)) == 9, r
    r = probe(conf, "member", "carol", grp("deep-3"))
    assert r.rc == 1, r
    r = probe(env.conf(group_membership="memberOf", max_depth=11),
              "member", "carol", grp("deep-1"))
    assert r.rc == 0, r


# ---- resolve ----------------------------------------------------------------------

def resolved(res):
    out = {}
    for line in res.lines:
        name, _, what = line.partition("\t")
        out[name] = what
    return out


def test_resolve_mail_case_insensitive(env):
    conf = env.conf(ticket_user_attr="mail")
    r = probe(conf, "resolve", "MHernandez@Example.com",
              "mhernandez@example.com", "MHERNANDEZ@EXAMPLE.COM")
    assert r.rc == 0, r
    got = resolved(r)
    assert set(got.values()) == {"ok " + person("mhernandez")}, r


def test_resolve_mixed(env):
    conf = env.conf(ticket_user_attr="mail")
    names = ["alice@example.com", "nobody@example.com", "dup@example.com",
             "", "*", "*@example.com", "Erin@Example.COM", "x" * 300]
    r = probe(conf, "resolve", *names)
    assert r.rc == 0, r
    assert len(r.lines) == len(names), r
    assert r.lines == [
        "alice@example.com\tok " + person("alice"),
        "nobody@example.com\tnotfound",
        "dup@example.com\tambiguous",
        "\tinvalid",
        "*\tnotfound",
        "*@example.com\tnotfound",
        "Erin@Example.COM\tok " + person("erin"),
        "x" * 300 + "\tinvalid",
    ], r


def test_resolve_by_uid_many_in_flight(env):
    users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace",
             "mallory", "mhernandez", "dup1", "dup2"]
    names = users * 5 + ["ghost%d" % i for i in range(20)]
    r = probe(env.conf(), "resolve", *names)
    assert r.rc == 0, r
    assert len(r.lines) == len(names)
    for name, line in zip(names, r.lines):
        if name.startswith("ghost"):
            assert line == f"{name}\tnotfound"
        else:
            assert line == f"{name}\tok {person(name)}"


def test_resolve_nothing(env):
    r = probe(env.conf(), "resolve")
    assert r.rc == 0 and r.lines == [], r


# ---- transport and TLS -------------------------------------------------------------

def test_ping_ldaps(env):
    r = probe(env.conf(), "ping")
    assert r.rc == 0 and r.lines == ["ok"], r


def test_ping_anonymous_reads_root_dse(env):
    conf = env.conf(bind_dn=None, bind_password_file=None)
    r = probe(conf, "ping")
    assert r.rc == 0 and r.lines == ["ok"], r
    # Anonymous clients cannot read user data: an error, not "not found".
    r = probe(conf, "find", "alice")
    assert r.rc == 3 and "Insufficient access" in r.out, r


def test_wrong_ca_is_unavailable_with_tls_message(env):
    other = common.TestCA(env.tmp, name="other-ca")
    r = probe(env.conf(ca_file=other.cert), "ping")
    assert r.rc == 3, r
    assert r.lines[0].startswith("error unavailable:"), r
    assert env.s.ldaps_uri in r.out
    assert "TLS handshake failed" in r.out and other.cert in r.out, r


def test_libldap_environment_cannot_widen_trust(env):
    # ldap.conf / LDAPTLS_* may name other CAs or turn checking off: the
    # handle must still trust the configured CA file and nothing else.
    other = common.TestCA(env.tmp, name="other-ca-env")
    e = dict(os.environ)
    e.pop("LDAPNOINIT", None)
    e.update(LDAPTLS_CACERT=env.ca.cert, LDAPTLS_CACERTDIR=env.ca.dir,
             LDAPTLS_REQCERT="never")
    r = probe(env.conf(ca_file=other.cert), "ping", env=e)
    assert r.rc == 3 and "TLS handshake failed" in r.out, r
    r = probe(env.conf(), "ping", env=e)
    assert r.rc == 0, r


def test_starttls(env):
    conf = env.conf(uri=env.s.ldap_uri, starttls="yes")
    r = probe(conf, "member", "bob", ADMIN)
    assert r.rc == 0 and member_path(r) == [TEAM, ADMIN], r


def test_starttls_wrong_ca(env):
    other = common.TestCA(env.tmp, name="other-ca-2")
    conf = env.conf(uri=env.s.ldap_uri, starttls="yes", ca_file=other.cert)
    r = probe(conf, "ping")
    assert r.rc == 3 and "StartTLS" in r.out, r
    assert "TLS handshake failed" in r.out, r


def test_plain_ldap_refused_unless_allowed(env):
    # The config loader refuses it...
    r = probe(env.conf(uri=env.s.ldap_uri, ca_file=None), "ping")
    assert r.rc == 2, r
    # ...it works when explicitly allowed...
    conf = env.conf(uri=env.s.ldap_uri, allow_plaintext="yes")
    r = probe(conf, "ping")
    assert r.rc == 0, r
    # ...and the directory refuses it by itself, too.
    r = probe(conf, "ping", opts=["allow_plaintext=no"])
    assert r.rc == 2, r
    assert r.lines[0].startswith("error configuration:"), r
    assert "plain ldap:// refused" in r.out


def test_first_uri_dead_falls_through(env):
    dead = f"ldaps://127.0.0.1:{common.free_port()}/"
    conf = env.conf(uri=f"{dead} {env.s.ldaps_uri}")
    r = probe(conf, "member", "bob", ADMIN)
    assert r.rc == 0, r
    assert r.elapsed < 3 + SLACK, r


def test_all_uris_dead(env):
    dead1 = f"ldaps://127.0.0.1:{common.free_port()}/"
    dead2 = f"ldaps://127.0.0.1:{common.free_port()}/"
    r = probe(env.conf(uri=f"{dead1} {dead2}"), "ping")
    assert r.rc == 3 and r.lines[0].startswith("error unavailable:"), r
    assert dead1 in r.out and dead2 in r.out, r


class Hung:
    """A TCP port that accepts connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.t.join()
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def hung():
    h = Hung()
    yield h
    h.close()


@pytest.mark.parametrize("scheme", ["ldaps", "ldap-starttls"])
def test_hung_server_times_out_within_timeout(env, hung, scheme):
    if scheme == "ldaps":
        conf = env.conf(uri=f"ldaps://127.0.0.1:{hung.port}/", timeout="1s")
    else:
        conf = env.conf(uri=f"ldap://127.0.0.1:{hung.port}/", starttls="yes",
                        timeout="1s")
    r = probe(conf, "ping", deadline=10000)
    assert r.rc == 3, r
    assert r.lines[0].startswith("error timeout:"), r
    assert "no answer within 1000 ms" in r.out, r
    assert 0.9 < r.elapsed < 2.5 + SLACK, r


@pytest.mark.parametrize("bind", [True, False])
def test_hung_plaintext_server_times_out(env, hung, bind):
    keys = {} if bind else {"bind_dn": None, "bind_password_file": None}
    conf = env.conf(uri=f"ldap://127.0.0.1:{hung.port}/",
                    allow_plaintext="yes", timeout="1s", **keys)
    r = probe(conf, "find", "alice", deadline=10000)
    assert r.rc == 3 and r.lines[0].startswith("error timeout:"), r
    assert ("bind" if bind else "search") in r.out, r
    assert 0.9 < r.elapsed < 2.5 + SLACK, r


def test_hung_server_bounded_by_request_deadline(env, hung):
    conf = env.conf(uri=f"ldaps://127.0.0.1:{hung.port}/", timeout="30s")
    r = probe(conf, "find", "alice", deadline=700)
    assert r.rc == 3 and r.lines[0].startswith("error timeout:"), r
    assert r.elapsed < 2.0 + SLACK, r


def test_hung_first_uri_then_good(env, hung):
    conf = env.conf(uri=f"ldaps://127.0.0.1:{hung.port}/ {env.s.ldaps_uri}",
                    timeout="1s")
    r = probe(conf, "member", "alice", PM, deadline=10000)
    assert r.rc == 0, r
    assert r.elapsed < 3 + SLACK, r


# ---- the server's own state: a server per test ------------------------------------

def test_server_stopped_is_unavailable(own):
    conf = own.conf()
    assert probe(conf, "ping").rc == 0
    own.s.stop()
    r = probe(conf, "member", "alice", PM)
    assert r.rc == 3, r
    assert r.lines[0].startswith("error unavailable:"), r
    assert own.s.ldaps_uri in r.out
    r = probe(conf, "resolve", "alice")
    assert r.rc == 3, r


def test_wrong_bind_password(own):
    bad = os.path.join(own.tmp, "wrong.pw")
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("not-the-password-Zq9\n")
    r = probe(own.conf(bind_password_file=bad), "ping")
    assert r.rc == 3, r
    assert r.lines[0].startswith("error unavailable:"), r
    assert "Invalid credentials" in r.out, r
    assert own.s.bind_dn in r.out
    for secret in ("not-the-password-Zq9", own.s.bind_password,
                   own.s.root_password):
        assert secret not in r.out + r.err


def test_password_change_in_directory(own):
    conf = own.conf()
    assert probe(conf, "ping").rc == 0
    own.s.set_bind_password("rotated-" + own.s.bind_password)
    r = probe(conf, "ping")
    assert r.rc == 3 and "Invalid credentials" in r.out, r
    assert own.s.bind_password not in r.out + r.err


def test_password_file_readable_by_others_is_refused(own):
    loose = os.path.join(own.tmp, "loose.pw")
    with open(loose, "w") as f:
        f.write(own.s.bind_password + "\n")
    os.chmod(loose, 0o644)
    r = probe(own.conf(bind_password_file=loose), "ping")
    assert r.rc == 2, r
    assert r.lines[0].startswith("error configuration:"), r
    assert own.s.bind_password not in r.out + r.err


def _twice(conf, args, between):
    """Run ARGS twice in one probe process (one handle), calling BETWEEN
    after the first answer."""
    p = subprocess.Popen(WRAPPER + [PROBE, conf, "twice"] + list(args),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         env=dict(os.environ, LDAPNOINIT="1"))
    try:
        n = 1 if args[0] != "resolve" else len(args) - 1
        first = "".join(p.stdout.readline().decode() for _ in range(n))
        between()
        out, err = p.communicate(b"\n", timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return first, out.decode(), err.decode(), p.returncode


def _member_twice(conf, between):
    return _twice(conf, ["member", "bob", ADMIN], between)


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_reconnect_after_server_restart(own, how):
    def bounce():
        if how == "kill":
            own.s.kill()
            own.s.start()
        else:
            own.s.restart()

    first, second, err, rc = _member_twice(own.conf(), bounce)
    want = f"member yes via {TEAM} > {ADMIN}\n"
    assert first == want, (first, err)
    assert second == want, (second, err)
    assert rc == 0


def test_reconnect_sees_changes(own):
    def change():
        own.s.remove_member(ADMIN, TEAM)
        own.s.restart()

    first, second, err, rc = _member_twice(own.conf(), change)
    assert first.startswith("member yes"), (first, err)
    assert second.startswith("member no"), (second, err)
    assert rc == 1


@pytest.mark.parametrize("args", [
    ["resolve", "alice", "nobody", "bob"],
    ["find", "carol"],
    ["ping"],
])
def test_reconnect_other_operations(own, args):
    first, second, err, rc = _twice(own.conf(), args, own.s.restart)
    assert first == second, (first, second, err)
    assert "error" not in first, first
    assert rc in (0, 1)


def test_reconnect_memberof(own):
    conf = own.conf(group_membership="memberOf")

    def bounce():
        own.s.kill()
        own.s.start()

    first, second, err, rc = _twice(conf, ["member", "bob", ADMIN], bounce)
    want = f"member yes via {TEAM} > {ADMIN}\n"
    assert first == want and second == want, (first, second, err)


def test_server_gone_between_calls(own):
    first, second, err, rc = _member_twice(own.conf(), own.s.stop)
    assert first.startswith("member yes"), (first, err)
    assert second.startswith("error unavailable:"), (second, err)
    assert rc == 3


def test_membership_change_is_seen(own):
    conf = own.conf()
    r = probe(conf, "member", "carol", PM)
    assert r.rc == 1, r
    own.s.add_member(TEAM, person("carol"))
    r = probe(conf, "member", "carol", ADMIN)
    assert r.rc == 0 and member_path(r) == [TEAM, ADMIN], r
    r = probe(own.conf(group_membership="memberOf"), "member", "carol", ADMIN)
    assert r.rc == 0 and member_path(r) == [TEAM, ADMIN], r


# ---- batches (build/probe/dirbatch) ------------------------------------------------
#
# pg_dir_is_member_many and pg_dir_batch: every answer must be the one
# pg_dir_is_member gives alone, a failure anywhere fails the whole call,
# and the requests of a step share one round trip (counted on the wire).

BATCH = os.path.join(BUILD, "probe", "dirbatch")
APPR = grp("procurement-approvers")
NOGROUP = grp("no-such-group")


def batch(conf, *args, steps=False, timeout=60):
    if not os.access(BATCH, os.X_OK):
        pytest.fail(f"{BATCH} missing: run make build/probe/dirbatch")
    argv = WRAPPER + [BATCH] + (["-p"] if steps else []) + [conf] + list(args)
    t0 = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=dict(os.environ, LDAPNOINIT="1"), timeout=timeout)
    res = Result(r.returncode, r.stdout.decode(), r.stderr.decode(),
                 time.monotonic() - t0)
    assert "BUG" not in res.out, res
    return res


def answers(res):
    """{group: [path...] for a member, None for "no"} from many/people."""
    out = {}
    for line in res.lines:
        what, _, how = line.partition("\t")
        if how == "no":
            out[what] = None
        elif how.startswith("yes via "):
            out[what] = how[len("yes via "):].split(" > ")
    return out


def one_by_one(conf, user, group):
    """pg_dir_is_member's own answer (dirprobe member)."""
    r = probe(conf, "member", user, group)
    if r.rc == 0:
        return member_path(r)
    assert r.rc == 1 and r.lines[0].startswith("member no"), r
    return None


DEEP = [grp(f"deep-{i}") for i in range(12, 0, -1)]
ALL_GROUPS = [PM, ADMIN, TEAM, APPR, grp("cycle-a"), grp("cycle-b"),
              grp("deep-4"), grp("deep-3"), NOGROUP, grp("pm-posix"),
              grp("pm-unique"), grp("no-such-posix")]

KINDS = [
    {},
    {"nested_groups": "no"},
    {"max_depth": "1"},
    {"group_membership": "memberOf"},
    {"group_membership": "memberOf", "nested_groups": "no"},
    {"group_membership": "uniqueMember"},
    {"group_membership": "memberUid"},
]


@pytest.mark.parametrize("keys", KINDS,
                         ids=["-".join(f"{k}={v}" for k, v in d.items())
                              or "member" for d in KINDS])
def test_many_answers_as_one_by_one(env, keys):
    conf = env.conf(**keys)
    users = ("bob", "dave") if WRAPPER else ("alice", "bob", "carol", "dave",
                                             "mallory")
    for user in users:
        r = batch(conf, "many", user, *ALL_GROUPS)
        assert r.rc == 0, r
        got = answers(r)
        assert list(got) == ALL_GROUPS, r
        for g in ALL_GROUPS:
            assert got[g] == one_by_one(conf, user, g), (user, g, r)


@pytest.mark.parametrize("kind", ["member", "memberOf"])
def test_many_per_group_results(env, kind):
    conf = env.conf(group_membership=kind)
    r = batch(conf, "many", "bob", PM, ADMIN, NOGROUP, TEAM)
    assert r.rc == 0, r
    assert answers(r) == {PM: None, ADMIN: [TEAM, ADMIN], NOGROUP: None,
                          TEAM: [TEAM]}, r
    r = batch(conf, "many", "dave", PM, ADMIN, APPR)
    assert answers(r) == {PM: [PM], ADMIN: [ADMIN], APPR: None}, r


@pytest.mark.parametrize("kind", ["member", "memberOf"])
def test_many_nested_chain(env, kind):
    # carol is in deep-12; deep-N is N-12 nesting steps up; default depth 8.
    conf = env.conf(group_membership=kind)
    r = batch(conf, "many", "carol", grp("deep-4"), grp("deep-3"),
              grp("deep-11"), PM)
    assert r.rc == 0, r
    assert answers(r) == {grp("deep-4"): DEEP[:9], grp("deep-3"): None,
                          grp("deep-11"): DEEP[:2], PM: None}, r
    r = batch(env.conf(group_membership=kind, max_depth=11), "many", "carol",
              grp("deep-1"), grp("deep-6"))
    assert answers(r) == {grp("deep-1"): DEEP, grp("deep-6"): DEEP[:7]}, r
    # a cycle next to the chain ends, and each target keeps its own path
    r = batch(env.conf(group_membership=kind, max_depth=64), "many",
              "mallory", grp("cycle-a"), grp("cycle-b"), ADMIN)
    assert answers(r) == {grp("cycle-a"): [grp("cycle-b"), grp("cycle-a")],
                          grp("cycle-b"): [grp("cycle-b")], ADMIN: None}, r


def test_many_other_kinds(env):
    r = batch(env.conf(group_membership="uniqueMember"), "many", "alice",
              grp("pm-unique"), PM, NOGROUP)
    assert answers(r) == {grp("pm-unique"): [grp("pm-unique")], PM: None,
                          NOGROUP: None}, r
    r = batch(env.conf(group_membership="memberUid"), "many", "alice",
              grp("pm-posix"), PM, grp("no-such-posix"))
    assert answers(r) == {grp("pm-posix"): [grp("pm-posix")], PM: None,
                          grp("no-such-posix"): None}, r
    r = batch(env.conf(group_membership="memberUid"), "many", "bob",
              grp("pm-posix"))
    assert answers(r) == {grp("pm-posix"): None}, r


def test_many_nothing_asked(env):
    r = batch(env.conf(), "many", "alice")
    assert r.rc == 0 and r.lines == [], r


@pytest.mark.parametrize("kind", ["member", "memberOf", "memberUid"])
def test_many_one_bad_group_fails_the_whole_call(env, kind):
    # A DN the server cannot parse is an error, not "no": no answer at all
    # is handed out, not even for the good groups.
    conf = env.conf(group_membership=kind)
    r = batch(conf, "many", "alice", PM, "")
    assert r.rc == 1 and r.lines[0].startswith("error invalid-input:"), r
    assert len(r.lines) == 1, r
    r = batch(conf, "many", "alice", PM, "this is not a DN", ADMIN)
    if kind == "memberOf":
        # memberOf never asks the group itself: a DN that names nothing
        # is simply never reached.
        assert r.rc == 0 and answers(r)["this is not a DN"] is None, r
        assert answers(r)[PM] == [PM], r
        return
    assert r.rc == 1, r
    assert len(r.lines) == 1 and r.lines[0].startswith(
        "error invalid-input:"), r
    assert "this is not a DN" in r.out, r


@pytest.mark.parametrize("kind", ["member", "memberOf"])
def test_failure_mid_batch_fails_the_whole_call(own, kind):
    # The first step answers PM (carol is not in it) and starts the walk
    # down the deep chain; the server then goes away: the call fails as a
    # whole, the answers of the first step are not handed out.
    conf = own.conf(group_membership=kind)
    p = subprocess.Popen(WRAPPER + [BATCH, "-p", conf, "many", "carol", PM,
                                    grp("deep-4")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         env=dict(os.environ, LDAPNOINIT="1"))
    try:
        first = p.stdout.readline().decode()
        assert first == "step 1 done\n", first
        own.s.stop()
        out, err = p.communicate(b"\n" * 20, timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = out.decode()
    assert p.returncode == 3, (out, err)
    assert out.startswith("error unavailable:"), out
    assert "\t" not in out and "BUG" not in out, out


def test_entry_carries_memberof_only_when_used(env):
    r = batch(env.conf(), "entry", "alice")
    assert r.rc == 0, r
    assert r.lines == ["dn " + person("alice"), "memberof-read 0"], r
    r = batch(env.conf(group_membership="memberOf"), "entry", "dave")
    assert r.rc == 0, r
    assert r.lines[:2] == ["dn " + person("dave"), "memberof-read 1"], r
    assert sorted(r.lines[2:]) == sorted(["memberof " + PM,
                                          "memberof " + ADMIN]), r


@pytest.mark.parametrize("kind", ["member", "memberOf"])
def test_entry_name_must_match_exactly(env, kind):
    conf = env.conf(group_membership=kind)
    for name in ("ALICE", "alice ", " alice", "Alice"):
        r = batch(conf, "entry", name)
        assert r.rc == 1 and r.lines == ["notfound"], (name, r)
    r = batch(conf, "entry", "nosuchuser")
    assert r.rc == 1 and r.lines == ["notfound"], r
    conf = env.conf(group_membership=kind,
                    user_filter="(&(objectClass=inetOrgPerson)(mail=%u))")
    r = batch(conf, "entry", "dup@example.com")
    assert r.rc == 1 and r.lines == ["ambiguous"], r
    r = batch(conf, "entry", "alice@example.com")
    assert r.rc == 0 and r.lines[0] == "dn " + person("alice"), r
    # a filter without an (ATTR=%u) assertion confirms no name
    r = batch(env.conf(user_filter="(uid=%u*)"), "entry", "alice")
    assert r.rc == 1 and r.lines == ["notfound"], r


PEOPLE_WANT = [
    PM + "\tyes via " + PM,
    ADMIN + "\tno",
    "erin\tok " + person("erin"),
    "erin\tapprover yes",
    "frank\tok " + person("frank"),
    "frank\tapprover yes",
    "alice\tok " + person("alice"),
    "alice\tapprover no",
    "carol\tok " + person("carol"),
    "carol\tapprover no",
    "nobody\tnotfound",
    "\tinvalid",
]


@pytest.mark.parametrize("keys", [{}, {"nested_groups": "no"},
                                  {"group_membership": "memberOf"}],
                         ids=["member", "member-flat", "memberOf"])
def test_people_with_memberships(env, keys):
    r = batch(env.conf(**keys), "people", "alice", APPR, PM, ADMIN, "--",
              "erin", "frank", "alice", "carol", "nobody", "")
    assert r.rc == 0, r
    assert r.lines == PEOPLE_WANT, r


# ---- round trips, counted on the wire ------------------------------------------------

class RoundProxy:
    """A TCP proxy in front of the directory that counts round trips: a
    round trip is an answer that reaches the client after it sent
    something since the previous answer.  Answers are held back DELAY
    seconds, so every request a client sends together has arrived before
    the first answer is delivered (requests sent one after the other, each
    waiting for its answer, count one round trip each)."""

    def __init__(self, port, delay):
        self.target = port
        self.delay = delay
        self.lock = threading.Lock()
        self.rounds = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.conns = []
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def count(self):
        with self.lock:
            return self.rounds

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            s = socket.create_connection(("127.0.0.1", self.target))
            for x in (c, s):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns += [c, s]
            state = {"sent": False}
            for fn, a, b in ((self._up, c, s), (self._down, s, c)):
                t = threading.Thread(target=fn, args=(a, b, state),
                                     daemon=True)
                t.start()
                self.threads.append(t)

    def _up(self, c, s, state):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                with self.lock:
                    state["sent"] = True
                s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _down(self, s, c, state):
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                time.sleep(self.delay)
                with self.lock:
                    if state["sent"]:
                        self.rounds += 1
                        state["sent"] = False
                c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.stop = True
        for x in self.conns:
            try:
                x.close()
            except OSError:
                pass
        self.sock.close()
        for t in self.threads:
            t.join(timeout=5)


@pytest.fixture
def rounds_proxy(env):
    p = RoundProxy(env.s.port, 0.2 if WRAPPER else 0.05)
    yield p
    p.close()


# (settings, command, round trips: bind + user search + the batch's own)
ROUNDS = [
    # one round for every compare, whatever their number
    ({"nested_groups": "no"}, ["many", "alice", PM, ADMIN, APPR, TEAM,
                               NOGROUP, grp("deep-1")], 2 + 1),
    # nested: compares with walk level 1, then level 2 for both groups of
    # dave at once (one round per level, not per group)
    ({}, ["many", "dave", grp("cycle-a"), APPR], 2 + 2),
    ({}, ["many", "alice", PM, ADMIN], 2 + 2),
    # one round per level of a chain: deep-4 is 9 levels above carol
    ({}, ["many", "carol", grp("deep-4")], 2 + 9),
    # memberOf: the user's values come with the entry
    ({"group_membership": "memberOf", "nested_groups": "no"},
     ["many", "alice", PM, ADMIN, APPR], 2 + 0),
    ({"group_membership": "memberOf"}, ["many", "alice", PM, ADMIN], 2 + 1),
    ({"group_membership": "memberOf"}, ["many", "dave", grp("cycle-a")],
     2 + 1),
    ({"group_membership": "memberUid"},
     ["many", "alice", grp("pm-posix"), PM], 2 + 1),
    # a decision's lookups: memberships with the people, then approvers
    ({"nested_groups": "no"}, ["people", "alice", APPR, PM, ADMIN, "--",
                               "erin", "frank", "alice", "nobody"], 2 + 2),
    # nested: the approvers join the user's walk level 2
    ({}, ["people", "alice", APPR, PM, ADMIN, "--", "erin", "frank"], 2 + 2),
    # memberOf: the approvers' values come with their entries
    ({"group_membership": "memberOf"},
     ["people", "alice", APPR, PM, ADMIN, "--", "erin", "frank"], 2 + 1),
]


@pytest.mark.parametrize("keys,args,want", ROUNDS,
                         ids=[f"{i}-{r[1][0]}-{r[1][1]}"
                              for i, r in enumerate(ROUNDS)])
def test_round_trips(env, rounds_proxy, keys, args, want):
    conf = env.conf(uri=f"ldap://127.0.0.1:{rounds_proxy.port}/",
                    allow_plaintext="yes", **keys)
    before = rounds_proxy.count()
    r = batch(conf, *args)
    assert r.rc == 0, r
    assert rounds_proxy.count() - before == want, r
    # and the answers are those of the same lookups made directly
    direct = batch(env.conf(**keys), *args)
    assert direct.lines == r.lines, (direct, r)
