"""A throw-away OpenLDAP server for the tests.

    ca = common.TestCA(tmp)
    s = slapd.Slapd(tmp, ca)        # writes the config, starts, loads seed
    s.ldaps_uri, s.bind_dn, s.password_file, s.directory_section()
    s.add_member(group_dn, user_dn); s.restart(); s.stop()

slapd runs in the foreground from files in its own directory, on random
127.0.0.1 ports, with the mdb backend and the memberof overlay; the seed
(ldif/seed.ldif) is loaded with ldapadd against the running server so that
the overlay records memberOf.  The read-only service account
cn=pmpgate,ou=services,dc=example,dc=com may read everything except
passwords; anonymous clients may only bind and read the root DSE.
"""
import atexit
import os
import secrets
import shutil
import subprocess
import time

import common

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = os.path.join(HERE, "ldif", "seed.ldif")
SLAPD = "/usr/sbin/slapd"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"

BASE = "dc=example,dc=com"
BIND_DN = "cn=pmpgate,ou=services," + BASE
ROOT_DN = "cn=admin," + BASE


class SlapdError(RuntimeError):
    pass


def _write_secret(path, text):
    """Write TEXT to PATH with mode 0600 (replacing any old file)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class Slapd:
    """slapd in DIRECTORY/slapd, TLS from CA (a common.TestCA)."""

    def __init__(self, directory, ca, seed=SEED, start=True):
        self.dir = os.path.join(directory, "slapd")
        self.data = os.path.join(self.dir, "data")
        shutil.rmtree(self.data, ignore_errors=True)  # a fresh database
        os.makedirs(self.data)
        self.ca = ca
        self.cert, self.key = ca.server_cert("slapd")
        self.port = common.free_port()
        self.tls_port = common.free_port()
        while self.tls_port == self.port:
            self.tls_port = common.free_port()
        self.ldap_uri = f"ldap://127.0.0.1:{self.port}/"
        self.ldaps_uri = f"ldaps://127.0.0.1:{self.tls_port}/"
        self.base = BASE
        self.bind_dn = BIND_DN
        self.bind_password = secrets.token_urlsafe(18)
        self.root_dn = ROOT_DN
        self.root_password = secrets.token_urlsafe(18)
        self.password_file = os.path.join(self.dir, "bind.pw")
        _write_secret(self.password_file, self.bind_password + "\n")
        self._root_pw_file = os.path.join(self.dir, "root.pw")
        _write_secret(self._root_pw_file, self.root_password)
        self.conf = os.path.join(self.dir, "slapd.conf")
        self.log = os.path.join(self.dir, "slapd.log")
        self.proc = None
        self._write_conf()
        self._check_conf()
        # Never leave a server behind when the test process ends.
        atexit.register(self.stop)
        if start:
            self.start()
            try:
                self._seed(seed)
            except BaseException:
                self.stop()
                raise

    # ---- configuration -------------------------------------------------

    def _write_conf(self):
        schemas = "".join(f"include {SCHEMA_DIR}/{s}.schema\n"
                          for s in ("core", "cosine", "nis", "inetorgperson"))
        conf = f"""# slapd.conf written by the pmpgate test harness
{schemas}
modulepath {MODULE_DIR}
moduleload back_mdb
moduleload memberof

pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args

TLSCACertificateFile {self.ca.cert}
TLSCertificateFile {self.cert}
TLSCertificateKeyFile {self.key}

# The root DSE and the schema are public (clients discover the server).
access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read

database mdb
maxsize 33554432
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {self.root_password}
directory {self.data}
index objectClass,uid,mail,cn eq
index member,uniqueMember,memberUid eq
# memberOf filters ((memberOf=G), pmpgate review with memberOf) read
# every entry without it
index memberOf eq

overlay memberof

access to attrs=userPassword
	by self write
	by anonymous auth
	by * none
access to *
	by dn.exact="{BIND_DN}" read
	by self read
	by anonymous auth
	by * none
