"""make demo: the whole story against real local services.

Starts, in a temporary directory and on random 127.0.0.1 ports, a real
slapd (TLS, the seed users and groups), the ticket-service emulator
(HTTPS, ServiceNow shape), the STS emulator (HTTPS, SigV4 checked with
botocore) and pmpgated, then shows an approved procurement-manager getting
credentials that the real AWS CLI uses, and three refusals with their
reasons.  Stops everything at the end.
"""
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import daemon  # noqa: E402
import world as worldmod  # noqa: E402


def say(text=""):
    print(text, flush=True)


def step(title):
    say()
    say("== " + title)


def show(cmd, r, secret_keys=("SecretAccessKey", "SessionToken")):
    say(f"$ {cmd}")
    out = r.stdout.strip()
    if out:
        try:
            obj = json.loads(out)
            for k in secret_keys:
                if k in obj:
                    obj[k] = obj[k][:8] + "…(" + str(len(obj[k])) + " chars)"
            out = json.dumps(obj, indent=2, ensure_ascii=False)
        except ValueError:
            pass
        say(out)
    if r.stderr.strip():
        say(r.stderr.strip())
    say(f"[exit {r.returncode}]")


def main():
    if os.geteuid() != 0:
        say("make demo runs the daemon as its own user and clients as test "
            "users: run it as root.")
        return 2
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="pmpgate-demo-")
    w = None
    try:
        step("Starting slapd (ldaps), the ticket service, the STS emulator "
             "and pmpgated")
        w = worldmod.World(tmp).start()
        say(f"directory     {w.slapd.ldaps_uri}  (CA {w.ca.cert})")
        say(f"tickets       {w.tickets.base}  (ServiceNow Table API)")
        say(f"STS           {w.sts.url}  (every signature checked by botocore)")
        say(f"pmpgated      {w.daemon.socket}  (pid {w.daemon.pid()}, "
            f"running as uid {daemon.DAEMON_UID})")

        step("The approved procurement-manager")
        say("alice is in cn=procurement-managers; CHG0012345 is approved by "
            "erin (a procurement approver), for alice, role "
            "procurement-manager, window open now.")
        w.ticket("CHG0012345", requested_for="alice", approvers=["erin"],
                 requester="carol", category="public-offer")
        r = w.credentials("alice", "procurement-manager", "CHG0012345")
        show("pmpgate-credentials --role procurement-manager --ticket "
             "CHG0012345    # as alice", r)
        req = [x for x in w.sts.requests()
               if x.get("action") == "AssumeRole"][-1]
        say(f"STS saw AssumeRole {req['role_arn']} session "
            f"{req['session_name']} SourceIdentity={req['source_identity']} "
            f"tags={json.dumps(req['tags'])} signature_ok="
            f"{req['signature_ok']}")

        step("The AWS CLI uses pmpgate-credentials as its credential_process")
        say("~/.aws/config: credential_process = pmpgate-credentials --role "
            "procurement-manager --ticket CHG0012345")
        r = w.aws("alice", "sts", "get-caller-identity", "--output", "json",
                  ticket="CHG0012345")
        show("aws sts get-caller-identity    # as alice", r)

        step("Refused: a user outside the group")
        w.ticket("CHG0012346", requested_for="carol", approvers=["erin"])
        r = w.credentials("carol", "procurement-manager", "CHG0012346")
        show("pmpgate-credentials --role procurement-manager --ticket "
             "CHG0012346    # as carol", r)

        step("Refused: a pending ticket")
        w.ticket("CHG0012347", state="requested", approvers=["erin"])
        r = w.credentials("alice", "procurement-manager", "CHG0012347")
        show("pmpgate-credentials --role procurement-manager --ticket "
             "CHG0012347    # as alice", r)

        step("Refused: a ticket for someone else")
        w.ticket("CHG0012348", requested_for="dave", approvers=["erin"])
        r = w.credentials("alice", "procurement-manager", "CHG0012348")
        show("pmpgate-credentials --role procurement-manager --ticket "
             "CHG0012348    # as alice", r)

        step("Refused: approved only by its requester (four eyes)")
        w.ticket("CHG0012349", requester="erin", approvers=["erin"])
        r = w.credentials("alice", "procurement-manager", "CHG0012349")
        show("pmpgate-credentials --role procurement-manager --ticket "
             "CHG0012349    # as alice", r)

        # ---- PAM: a login through pam_pmpgate.so obtains credentials ----
        import subprocess
        step("Logging in through PAM: pam_pmpgate.so under pamtester")
        sec = "/usr/lib/x86_64-linux-gnu/security"
        pamd = os.path.join(tmp, "pam.d")
        creds = os.path.join(tmp, "creds")
        os.makedirs(pamd)
        os.makedirs(creds)
        os.chmod(creds, 0o755)
        opts = f"role=prompt socket={w.daemon.socket}"
        mod = daemon.binary("pam_pmpgate.so")
        with open(os.path.join(pamd, "bastion"), "w") as f:
            f.write(f"auth required {mod} {opts}\n"
                    f"auth required {sec}/pam_permit.so\n"
                    f"account required {mod} {opts}\n"
                    f"session required {mod} {opts} issue "
                    f"credentials_dir={creds}\n")
        with open(os.path.join(pamd, "other"), "w") as f:
            f.write("".join(f"{k} required {sec}/pam_deny.so\n"
                            for k in ("auth", "account", "session")))
        pam_env = {"PATH": "/usr/bin:/bin",
                   "LD_PRELOAD": "libpam_wrapper.so:" + daemon.NSS_WRAPPER,
                   "PAM_WRAPPER": "1", "PAM_WRAPPER_SERVICE_DIR": pamd,
                   "NSS_WRAPPER_PASSWD": w.daemon.passwd,
                   "NSS_WRAPPER_GROUP": w.daemon.group}
        say("service 'bastion': auth asks for role and ticket, account asks "
            "pmpgated to decide, session issues; alice answers "
            "procurement-manager and CHG0012345.")
        r = subprocess.run(["pamtester", "bastion", "alice", "authenticate",
                            "acct_mgmt", "open_session"], env=pam_env,
                           input="procurement-manager\nCHG0012345\n",
                           capture_output=True, text=True, timeout=60)
        show("pamtester bastion alice authenticate acct_mgmt open_session",
             r)
        cpath = os.path.join(creds, str(daemon.USERS["alice"]),
                             "credentials")
        if os.path.exists(cpath):
            st = os.stat(cpath)
            say(f"{cpath}: mode {oct(st.st_mode & 0o777)}, owner uid "
                f"{st.st_uid}")
            for line in open(cpath).read().splitlines():
                key, sep, val = line.partition(" = ")
                if sep and key != "aws_access_key_id":
                    line = f"{key} = {val[:8]}…({len(val)} chars)"
                say("  " + line)
            home = daemon.user_home(tmp, "alice")
            r = daemon.as_user("alice", [
                "/usr/bin/aws", "sts", "get-caller-identity", "--output",
                "json", "--endpoint-url", w.sts.url], env={
                "PATH": "/usr/bin:/bin", "HOME": home,
                "AWS_CONFIG_FILE": os.path.join(home, "none"),
                "AWS_SHARED_CREDENTIALS_FILE": cpath,
                "AWS_PROFILE": "procurement-manager",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CA_BUNDLE": w.ca.cert, "AWS_PAGER": "",
                "AWS_EC2_METADATA_DISABLED": "true"}, timeout=120)
            show("aws sts get-caller-identity    # as alice, with the "
                 "session's AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE", r)
        r = subprocess.run(["pamtester", "bastion", "alice",
                            "close_session"], env=pam_env,
                           capture_output=True, text=True, timeout=60)
        show("pamtester bastion alice close_session", r)
        say(f"credentials file still there: {os.path.exists(cpath)}")
        # ---- end of the PAM block ----

        step("The identity team: why is dave refused, and the periodic "
             "review")
        import subprocess as sp
        w.ticket("CHG0012350", requested_for="dave", approvers=["erin"])
        r = sp.run([daemon.binary("pmpgate"), "check", "--socket",
                    w.daemon.socket, "dave", "procurement-manager",
                    "CHG0012350"], capture_output=True, text=True,
                   timeout=60)
        show("pmpgate check dave procurement-manager CHG0012350    # as "
             "root", r)
        r = sp.run([daemon.binary("pmpgate"), "review", "--socket",
                    w.daemon.socket], capture_output=True, text=True,
                   timeout=60)
        show("pmpgate review    # as root", r)

        step("Refused: the directory is down (fail closed)")
        w.slapd.stop()
        r = w.credentials("alice", "procurement-manager", "CHG0012345")
        show("pmpgate-credentials --role procurement-manager --ticket "
             "CHG0012345    # as alice", r)

        step("The auditor: the signed trail of these decisions")
        r = sp.run([daemon.binary("pmpgate"), "audit", "show",
                    "--format", "table", w.daemon.audit_log],
                   capture_output=True, text=True, timeout=60)
        show(f"pmpgate audit show {w.daemon.audit_log}", r)
        r = sp.run([daemon.binary("pmpgate"), "audit", "verify",
                    "--public-key", w.daemon.audit_pub, w.daemon.audit_log],
                   capture_output=True, text=True, timeout=60)
        show(f"pmpgate audit verify --public-key {w.daemon.audit_pub} "
             f"{w.daemon.audit_log}", r)
        return 0 if r.returncode == 0 else 1
    finally:
        if w is not None:
            w.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        say()
        say(f"== Stopped everything ({time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
