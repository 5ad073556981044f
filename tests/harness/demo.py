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

        step("Refused: the directory is down (fail closed)")
        w.slapd.stop()
        r = w.credentials("alice", "procurement-manager", "CHG0012345")
        show("pmpgate-credentials --role procurement-manager --ticket "
             "CHG0012345    # as alice", r)

        step("pmpgated's log of these decisions")
        for line in w.daemon.output().splitlines():
            if " decision=" in line or "issued " in line:
                say("  " + line)
        return 0
    finally:
        if w is not None:
            w.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        say()
        say(f"== Stopped everything ({time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