"""
        with open(self.conf, "w") as f:
            f.write(conf)

    def _check_conf(self):
        r = subprocess.run([SLAPD, "-Tt", "-Q", "-u", "-f", self.conf],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise SlapdError("slaptest failed: " +
                             r.stdout.decode("utf-8", "replace"))

    def directory_section(self, uri=None, **keys):
        """A [directory] section for pmpgate.conf using this server; keyword
        arguments add or override keys (None drops a key)."""
        d = {
            "uri": uri or self.ldaps_uri,
            "base": self.base,
            "bind_dn": self.bind_dn,
            "bind_password_file": self.password_file,
            "ca_file": self.ca.cert,
            "timeout": "5s",
        }
        d.update(keys)
        lines = ["[directory]"]
        lines += [f"{k} = {v}" for k, v in d.items() if v is not None]
        return "\n".join(lines) + "\n"

    # ---- process -------------------------------------------------------

    def running(self):
        return self.proc is not None and self.proc.alive()

    def start(self, timeout=10.0):
        if self.running():
            return
        self.proc = common.Proc(
            [SLAPD, "-d", "0", "-f", self.conf,
             "-h", f"{self.ldap_uri} {self.ldaps_uri}"],
            self.log, env=self.env())
        try:
            common.wait_for(self._ready, timeout=timeout, what="slapd")
        except TimeoutError:
            self.stop()
            raise SlapdError("slapd did not start; log:\n" + self._log_tail())

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def kill(self):
        """Stop abruptly (SIGKILL): connections drop without a goodbye."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.log.close()
            self.proc = None

    def _ready(self):
        if not self.running():
            raise SlapdError("slapd exited; log:\n" + self._log_tail())
        r = subprocess.run(["ldapsearch", "-x", "-H", self.ldap_uri, "-b", "",
                            "-s", "base", "-LLL", "1.1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=self.env())
        return r.returncode == 0

    def _log_tail(self):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    # ---- data ----------------------------------------------------------

    def env(self):
        """Environment for ldap-utils: no ldap.conf/ldaprc, our CA."""
        e = dict(os.environ)
        e["LDAPNOINIT"] = "1"
        e["LDAPTLS_CACERT"] = self.ca.cert
        return e

    def _util(self, tool, args, text=None):
        # As rootdn over loopback ldap:// (LDAPNOINIT disables LDAPTLS_*).
        # The root password goes through a file, not argv.
        r = subprocess.run([tool, "-x", "-H", self.ldap_uri, "-D", ROOT_DN,
                            "-y", self._root_pw_file] + args,
                           input=text.encode() if text is not None else None,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self.env())
        if r.returncode != 0:
            raise SlapdError(f"{tool} failed ({r.returncode}): " +
                             r.stderr.decode("utf-8", "replace"))
        return r.stdout.decode("utf-8", "replace")

    def _seed(self, path):
        with open(path) as f:
            self.add_ldif(f.read())
        self.add_ldif(f"""dn: {BIND_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: pmpgate
description: read-only account of pmpgated
userPassword: {self.bind_password}
""")

    def add_ldif(self, text):
        """ldapadd TEXT (records may also carry changetype)."""
        return self._util("ldapmodify", ["-a"], text)

    def modify(self, text):
        """ldapmodify TEXT."""
        return self._util("ldapmodify", [], text)

    def delete(self, dn):
        return self._util("ldapdelete", [dn])

    def search(self, base, filt="(objectClass=*)", attrs=(), scope="sub"):
        """ldapsearch as rootdn; returns the LDIF text."""
        return self._util("ldapsearch", ["-LLL", "-o", "ldif-wrap=no",
                                         "-b", base, "-s", scope, filt]
                          + list(attrs))

    def add_member(self, group_dn, member_dn, attr="member"):
        return self.modify(f"dn: {group_dn}\nchangetype: modify\n"
                           f"add: {attr}\n{attr}: {member_dn}\n")

    def remove_member(self, group_dn, member_dn, attr="member"):
        return self.modify(f"dn: {group_dn}\nchangetype: modify\n"
                           f"delete: {attr}\n{attr}: {member_dn}\n")

    def set_bind_password(self, password):
        """Change the service account's password in the directory (not in
        password_file): for wrong-password tests."""
        return self.modify(f"dn: {BIND_DN}\nchangetype: modify\n"
                           f"replace: userPassword\nuserPassword: {password}\n")

    def close(self):
        self.stop()


def _selftest():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        ca = common.TestCA(tmp)
        s = Slapd(tmp, ca)
        try:
            print("up in %.2fs at %s %s" % (time.monotonic() - t0,
                                            s.ldap_uri, s.ldaps_uri))
            print(s.search("uid=bob,ou=people," + BASE, attrs=["memberOf"],
                           scope="base"))
        finally:
            s.stop()


if __name__ == "__main__":
    _selftest()
