"""The whole world of one test run: a test CA, slapd with the seed users,
the ticket-service emulator, the STS emulator, and pmpgated configured for
them.  Used by the integration tests and by `make demo`.

    w = World(tmpdir).start()
    w.ticket("CHG0000001", requested_for="alice", approvers=["erin"])
    r = w.credentials("alice", "procurement-manager", "CHG0000001")
    w.stop()
"""
import json
import os
import time

import common
import daemon
import slapd
import sts_emulator
import ticket_emulator

ACCOUNT = "123456789012"
ROLES = ("procurement-manager", "pmp-administrator")
GROUPS = {
    "procurement-manager": "cn=procurement-managers,ou=groups,dc=example,dc=com",
    "pmp-administrator": "cn=pmp-administrators,ou=groups,dc=example,dc=com",
}
APPROVERS = {
    "procurement-manager": "cn=procurement-approvers,ou=groups,dc=example,dc=com",
    "pmp-administrator": "cn=marketplace-approvers,ou=groups,dc=example,dc=com",
}


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def snow_time(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


class World:
    def __init__(self, directory, as_root=False):
        self.dir = directory
        os.chmod(directory, 0o755)
        self.ca = common.TestCA(directory)
        self.slapd = slapd.Slapd(directory, self.ca)
        self.token = "tk-" + os.urandom(12).hex()
        self.tickets = ticket_emulator.TicketService(directory, self.ca,
                                                     token=self.token).start()
        self.sts = sts_emulator.StsEmulator(directory, self.ca).start()
        self.daemon = daemon.Pmpgated(directory, as_root=as_root)
        self.overrides = {}

    # ---- configuration --------------------------------------------------

    def config_text(self, _daemon=None, **sections):
        """pmpgate.conf for this world; keyword arguments are dicts of
        section -> {key: value or None (drop)} overrides.  _daemon: for
        that Pmpgated (another host, see add_host) instead of ours."""
        d = _daemon or self.daemon
        pw = d.secret("ldap.pw", self.slapd.bind_password + "\n")
        tok = d.secret("tickets.token", self.token + "\n")
        aws = d.secret("aws-credentials",
                       "[default]\n"
                       f"aws_access_key_id = {self.sts.base_key_id}\n"
                       f"aws_secret_access_key = {self.sts.base_secret}\n")
        conf = {
            "daemon": {"socket": d.socket, "user": daemon.DAEMON_USER,
                       "workers": "4", "deadline": "8s"},
            "directory": {"uri": self.slapd.ldaps_uri, "base": self.slapd.base,
                          "bind_dn": self.slapd.bind_dn,
                          "bind_password_file": pw,
                          "ca_file": self.ca.cert, "timeout": "3s",
                          "ticket_user_attr": "uid"},
            "tickets": {"provider": "servicenow",
                        "url": self.tickets.url_servicenow,
                        "id_pattern": "CHG[0-9]{7}", "token_file": tok,
                        "auth": "bearer", "ca_file": self.ca.cert,
                        "timeout": "3s"},
            "aws": {"region": "us-east-1", "sts_endpoint": self.sts.url,
                    "credentials": "file:" + aws, "ca_file": self.ca.cert,
                    "timeout": "3s"},
            "role procurement-manager": {
                "group": GROUPS["procurement-manager"],
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/procurement-manager",
                "max_duration": "1h",
                "approver_group": APPROVERS["procurement-manager"],
                "min_approvals": "1", "min_approvals.private-offer": "2",
                "conflicts": "pmp-administrator"},
            "role pmp-administrator": {
                "group": GROUPS["pmp-administrator"],
                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/pmp-administrator",
                "max_duration": "2h",
                "approver_group": APPROVERS["pmp-administrator"],
                "min_approvals": "1", "requester_may_hold": "no",
                "conflicts": "procurement-manager"},
            "separation": {"window": "12h"},
            "ledger": {"backend": "file", "path": d.state},
            "audit": {"path": d.audit_log, "signing_key": d.make_audit_key(),
                      "syslog": "no"},
        }
        for sec, keys in list(self.overrides.items()) + list(sections.items()):
            conf.setdefault(sec, {})
            for k, v in keys.items():
                if v is None:
                    conf[sec].pop(k, None)
                else:
                    conf[sec][k] = v
        out = []
        for sec, keys in conf.items():
            out.append(f"[{sec}]")
            out += [f"{k} = {v}" for k, v in keys.items()]
            out.append("")
        return "\n".join(out)

    def configure(self, **sections):
        self.daemon.write_config(self.config_text(**sections))

    def add_host(self, name, **sections):
        """Another pmpgated ("host") in DIR/NAME with its own socket,
        state, secrets and log, sharing this world's services; configured
        like ours plus SECTIONS.  Not started; the caller stops it."""
        d = daemon.Pmpgated(os.path.join(self.dir, name))
        d.write_config(self.config_text(_daemon=d, **sections))
        return d

    # ---- lifecycle --------------------------------------------------------

    def start(self):
        self.configure()
        self.daemon.start()
        return self

    def stop(self):
        for s in (self.daemon, self.sts, self.tickets, self.slapd):
            try:
                s.stop()
            except Exception:  # noqa: BLE001 - stop everything we can
                pass

    # ---- tickets ------------------------------------------------------------

    def ticket(self, number, requested_for="alice", role="procurement-manager",
               state="approved", approvers=("erin",), requester="carol",
               category="public-offer", start=None, end=None, status=200,
               delay=0, raw=None, extra=None):
        now = time.time()
        rec = {
            "number": number,
            "approval": state,
            "requested_for": requested_for,
            "opened_by": requester,
            "u_approvers": list(approvers),
            "u_aws_role": role,
            "category": category,
            "start_date": snow_time(now - 3600 if start is None else start),
            "end_date": snow_time(now + 86400 if end is None else end),
        }
        rec.update(extra or {})
        self.tickets.put_ticket("servicenow", number, {"result": [rec]},
                                status=status, delay=delay, raw=raw)
        return rec

    # ---- clients ----------------------------------------------------------

    def helper_argv(self, role, ticket=None, *extra):
        argv = [daemon.binary("pmpgate-credentials"), "--role", role,
                "--socket", self.daemon.socket]
        if ticket is not None:
            argv += ["--ticket", ticket]
        return argv + list(extra)

    def credentials(self, user, role, ticket=None, *extra, env=None):
        e = {"PATH": "/usr/bin:/bin"}
        e.update(env or {})
        return daemon.as_user(user, self.helper_argv(role, ticket, *extra),
                              env=e)

    def aws(self, user, *args, profile="pm", role="procurement-manager",
            ticket=None, env=None):
        """Run the real AWS CLI as USER with pmpgate-credentials as its
        credential_process."""
        home = daemon.user_home(self.dir, user)
        cfg = os.path.join(home, "config")
        helper = " ".join(self.helper_argv(role, ticket))
        with open(cfg, "w") as f:
            f.write(f"[profile {profile}]\ncredential_process = {helper}\n"
                    "region = us-east-1\n")
        uid = daemon.USERS[user]
        os.chown(cfg, uid, uid)
        e = {"PATH": "/usr/bin:/bin", "HOME": home, "AWS_CONFIG_FILE": cfg,
             "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none"),
             "AWS_CA_BUNDLE": self.ca.cert, "AWS_PROFILE": profile,
             "AWS_PAGER": "", "AWS_EC2_METADATA_DISABLED": "true"}
        e.update(env or {})
        return daemon.as_user(user, ["/usr/bin/aws", *args,
                                     "--endpoint-url", self.sts.url], env=e,
                              timeout=120)


def parse_json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None
