"""A 3-member etcd cluster on 127.0.0.1 for the etcd ledger tests.

    c = EtcdCluster(tmpdir, ca).start()    # ca: common.TestCA
    c.endpoints          # ["https://127.0.0.1:PORT", ...] (client URLs)
    c.client_cert        # (cert, key) for [ledger] cert_file / key_file
    c.client_cert_nocn   # the same without a Common Name (for etcd auth)
    c.kill(1)            # SIGKILL member 1 (by pid); c.restart(1)
    c.leader()           # the index of the leading member
    c.stop()             # stop every member, remove the data directories

Clients speak TLS with client certificates (--client-cert-auth, the
certificates signed by the test CA); peers talk plain http on loopback.
Each data directory preallocates a 64 MB WAL: stop() removes them.
"""
import json
import os
import shutil
import ssl
import subprocess
import urllib.request

import common

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"


def _openssl(*args):
    subprocess.run([common.OPENSSL, *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def issue_cert(ca, name, usage, subject=None):
    """A certificate of CA for NAME with extendedKeyUsage USAGE (and SAN
    127.0.0.1 and localhost), subject SUBJECT (default /CN=NAME); returns
    (cert, key), the key mode 0600."""
    key = os.path.join(ca.dir, f"{name}.key")
    csr = os.path.join(ca.dir, f"{name}.csr")
    cert = os.path.join(ca.dir, f"{name}.pem")
    ext = os.path.join(ca.dir, f"{name}.ext")
    if os.path.exists(cert):
        return cert, key
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                f"extendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-subj", subject or f"/CN={name}", "-keyout", key,
             "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
             "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert)
    os.chmod(key, 0o600)
    return cert, key


class Member:
    def __init__(self, cluster, i):
        self.cluster = cluster
        self.name = f"m{i}"
        self.data = os.path.join(cluster.dir, f"{self.name}.data")
        self.log = os.path.join(cluster.dir, f"{self.name}.log")
        self.client_port = common.free_port()
        self.peer_port = common.free_port()
        self.proc = None

    @property
    def client_url(self):
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

    def argv(self, state):
        c = self.cluster
        return [ETCD, "--name", self.name, "--data-dir", self.data,
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", c.initial_cluster(),
                "--initial-cluster-state", state,
                "--initial-cluster-token", c.token,
                "--cert-file", c.server_cert[0],
                "--key-file", c.server_cert[1],
                "--trusted-ca-file", c.ca.cert, "--client-cert-auth",
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--log-level", "warn"]

    def start(self, state="new"):
        self.proc = common.Proc(self.argv(state), self.log)

    def alive(self):
        return self.proc is not None and self.proc.alive()


class EtcdCluster:
    def __init__(self, directory, ca, size=3):
        self.dir = os.path.join(directory, "etcd")
        os.makedirs(self.dir, exist_ok=True)
        self.ca = ca
        self.token = "pmpgate-test-" + os.urandom(4).hex()
        self.server_cert = issue_cert(ca, "etcd-server",
                                      "serverAuth,clientAuth")
        self.client_cert = issue_cert(ca, "etcd-client", "clientAuth")
        # with etcd authentication on, the JSON gateway refuses client
        # certificates with a Common Name: this one has none
        self.client_cert_nocn = issue_cert(ca, "etcd-client-nocn",
                                           "clientAuth", "/O=pmpgate")
        self.members = [Member(self, i) for i in range(size)]

    def initial_cluster(self):
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self):
        return [m.client_url for m in self.members]

    def _ssl(self):
        ctx = ssl.create_default_context(cafile=self.ca.cert)
        ctx.load_cert_chain(*self.client_cert)
        return ctx

    def health(self, i, timeout=1.0):
        """True when member I answers /health with a leader."""
        with urllib.request.urlopen(self.members[i].client_url + "/health",
                                    timeout=timeout,
                                    context=self._ssl()) as r:
            return json.loads(r.read()).get("health") == "true"

    def start(self, timeout=20.0):
        for m in self.members:
            m.start()
        try:
            for i in range(len(self.members)):
                common.wait_for(lambda i=i: self._ready(i), timeout=timeout,
                                what=f"etcd member {i}")
        except Exception:
            logs = "\n".join(self.output(i)[-2000:]
                             for i in range(len(self.members)))
            self.stop()
            raise RuntimeError("etcd cluster did not start:\n" + logs)
        return self

    def _ready(self, i):
        if not self.members[i].alive():
            raise RuntimeError(f"etcd member {i} exited")
        return self.health(i)

    def kill(self, i):
        """SIGKILL member I (by its pid) and reap it."""
        self.members[i].proc.kill()
        self.members[i].proc.stop()

    def leader(self):
        """The index of the member that leads now."""
        p = self.etcdctl("endpoint", "status", "--write-out", "json")
        if p.returncode != 0:
            raise RuntimeError(p.stderr)
        for st in json.loads(p.stdout):
            h = st["Status"]["header"]
            if h["member_id"] == st["Status"]["leader"]:
                return [m.client_url for m in self.members].index(
                    st["Endpoint"])
        raise RuntimeError("no leader")

    def restart(self, i, timeout=20.0):
        self.members[i].start(state="existing")
        common.wait_for(lambda: self._ready(i), timeout=timeout,
                        what=f"etcd member {i} back")

    def wait_healthy(self, timeout=20.0):
        """Every live member reports a leader."""
        for i, m in enumerate(self.members):
            if m.alive():
                common.wait_for(lambda i=i: self.health(i), timeout=timeout,
                                what=f"etcd member {i} healthy")

    def output(self, i):
        try:
            with open(self.members[i].log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def etcdctl(self, *args, user=None, timeout=20):
        """Run etcdctl against the live members (v3 API, TLS)."""
        eps = ",".join(m.client_url for m in self.members if m.alive())
        argv = [ETCDCTL, "--endpoints", eps, "--cacert", self.ca.cert,
                "--cert", self.client_cert[0], "--key", self.client_cert[1],
                "--dial-timeout", "3s", "--command-timeout", "5s"]
        if user is not None:
            argv += ["--user", user]
        env = dict(os.environ, ETCDCTL_API="3")
        return subprocess.run(argv + list(args), capture_output=True,
                              text=True, timeout=timeout, env=env)

    def stop(self):
        for m in self.members:
            if m.proc is not None:
                try:
                    m.proc.stop()
                except Exception:  # noqa: BLE001 - stop every member
                    pass
                m.proc = None
        for m in self.members:
            shutil.rmtree(m.data, ignore_errors=True)

    def ledger_keys(self, **extra):
        """The [ledger] section for this cluster."""
        keys = {"backend": "etcd", "endpoints": " ".join(self.endpoints),
                "ca_file": self.ca.cert, "cert_file": self.client_cert[0],
                "key_file": self.client_cert[1], "timeout": "2s"}
        keys.update(extra)
        return keys
