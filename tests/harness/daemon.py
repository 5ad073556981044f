"""pmpgated under test, and its clients run as test users.

The daemon runs under nss_wrapper so that test uids map to directory users
without touching /etc/passwd: uid 20001 is "alice", and so on.  It runs
as its own unprivileged user ("pmpgate", uid 20100), either started as that
user directly (as systemd would) or started as root and left to drop
privileges itself.  Clients run as a test uid through setpriv, so the
daemon's SO_PEERCRED sees that uid.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import common

NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"
DAEMON_USER = "pmpgate"
DAEMON_UID = 20100

# Directory users of tests/harness/ldif/seed.ldif and their uids.
USERS = {
    "alice": 20001, "bob": 20002, "carol": 20003, "dave": 20004,
    "erin": 20005, "frank": 20006, "grace": 20007, "mallory": 20008,
    "mhernandez": 20009, "dup1": 20010, "dup2": 20011,
    # a local account with no directory entry
    "nobody-in-ldap": 20050,
}

# A local group for [daemon] admin_group tests: erin is its only member.
ADMIN_GROUP = "pmpadmins"
ADMIN_GID = 20200
ADMIN_MEMBERS = ("erin",)


def build_dir():
    return os.environ.get("PMPGATE_BUILD",
                          os.path.join(os.path.dirname(__file__), "..", "..",
                                       "build"))


def binary(name):
    return os.path.abspath(os.path.join(build_dir(), name))


class Pmpgated:
    """pmpgated with CONFIG_TEXT in DIRECTORY/daemon."""

    def __init__(self, directory, config_text=None, as_root=False,
                 extra_env=None):
        self.dir = os.path.join(directory, "daemon")
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.run_dir = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.run_dir, "socket")
        self.secrets = os.path.join(self.dir, "secrets")
        os.makedirs(self.secrets, exist_ok=True)
        os.chown(self.secrets, DAEMON_UID, DAEMON_UID)
        os.chmod(self.secrets, 0o700)
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state, exist_ok=True)
        os.chown(self.state, DAEMON_UID, DAEMON_UID)
        os.chmod(self.state, 0o700)
        self.logdir = os.path.join(self.dir, "log")
        os.makedirs(self.logdir, exist_ok=True)
        os.chown(self.logdir, DAEMON_UID, DAEMON_UID)
        os.chmod(self.logdir, 0o750)
        self.audit_log = os.path.join(self.logdir, "audit.jsonl")
        self.audit_key = os.path.join(self.secrets, "audit-signing.pem")
        self.audit_pub = os.path.join(self.dir, "audit-signing.pub")
        self.config = os.path.join(self.dir, "pmpgate.conf")
        self.log = os.path.join(self.dir, "pmpgated.log")
        self.passwd = os.path.join(self.dir, "passwd")
        self.group = os.path.join(self.dir, "group")
        self.as_root = as_root
        self.extra_env = dict(extra_env or {})
        self.wrapper = []   # e.g. ["prlimit", "--fsize=4096", "--"]
        self.proc = None
        self._write_nss()
        if config_text is not None:
            self.write_config(config_text)

    def _write_nss(self):
        with open(self.passwd, "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n")
            f.write(f"{DAEMON_USER}:x:{DAEMON_UID}:{DAEMON_UID}:pmpgate "
                    f"daemon:/nonexistent:/usr/sbin/nologin\n")
            for name, uid in USERS.items():
                f.write(f"{name}:x:{uid}:{uid}:{name}:/nonexistent:"
                        "/bin/false\n")
        with open(self.group, "w") as f:
            f.write("root:x:0:\n")
            f.write(f"{DAEMON_USER}:x:{DAEMON_UID}:\n")
            for name, uid in USERS.items():
                f.write(f"{name}:x:{uid}:\n")
            f.write(f"{ADMIN_GROUP}:x:{ADMIN_GID}:"
                    f"{','.join(ADMIN_MEMBERS)}\n")
        for p in (self.passwd, self.group):
            os.chmod(p, 0o644)

    def make_audit_key(self):
        """An Ed25519 signing key for the daemon (pmpgate audit keygen);
        the public half stays readable for the tests' verify."""
        if not os.path.exists(self.audit_key):
            subprocess.run([binary("pmpgate"), "audit", "keygen",
                            "--out-private", self.audit_key,
                            "--out-public", self.audit_pub],
                           check=True, capture_output=True)
            os.chown(self.audit_key, DAEMON_UID, DAEMON_UID)
        return self.audit_key

    def audit_records(self):
        """The audit log's records (complete lines only)."""
        try:
            with open(self.audit_log) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def verify_audit(self):
        return subprocess.run([binary("pmpgate"), "audit", "verify",
                               "--public-key", self.audit_pub,
                               self.audit_log], capture_output=True,
                              text=True, timeout=120)

    def secret(self, name, content):
        """Write a secret file the daemon's user owns (mode 0600)."""
        path = os.path.join(self.secrets, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        os.chown(path, DAEMON_UID, DAEMON_UID)
        os.chmod(path, 0o600)
        return path

    def write_config(self, text):
        tmp = self.config + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.config)

    def env(self):
        e = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LD_PRELOAD": NSS_WRAPPER,
            "NSS_WRAPPER_PASSWD": self.passwd,
            "NSS_WRAPPER_GROUP": self.group,
        }
        if os.path.basename(os.path.normpath(build_dir())) == "build-asan":
            # nss_wrapper's RTLD_DEEPBIND does not mix with ASan
            e["NSS_WRAPPER_DISABLE_DEEPBIND"] = "1"
            e["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
            e["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
        e.update(self.extra_env)
        return e

    def sanitizer_reports(self):
        """AddressSanitizer/UBSan/LeakSanitizer reports in the log."""
        out = self.output()
        return [line for line in out.splitlines()
                if "ERROR: AddressSanitizer" in line
                or "ERROR: LeakSanitizer" in line
                or "runtime error:" in line]

    def argv(self, *extra):
        base = list(self.wrapper) + [binary("pmpgated"), "-f", "-c",
                                     self.config, *extra]
        if self.as_root:
            return base
        return ["setpriv", f"--reuid={DAEMON_UID}", f"--regid={DAEMON_UID}",
                "--clear-groups", "--"] + base

    def check_config(self):
        return subprocess.run(self.argv("-t"), env=self.env(),
                              capture_output=True, text=True, timeout=30)

    def start(self, timeout=10.0):
        os.makedirs(self.run_dir, exist_ok=True)
        os.chown(self.run_dir, DAEMON_UID, DAEMON_UID)
        os.chmod(self.run_dir, 0o755)
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.proc = common.Proc(self.argv(), self.log, env=self.env())
        try:
            common.wait_for(self._ready, timeout=timeout, what="pmpgated")
        except TimeoutError:
            raise RuntimeError("pmpgated did not start:\n" + self.output())
        return self

    def _ready(self):
        if not self.proc.alive():
            raise RuntimeError("pmpgated exited:\n" + self.output())
        if not os.path.exists(self.socket):
            return False
        return self.request({"v": 1, "op": "status"}).get("status") == "allow"

    def output(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.alive()

    def reload(self):
        self.proc.signal(signal.SIGHUP)

    def stop(self):
        if self.proc is not None:
            rc = self.proc.stop()
            self.proc = None
            reports = self.sanitizer_reports()
            if reports:
                raise AssertionError("pmpgated: sanitizer reports:\n" +
                                     "\n".join(reports))
            return rc
        return None

    def request(self, obj, raw=None, timeout=15.0):
        """Send one request as the current process (root) and return the
        decoded answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket)
            s.sendall(raw if raw is not None else
                      (json.dumps(obj) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf.decode()) if buf else {}

    def pid(self):
        return self.proc.pid if self.proc else None


def as_user(user, argv, env=None, timeout=60, input=None):
    """Run ARGV as the test user USER (a name of USERS or a uid)."""
    uid = USERS[user] if isinstance(user, str) else int(user)
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
           "--"] + list(argv)
    return subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=timeout, input=input)


def user_home(directory, user):
    """A HOME the test user owns (for the AWS CLI's cache)."""
    uid = USERS[user]
    home = os.path.join(directory, "home", user)
    os.makedirs(home, exist_ok=True)
    os.chmod(os.path.join(directory, "home"), 0o755)
    os.chown(home, uid, uid)
    os.chmod(home, 0o700)
    return home


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def wait_gone(proc, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return True
        time.sleep(0.05)
    return False
