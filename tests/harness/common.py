"""Shared pieces of the test harness: ports, a test CA, processes.

Every service the tests need is started from files in a temporary
directory, on random 127.0.0.1 ports, and stopped by its pid.
"""
import os
import signal
import socket
import subprocess
import time

OPENSSL = "openssl"


def free_port():
    """A port that was free a moment ago on 127.0.0.1 (bind to 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value; raise on timeout."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - report the last failure
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}: {last!r}")


def _run(args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, **kw)


class TestCA:
    """A throw-away CA and server certificates for 127.0.0.1.

    ca.cert   the CA certificate (PEM), given to the code under test
    server_cert(name) -> (cert, key) with SAN IP:127.0.0.1, DNS:localhost
    """

    def __init__(self, directory, name="pmpgate-test-ca"):
        self.dir = os.path.join(directory, name)
        os.makedirs(self.dir, exist_ok=True)
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        _run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
              "-subj", f"/CN={name}", "-keyout", self.key, "-out", self.cert,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def server_cert(self, name):
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.pem")
        ext = os.path.join(self.dir, f"{name}.ext")
        if os.path.exists(cert):
            return cert, key
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "extendedKeyUsage=serverAuth\n"
                    "basicConstraints=CA:FALSE\n")
        _run([OPENSSL, "req", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
              "-keyout", key, "-out", csr])
        _run([OPENSSL, "x509", "-req", "-in", csr, "-CA", self.cert,
              "-CAkey", self.key, "-CAcreateserial", "-days", "2",
              "-extfile", ext, "-out", cert])
        os.chmod(key, 0o644)  # slapd may run unprivileged in tests
        return cert, key


class Proc:
    """A child process we started; stopped by pid, never by name."""

    def __init__(self, args, log_path, env=None, preexec_fn=None, cwd=None):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=env, preexec_fn=preexec_fn, cwd=cwd,
                                  start_new_session=True)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout=5.0):
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        self.log.close()
        return self.p.returncode

    def kill(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.p.wait(timeout=5)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


def fd_targets(pid):
    """What each open descriptor of process PID names (/proc/PID/fd)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            continue
    return out


def ledger_cache_fd(target):
    """Is TARGET (a /proc/PID/fd link) a descriptor the file ledger keeps
    on purpose?  It holds the snapshot and journal it last read open (one
    each, possibly of a file another writer has replaced since): not a
    leak."""
    name = os.path.basename(target.removesuffix(" (deleted)"))
    return name in ("ledger.json", "ledger.journal") and "/state/" in target

