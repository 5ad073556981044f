"""The hostile-input catalogue: one table, input -> expected exit code and
message class, run through the real binaries against world.World.

Every row is one hostile input of one class:

  pam-user     a user name as the caller of PAM gives it (sshd, sudo):
               LDAP filter and DN metacharacters, over-long, control
               characters, non-UTF-8.  Driven through pam_pmpgate.so under
               pam_wrapper (python3-pypamtest; pamtester for names Python
               cannot hand to libpamtest).  A valid, approved ticket for
               alice is offered, so a name that the directory lookup
               "widened" to alice would be allowed and caught here.
               Code: the PAM return code of pam_acct_mgmt.
  ticket-id    a ticket id given to pmpgate-credentials by alice.  No row
               may reach the ticket service.  Code: the helper's exit code.
  ticket-json  what the ticket service answers for alice's ticket.
               Code: the helper's exit code.
  sts          what STS answers to the AssumeRole of an allowed request
               (the emulator's faults, or a fake STS serving fixed bytes).
               Code: the helper's exit code; no credentials leave.
  config       a pmpgate.conf with one mistake, checked with `pmpgated -t`.
               Code: its exit status; the message names FILE:LINE.
  proto        a raw request line sent to the daemon's socket by root (or
               by a user).  Code: the answer's "exit".
  directory    a directory that answers several entries for one filter
               ([directory] user_filter = (mail=%u), the seed's
               dup@example.com is dup1 and dup2).

Message classes: "R1".."R9" (the refusal names that rule, "(Rn "),
"usage" (a usage or bad-request error), "config" (FILE:LINE: message),
"unknown-user" (the PAM module refused a name it cannot send), "ok"
(controls that must succeed, with their limits checked).

No row may allow wrongly, crash the daemon, hang, or leak a descriptor:
after every row the daemon is alive; at the end its descriptor count is
back to where it started, and its log holds no secret and no sanitizer
report.  The count by class is printed at the end.
"""
import collections
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import common  # noqa: E402
import daemon  # noqa: E402
import world as worldmod  # noqa: E402

# With PMPGATE_BUILD pointing at build-asan/ the daemon runs under ASan and
# UBSan: nss_wrapper must then not dlopen with RTLD_DEEPBIND.
SANITIZER_ENV = {"NSS_WRAPPER_DISABLE_DEEPBIND": "1"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs clients as test uids (setpriv)")

LIBDIR = "/usr/lib/x86_64-linux-gnu"
PAM_WRAPPER = os.path.join(LIBDIR, "libpam_wrapper.so")
SECURITY = os.path.join(LIBDIR, "security")

PM = "procurement-manager"
ADMIN = "pmp-administrator"

PAM_SUCCESS = 0
PAM_PERM_DENIED = 6
PAM_AUTHINFO_UNAVAIL = 9
PAM_USER_UNKNOWN = 10

# pam_strerror() texts, for pamtester's output
PAM_TEXT = {
    PAM_SUCCESS: "successfully",
    PAM_PERM_DENIED: "Permission denied",
    PAM_AUTHINFO_UNAVAIL: "Authentication service cannot retrieve",
    PAM_USER_UNKNOWN: "User not known to the underlying authentication",
}

EXPIRATION_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

_n = [7000000]


def new_id():
    _n[0] += 1
    return f"CHG{_n[0]:07d}"


def snow(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


NOW = time.time()
YEAR = 365 * 86400

# ---- the catalogue ------------------------------------------------------------
# (class, id, input, expected code, message class)

LONG = "a" * 300
DEEP = "[" * 10000 + "]" * 10000
DEEP_OBJ = '{"a":' * 10000 + "1" + "}" * 10000

CATALOGUE = [
    # -- user names through PAM: never success -------------------------------
    ("pam-user", "star", "*", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "prefix-star", "al*", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "filter-or", "*)(uid=*", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "filter-close-or", "alice)(|(uid=*", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "filter-and-true", "alice)(&", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "filter-objectclass", "x)(objectClass=*", PAM_USER_UNKNOWN,
     "R1"),
    ("pam-user", "filter-escaped-star", "al\\2a", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "filter-escaped-nul", "alice\\00", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "filter-parens", "(uid=alice)", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "backslash", "\\", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "dn-of-alice", "uid=alice,ou=people,dc=example,dc=com",
     PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "dn-of-admin", "cn=admin,dc=example,dc=com",
     PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "dn-comma", "alice,ou=people", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "dn-plus", "alice+cn=x", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "dn-quote", '"alice"', PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "dn-angle", "<alice>", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "dn-hash", "#616c696365", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "dn-semicolon", "alice;x", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "mail-of-alice", "alice@example.com", PAM_USER_UNKNOWN,
     "R1"),
    ("pam-user", "over-long-300", LONG, PAM_USER_UNKNOWN, "unknown-user"),
    # the reason quoting a 256-byte name is shortened: refused all the same
    ("pam-user", "at-limit-256", "b" * 256, PAM_PERM_DENIED, "R1"),
    ("pam-user", "newline", "alice\nroot", PAM_USER_UNKNOWN, "unknown-user"),
    ("pam-user", "tab", "alice\tx", PAM_USER_UNKNOWN, "unknown-user"),
    ("pam-user", "escape-sequence", "\x1b[31malice", PAM_USER_UNKNOWN,
     "unknown-user"),
    ("pam-user", "del", "alice\x7f", PAM_USER_UNKNOWN, "unknown-user"),
    ("pam-user", "c1-control", "alice\u0085", PAM_USER_UNKNOWN,
     "unknown-user"),
    ("pam-user", "non-utf8-ff", b"\xff\xfealice", PAM_USER_UNKNOWN,
     "unknown-user"),
    ("pam-user", "non-utf8-latin1", b"al\xe9ice", PAM_USER_UNKNOWN,
     "unknown-user"),
    ("pam-user", "non-utf8-overlong-slash", b"\xc0\xafalice",
     PAM_USER_UNKNOWN, "unknown-user"),
    ("pam-user", "non-utf8-surrogate", b"alice\xed\xa0\x80",
     PAM_USER_UNKNOWN, "unknown-user"),
    ("pam-user", "cyrillic-homoglyph", "\u0430lice", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "zero-width", "alice\u200b", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "fullwidth", "\uff41\uff4c\uff49\uff43\uff45",
     PAM_USER_UNKNOWN, "R1"),
    # names the directory's matching rules fold onto alice's entry: the
    # login name must be the entry's own value, byte for byte
    ("pam-user", "uppercase", "ALICE", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "mixed-case", "Alice", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "leading-space", " alice", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "trailing-space", "alice ", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "inner-spaces", "al  ice", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "compat-ligature", "\ufb00", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "combining-accent", "alice\u0301", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "local-only-user", "nobody-in-ldap", PAM_USER_UNKNOWN, "R1"),
    ("pam-user", "dup-mail-default-filter", "dup@example.com",
     PAM_USER_UNKNOWN, "R1"),

    # -- ticket ids: refused before any request ------------------------------
    ("ticket-id", "dot-dot-slash", "../etc/passwd", 1, "R3"),
    ("ticket-id", "id-then-traversal", "CHG0000001/../../x", 1, "R3"),
    ("ticket-id", "query", "CHG0000001?sysparm_query=number=*", 1, "R3"),
    ("ticket-id", "fragment", "CHG0000001#x", 1, "R3"),
    ("ticket-id", "encoded-slash", "CHG%2F0000001", 1, "R3"),
    ("ticket-id", "encoded-nul", "CHG0000001%00", 1, "R3"),
    ("ticket-id", "caret-injection", "CHG0000001^ORnumber=CHG9999999", 1,
     "R3"),
    ("ticket-id", "crlf", "CHG0000001\r\nX-Injected: 1", 2, "usage"),
    ("ticket-id", "tab", "CHG0000001\t", 2, "usage"),
    ("ticket-id", "space", "CHG 0000001", 1, "R3"),
    ("ticket-id", "unicode-digits", "CHG\uff10\uff10\uff10\uff10\uff10"
     "\uff10\uff11", 1, "R3"),
    ("ticket-id", "unicode-letter", "CHG000000\u00e9", 1, "R3"),
    ("ticket-id", "over-long", "CHG" + "0" * 300, 2, "usage"),
    ("ticket-id", "over-long-id-max", "CHG" + "0" * 200, 1, "R3"),
    ("ticket-id", "empty", "", 2, "usage"),
    ("ticket-id", "dot", ".", 1, "R3"),
    ("ticket-id", "dot-dot", "..", 1, "R3"),
    ("ticket-id", "lowercase", "chg0000001", 1, "R3"),
    ("ticket-id", "shell", "CHG0000001;id", 1, "R3"),

    # -- ticket JSON: never an allow ------------------------------------------
    ("ticket-json", "malformed", {"raw": "{not json"}, 3, "R9"),
    ("ticket-json", "empty-body", {"raw": ""}, 3, "R9"),
    ("ticket-json", "top-array", {"raw": "[]"}, 1, "R3"),
    ("ticket-json", "top-null", {"raw": "null"}, 3, "R9"),
    ("ticket-json", "html", {"raw": "<html>login</html>"}, 3, "R9"),
    ("ticket-json", "deep-10000-arrays", {"raw": DEEP}, 3, "R9"),
    ("ticket-json", "deep-10000-objects", {"raw": DEEP_OBJ}, 3, "R9"),
    ("ticket-json", "huge-20MB", {"huge": 20 * 1024 * 1024}, 3, "R9"),
    ("ticket-json", "duplicate-keys", {"dupkey": True}, 3, "R9"),
    ("ticket-json", "two-results", {"two": True}, 3, "R9"),
    ("ticket-json", "no-results", {"body": {"result": []}}, 1, "R3"),
    ("ticket-json", "trailing-garbage", {"trailing": True}, 3, "R9"),
    ("ticket-json", "state-number", {"approval": 1}, 3, "R9"),
    ("ticket-json", "state-object", {"approval": {"value": "approved"}}, 3,
     "R9"),
    ("ticket-json", "state-null", {"approval": None}, 1, "R3"),
    ("ticket-json", "state-missing", {"drop": "approval"}, 1, "R3"),
    ("ticket-json", "state-trailing-space", {"approval": "approved "}, 1,
     "R3"),
    ("ticket-json", "state-homoglyph", {"approval": "\u0430pproved"}, 1,
     "R3"),
    ("ticket-json", "state-nul", {"approval": "approved\u0000"}, 3, "R9"),
    ("ticket-json", "for-object", {"requested_for": {"name": "alice"}}, 3,
     "R9"),
    ("ticket-json", "for-null", {"requested_for": None}, 1, "R3"),
    ("ticket-json", "for-missing", {"drop": "requested_for"}, 1, "R3"),
    ("ticket-json", "for-star", {"requested_for": "*"}, 1, "R3"),
    ("ticket-json", "for-filter-injection",
     {"requested_for": "alice)(uid=*"}, 1, "R3"),
    ("ticket-json", "for-array", {"requested_for": ["alice"]}, 3, "R9"),
    ("ticket-json", "for-control", {"requested_for": "\u0007alice"}, 3,
     "R9"),
    ("ticket-json", "for-over-long", {"requested_for": LONG}, 3, "R9"),
    ("ticket-json", "approvers-self-string", {"u_approvers": "alice"}, 1,
     "R4"),
    ("ticket-json", "approvers-comma-string",
     {"u_approvers": "erin,frank"}, 1, "R4"),
    ("ticket-json", "approvers-numbers", {"u_approvers": [1, 2]}, 3, "R9"),
    # the ServiceNow map walks the array ("/result/*/u_approvers/*"):
    # null elements are "not set" and objects are not walked, so none
    # counts and the four-eyes rule refuses; a walked element that is an
    # array must hold strings only
    ("ticket-json", "approvers-null-element", {"u_approvers": [None]}, 1,
     "R4"),
    ("ticket-json", "approvers-object", {"u_approvers": {"a": "erin"}}, 1,
     "R4"),
    ("ticket-json", "approvers-null-in-nested", {"u_approvers": [["erin",
                                                                  None]]}, 3,
     "R9"),
    ("ticket-json", "approvers-100", {"u_approvers": ["erin"] * 100}, 3,
     "R9"),
    ("ticket-json", "approvers-empty", {"u_approvers": []}, 1, "R4"),
    ("ticket-json", "approvers-star", {"u_approvers": ["*"]}, 1, "R4"),
    ("ticket-json", "approvers-same-person-twice",
     {"u_approvers": ["erin", "ERIN"], "category": "private-offer"}, 1,
     "R4"),
    ("ticket-json", "approvers-requester",
     {"u_approvers": ["carol"], "opened_by": "carol"}, 1, "R4"),
    ("ticket-json", "role-number", {"u_aws_role": 7}, 3, "R9"),
    ("ticket-json", "role-array", {"u_aws_role": [PM]}, 3, "R9"),
    ("ticket-json", "role-other", {"u_aws_role": ADMIN}, 1, "R3"),
    ("ticket-json", "role-trailing-space", {"u_aws_role": PM + " "}, 1,
     "R3"),
    ("ticket-json", "category-bool", {"category": True}, 3, "R9"),
    ("ticket-json", "start-month-13", {"start_date": "2026-13-01 00:00:00"},
     3, "R9"),
    ("ticket-json", "start-words", {"start_date": "yesterday"}, 3, "R9"),
    ("ticket-json", "end-feb-30", {"end_date": "2026-02-30 10:00:00"}, 3,
     "R9"),
    ("ticket-json", "end-24h", {"end_date": "2030-01-01T24:00:00Z"}, 3,
     "R9"),
    ("ticket-json", "end-no-zone", {"end_date": "2030-01-01T00:00:00"}, 3,
     "R9"),
    ("ticket-json", "end-object", {"end_date": {"value": "x"}}, 3, "R9"),
    ("ticket-json", "end-1e300", {"end_date": 1e300}, 3, "R9"),
    ("ticket-json", "end-negative", {"end_date": -1}, 3, "R9"),
    ("ticket-json", "end-year-0000", {"end_date": "0000-00-00 00:00:00"}, 3,
     "R9"),
    ("ticket-json", "window-past", {"start_date": snow(NOW - 7200),
                                    "end_date": snow(NOW - 60)}, 1, "R3"),
    ("ticket-json", "window-far-future-start",
     {"start_date": snow(NOW + 10 * YEAR), "end_date": snow(NOW + 11 * YEAR)},
     1, "R3"),
    ("ticket-json", "window-reversed", {"start_date": snow(NOW + 3600),
                                        "end_date": snow(NOW - 3600)}, 1,
     "R3"),
    ("ticket-json", "end-empty", {"end_date": ""}, 1, "R3"),
    ("ticket-json", "end-null", {"end_date": None}, 1, "R3"),
    ("ticket-json", "end-missing", {"drop": "end_date"}, 1, "R3"),
    ("ticket-json", "start-empty", {"start_date": ""}, 1, "R3"),
    ("ticket-json", "window-end-9999", {"end_date": "9999-12-31 23:59:59"},
     0, "ok"),
    ("ticket-json", "status-404", {"status": 404}, 1, "R3"),
    ("ticket-json", "status-401", {"status": 401}, 3, "R9"),
    ("ticket-json", "status-500", {"status": 500}, 3, "R9"),
    ("ticket-json", "status-302", {"status": 302,
                                   "headers": {"Location": "https://"
                                               "127.0.0.1:9/x"}}, 3, "R9"),

    # -- STS answers: nothing issued ------------------------------------------
    ("sts", "emu-malformed", {"fault": "malformed"}, 3, "R9"),
    ("sts", "emu-billion-laughs", {"fault": "doctype"}, 3, "R9"),
    ("sts", "emu-no-credentials", {"fault": "no-credentials"}, 3, "R9"),
    ("sts", "emu-expired", {"fault": "expired"}, 3, "R9"),
    ("sts", "external-entity", {"body": "xxe"}, 3, "R9"),
    ("sts", "external-parameter-entity", {"body": "xxe-param"}, 3, "R9"),
    ("sts", "huge-token", {"body": "huge-token"}, 3, "R9"),
    ("sts", "huge-body", {"body": "huge-body"}, 3, "R9"),
    ("sts", "expiration-garbage", {"body": "exp-garbage"}, 3, "R9"),
    ("sts", "truncated", {"body": "truncated"}, 3, "R9"),
    ("sts", "two-credentials", {"body": "two-creds"}, 3, "R9"),
    ("sts", "empty-200", {"body": "empty"}, 3, "R9"),
    ("sts", "control-in-secret", {"body": "control-secret"}, 3, "R9"),
    ("sts", "error-response-200", {"body": "error-200"}, 3, "R9"),

    # -- configuration mistakes: pmpgated -t refuses, naming the line ---------
    ("config", "unknown-section", {"append": "[bogus]\nx = 1\n"}, 2,
     "config"),
    ("config", "unknown-key", {"set": ("daemon", "bogus", "1")}, 2, "config"),
    ("config", "duplicate-key", {"append_to": ("daemon", "workers = 2")}, 2,
     "config"),
    ("config", "duplicate-section", {"append": "[separation]\nwindow = 1h\n"},
     2, "config"),
    ("config", "missing-uri", {"set": ("directory", "uri", None)}, 2,
     "config"),
    ("config", "missing-region", {"set": ("aws", "region", None)}, 2,
     "config"),
    ("config", "workers-zero", {"set": ("daemon", "workers", "0")}, 2,
     "config"),
    ("config", "workers-huge", {"set": ("daemon", "workers", "100000")}, 2,
     "config"),
    ("config", "deadline-words", {"set": ("daemon", "deadline", "5 minutes")},
     2, "config"),
    ("config", "deadline-negative", {"set": ("daemon", "deadline", "-5s")},
     2, "config"),
    ("config", "duration-overflow",
     {"set": ("separation", "window", "99999999999999999999d")}, 2,
     "config"),
    ("config", "bool-maybe", {"set": ("directory", "starttls", "maybe")}, 2,
     "config"),
    ("config", "plain-ldap", {"set": ("directory", "uri",
                                      "ldap://127.0.0.1:389/")}, 2, "config"),
    ("config", "uri-not-ldap", {"set": ("directory", "uri",
                                        "http://127.0.0.1/")}, 2, "config"),
    ("config", "url-without-ticket",
     {"set": ("tickets", "url", "https://127.0.0.1/x")}, 2, "config"),
    ("config", "url-plain-http",
     {"set": ("tickets", "url", "http://127.0.0.1/{ticket}")}, 2, "config"),
    ("config", "bad-regex", {"set": ("tickets", "id_pattern", "CHG[0-9")}, 2,
     "config"),
    ("config", "role-name", {"append": "[role Bad_Name!]\ngroup = cn=x\n"
                             "role_arn = arn:aws:iam::123456789012:role/x\n"},
     2, "config"),
    ("config", "role-arn", {"set": ("role procurement-manager", "role_arn",
                                    "not-an-arn")}, 2, "config"),
    ("config", "conflicts-unknown", {"set": ("role procurement-manager",
                                             "conflicts", "nobody")}, 2,
     "config"),
    ("config", "max-duration-short", {"set": ("role procurement-manager",
                                              "max_duration", "100")}, 2,
     "config"),
    ("config", "max-duration-long", {"set": ("role procurement-manager",
                                             "max_duration", "13h")}, 2,
     "config"),
    ("config", "min-approvals-negative",
     {"set": ("role procurement-manager", "min_approvals", "-1")}, 2,
     "config"),
    ("config", "membership-bogus",
     {"set": ("directory", "group_membership", "owner")}, 2, "config"),
    ("config", "ledger-backend", {"set": ("ledger", "backend", "sqlite")}, 2,
     "config"),
    ("config", "line-without-equals", {"append_to": ("daemon", "workers")},
     2, "config"),
    ("config", "unterminated-section", {"append": "[audit\n"}, 2, "config"),
    ("config", "key-before-section", {"prepend": "workers = 4\n"}, 2,
     "config"),
    ("config", "nul-byte", {"append_to": ("daemon", "admin_group = a\0b")}, 2,
     "config"),
    ("config", "line-over-4096", {"append_to": ("daemon", "admin_group = " +
                                                "g" * 5000)}, 2, "config"),
    ("config", "file-over-1MiB", {"append": ("# " + "x" * 1000 + "\n")
                                  * 1100}, 2, "config"),
    ("config", "binary-garbage", {"raw": bytes(range(256)) * 4}, 2,
     "config"),
    ("config", "empty-file", {"raw": b""}, 2, "config"),
    ("config", "mode-group-writable", {"mode": 0o664}, 2, "config"),
    ("config", "owned-by-a-user", {"owner": daemon.USERS["mallory"]}, 2,
     "config"),
    ("config", "is-a-directory", {"directory": True}, 2, "config"),

    # -- raw protocol lines to the socket --------------------------------------
    ("proto", "invalid-json", {"raw": b"{\n"}, 2, "usage"),
    ("proto", "not-an-object", {"raw": b"[]\n"}, 2, "usage"),
    ("proto", "version-2", {"req": {"v": 2, "op": "status"}}, 2, "usage"),
    ("proto", "no-version", {"req": {"op": "status"}}, 2, "usage"),
    ("proto", "unknown-op", {"req": {"v": 1, "op": "shutdown"}}, 2, "usage"),
    ("proto", "unknown-member", {"req": {"v": 1, "op": "decide", "role": PM,
                                         "ticket": "CHG0000001",
                                         "admin": True}}, 2, "usage"),
    ("proto", "unknown-context-member",
     {"req": {"v": 1, "op": "decide", "role": PM, "ticket": "CHG0000001",
              "context": {"service": "sshd", "uid": 0}}}, 2, "usage"),
    ("proto", "role-wrong-type", {"req": {"v": 1, "op": "decide", "role": 1,
                                          "ticket": "CHG0000001"}}, 2,
     "usage"),
    ("proto", "role-uppercase", {"req": {"v": 1, "op": "decide",
                                         "role": "Procurement-Manager",
                                         "ticket": "CHG0000001"}}, 2,
     "usage"),
    ("proto", "duration-negative", {"req": {"v": 1, "op": "decide",
                                            "role": PM, "ticket": "CHG0000001",
                                            "duration": -1}}, 2, "usage"),
    ("proto", "duration-huge", {"req": {"v": 1, "op": "decide", "role": PM,
                                        "ticket": "CHG0000001",
                                        "duration": 10 ** 15}}, 2, "usage"),
    ("proto", "duration-string", {"req": {"v": 1, "op": "decide", "role": PM,
                                          "ticket": "CHG0000001",
                                          "duration": "900"}}, 2, "usage"),
    ("proto", "duration-float", {"req": {"v": 1, "op": "decide", "role": PM,
                                         "ticket": "CHG0000001",
                                         "duration": 900.5}}, 2, "usage"),
    ("proto", "user-nul", {"req": {"v": 1, "op": "decide", "role": PM,
                                   "ticket": "CHG0000001",
                                   "user": "alice\u0000root"}}, 2, "usage"),
    ("proto", "user-over-long", {"req": {"v": 1, "op": "decide", "role": PM,
                                         "ticket": "CHG0000001",
                                         "user": "u" * 300}}, 2, "usage"),
    ("proto", "user-empty", {"req": {"v": 1, "op": "decide", "role": PM,
                                     "ticket": "CHG0000001", "user": ""}}, 2,
     "usage"),
    ("proto", "ticket-escape", {"req": {"v": 1, "op": "decide", "role": PM,
                                        "ticket": "CHG\u001b[2J"}}, 2,
     "usage"),
    ("proto", "duplicate-keys", {"raw": b'{"v":1,"op":"status","op":'
                                 b'"issue"}\n'}, 2, "usage"),
    ("proto", "non-utf8", {"raw": b'{"v":1,"op":"\xff\xfe"}\n'}, 2, "usage"),
    ("proto", "status-with-role", {"req": {"v": 1, "op": "status",
                                           "role": PM}}, 2, "usage"),
    ("proto", "empty-line", {"raw": b"\n"}, 2, "usage"),
    ("proto", "trailing-garbage", {"raw": b'{"v":1,"op":"status"} x\n'}, 2,
     "usage"),
    ("proto", "nul-byte-in-line", {"raw": b'{"v":1,\0"op":"status"}\n'}, 2,
     "usage"),
    ("proto", "user-names-another", {"as": "mallory",
                                     "req": {"v": 1, "op": "decide",
                                             "role": PM, "user": "alice",
                                             "ticket": "ALICE_TICKET"}}, 1,
     "R1"),
    ("proto", "check-by-non-admin", {"as": "mallory",
                                     "req": {"v": 1, "op": "check",
                                             "role": PM, "user": "alice"}}, 2,
     "usage"),

    # -- a directory answering several entries for one filter -----------------
    ("directory", "dup-user-by-mail", {"pam": "dup@example.com"},
     PAM_PERM_DENIED, "R1"),
    ("directory", "dup-user-by-mail-case", {"pam": "DUP@Example.COM"},
     PAM_PERM_DENIED, "R1"),
    ("directory", "mail-login-case-folded", {"pam": "ALICE@example.com"},
     PAM_USER_UNKNOWN, "R1"),
    ("directory", "mail-login-exact", {"pam": "alice@example.com"},
     PAM_SUCCESS, "ok"),
    ("directory", "dup-approver", {"ticket": {"u_approvers":
                                              ["dup@example.com"]}}, 1, "R4"),
    ("directory", "dup-requested-for", {"ticket": {"requested_for":
                                                   "dup@example.com"}}, 1,
     "R3"),
    ("directory", "dup-requester-admin-role",
     {"ticket": {"opened_by": "dup@example.com"}}, 1, "R3"),
]

CLASSES = collections.Counter(c[0] for c in CATALOGUE)


def test_catalogue_is_large_and_unique():
    ids = [f"{c[0]}/{c[1]}" for c in CATALOGUE]
    assert len(ids) == len(set(ids))
    assert len(CATALOGUE) >= 80, len(CATALOGUE)


# ---- a fake STS that serves fixed bytes ----------------------------------------

GOOD_CREDS = ("<Credentials><AccessKeyId>ASIAFAKE0000000001</AccessKeyId>"
              "<SecretAccessKey>fakeSECRETkey0123456789/abcdefghijklmno</"
              "SecretAccessKey><SessionToken>{token}</SessionToken>"
              "<Expiration>{exp}</Expiration></Credentials>")


def sts_body(kind):
    exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 900))
    creds = GOOD_CREDS.format(token="FQoGZXIvYXdzEFAKE", exp=exp)

    def wrap(inner, pre=""):
        return (pre + '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/'
                'doc/2011-06-15/"><AssumeRoleResult>' + inner +
                "</AssumeRoleResult><ResponseMetadata><RequestId>r-1"
                "</RequestId></ResponseMetadata></AssumeRoleResponse>")
    if kind == "xxe":
        return 200, wrap(creds.replace("ASIAFAKE0000000001", "&xxe;"),
                         '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe '
                         'SYSTEM "file:///etc/passwd">]>')
    if kind == "xxe-param":
        return 200, wrap(creds, '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY '
                         '% p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>')
    if kind == "huge-token":
        return 200, wrap(GOOD_CREDS.format(token="A" * (2 * 1024 * 1024),
                                           exp=exp))
    if kind == "huge-body":
        return 200, wrap(creds + " " * (8 * 1024 * 1024))
    if kind == "exp-garbage":
        return 200, wrap(GOOD_CREDS.format(token="t", exp="soon"))
    if kind == "truncated":
        return 200, wrap(creds)[:180]
    if kind == "two-creds":
        return 200, wrap(creds + creds.replace("FAKE0000000001",
                                               "FAKE0000000002"))
    if kind == "empty":
        return 200, ""
    if kind == "control-secret":
        return 200, wrap(creds.replace("fakeSECRET", "fake&#10;SECRET"))
    if kind == "error-200":
        return 200, ('<ErrorResponse><Error><Type>Sender</Type><Code>'
                     'AccessDenied</Code><Message>no</Message></Error>'
                     '</ErrorResponse>')
    raise ValueError(kind)


class FakeSts:
    """An HTTPS server answering every POST with the current body."""

    def __init__(self, ca):
        self.answer = (200, "")
        me = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(n)
                status, body = me.answer
                data = body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up on a huge answer

        cert, key = ca.server_cert("fake-sts")
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.srv.server_address[1]}"
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


# ---- PAM ------------------------------------------------------------------------

DRIVER = r'''
import json, sys
import pypamtest as p
spec = json.loads(sys.argv[1])
cases = [p.TestCase(p.PAMTEST_ACCOUNT, spec["code"])]
out = {"ok": True, "error": "", "errors": []}
try:
    r = p.run_pamtest(spec["user"], spec["service"], cases, [],
                      [spec["ticket"]])
    out["errors"] = list(r.errors)
except p.PamTestError as e:
    out["ok"] = False
    out["error"] = str(e)
print(json.dumps(out))
'''


class Pam:
    def __init__(self, w):
        self.w = w
        self.dir = os.path.join(w.dir, "hostile-pam.d")
        os.makedirs(self.dir, exist_ok=True)
        self.driver = os.path.join(w.dir, "hostile-pamdriver.py")
        with open(self.driver, "w") as f:
            f.write(DRIVER)
        module = daemon.binary("pam_pmpgate.so")
        plain = os.path.join(os.path.dirname(os.path.dirname(module)),
                             "build", "pam_pmpgate.so")
        if os.path.basename(os.path.dirname(module)) == "build-asan" and \
                os.path.exists(plain):
            # the daemon under the sanitizers; the module (a thin client,
            # checked under ASan by test_pam.py) loaded by a plain python
            module = plain
        with open(os.path.join(self.dir, "other"), "w") as f:
            f.write(f"account required {SECURITY}/pam_deny.so\n")
        with open(os.path.join(self.dir, "hostile"), "w") as f:
            f.write(f"account required {module} role={PM} "
                    f"socket={w.daemon.socket}\n")

    def env(self):
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "LD_PRELOAD": f"{PAM_WRAPPER}:{daemon.NSS_WRAPPER}",
                "PAM_WRAPPER": "1", "PAM_WRAPPER_SERVICE_DIR": self.dir,
                "NSS_WRAPPER_PASSWD": self.w.daemon.passwd,
                "NSS_WRAPPER_GROUP": self.w.daemon.group}

    def account(self, user, ticket, code):
        """(the PAM code, the messages the module sent, its log)."""
        if isinstance(user, bytes):
            # bytes Python cannot hand to libpamtest: pamtester's argv
            name = user if isinstance(user, bytes) else user.encode()
            r = subprocess.run([b"pamtester", b"-v", b"hostile", name,
                                b"acct_mgmt"], env=self.env(),
                               input=(ticket + "\n").encode(),
                               capture_output=True, timeout=60)
            text = (r.stdout + r.stderr).decode("utf-8", "replace")
            got = None
            for c, words in PAM_TEXT.items():
                if words in text:
                    got = c
            return got, [text], text
        spec = {"service": "hostile", "user": user, "code": code,
                "ticket": ticket}
        r = subprocess.run(["/usr/bin/python3", self.driver,
                            json.dumps(spec)], env=self.env(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (r.stdout, r.stderr)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        # libpamtest raises when the code differs: say which it was
        got = code if out["ok"] else None
        if not out["ok"]:
            m = re.search(r"returned \[?(\d+)", out["error"])
            got = int(m.group(1)) if m else out["error"]
        return got, out["errors"], r.stderr


# ---- fixtures --------------------------------------------------------------------

@pytest.fixture(scope="module")
def w():
    tmp = tempfile.mkdtemp(prefix="pmpgate-hostile-")
    wd = worldmod.World(tmp)
    wd.daemon.extra_env.update(SANITIZER_ENV)
    try:
        wd.start()
        wd.fake_sts = FakeSts(wd.ca)
        wd.pam = Pam(wd)
        wd.alice_ticket = new_id()
        wd.ticket(wd.alice_ticket, requested_for="alice", approvers=["erin"])
        wd.current_conf = "default"
        wd.reloads = 0
        wd.fd_baseline = fd_kinds(wd.daemon.pid())
        wd.secrets_seen = []
        yield wd
    finally:
        try:
            wd.fake_sts.close()
        except Exception:  # noqa: BLE001
            pass
        wd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid):
    """(descriptors that are not sockets, sockets) of process PID."""
    files, socks = [], 0
    for target in common.fd_targets(pid):
        if target.startswith("socket:"):
            socks += 1
        elif os.path.basename(target) not in ("passwd", "group") and \
                not common.ledger_cache_fd(target):
            # (nss_wrapper, the test's stand-in for /etc/passwd, keeps
            # its files open as it likes)
            files.append(target)
    return sorted(files), socks


@pytest.mark.parametrize("spec", [{"end_date": ""}, {"drop": "end_date"},
                                  {"start_date": None, "end_date": None}])
def test_unmapped_window_issues_without_dates(w, spec):
    """field.window_start/end = none: a ticket without dates is issued
    (for at most the role's max_duration), where the default map refuses
    it (R3, the ticket-json rows end-empty, end-missing)."""
    try:
        assert run_ticket_json(w, spec, 0, "ok", conf="no-window") == \
            "issued"
    finally:
        use_config(w, "default")


def test_ledger_fds_bounded(w):
    pid = w.daemon.pid()
    for _ in range(5):
        assert w.daemon.request({"v": 1, "op": "decide", "role": PM,
                                 "ticket": w.alice_ticket,
                                 "user": "alice"})["status"]
    held = [t for t in common.fd_targets(pid) if common.ledger_cache_fd(t)]
    # the snapshot and the journal of the one open ledger, at most
    assert len(held) <= 2, held


def use_config(w, name):
    """Make configuration NAME current (reload only when it changes)."""
    if w.current_conf == name:
        return
    if name == "default":
        w.configure()
    elif name == "fake-sts":
        w.configure(aws={"sts_endpoint": w.fake_sts.url})
    elif name == "no-window":
        w.configure(tickets={"field.window_start": "none",
                             "field.window_end": "none"})
    elif name == "mail":
        w.configure(directory={"user_filter": "(mail=%u)",
                               "ticket_user_attr": "mail"})
    else:
        raise ValueError(name)
    before = w.daemon.output().count("configuration reloaded")
    w.daemon.reload()
    daemon_wait = time.monotonic() + 10
    while w.daemon.output().count("configuration reloaded") <= before:
        assert time.monotonic() < daemon_wait, w.daemon.output()[-2000:]
        time.sleep(0.02)
    w.current_conf = name


# ---- runners, one per class -------------------------------------------------------

def helper_line(r):
    assert r.stdout == "" or r.returncode == 0, r.stdout
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def check_class(cls, text, code):
    if cls.startswith("R"):
        assert f"({cls} " in text or f"({cls})" in text or \
            f'"{cls}"' in text, text
    elif cls == "usage":
        assert code == 2, text
    elif cls == "config":
        assert re.search(r"pmpgate\.conf(:\d+)?: ", text) or \
            "pmpgate.conf" in text, text


def run_pam_user(w, name, code, cls):
    use_config(w, "default")
    got, errors, log = w.pam.account(name, w.alice_ticket, code)
    assert got == code, (got, errors, log)
    assert got != PAM_SUCCESS
    text = " ".join(errors) + log
    if cls == "unknown-user":
        assert "no usable user name" in log or "not known" in text, text
    else:
        check_class(cls, text, code)
    return text


def run_ticket_id(w, tid, code, cls):
    use_config(w, "default")
    before = len(w.tickets.requests())
    r = w.credentials("alice", PM, tid)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    line = helper_line(r)
    assert line.startswith("pmpgate-credentials: "), r.stderr
    check_class(cls, line, r.returncode)
    # the id never reached the ticket service
    assert len(w.tickets.requests()) == before, w.tickets.requests()[before:]
    return line


def good_record(number):
    now = time.time()
    return {"number": number, "approval": "approved",
            "requested_for": "alice", "opened_by": "carol",
            "u_approvers": ["erin"], "u_aws_role": PM,
            "category": "public-offer", "start_date": snow(now - 3600),
            "end_date": snow(now + 86400)}


def put_ticket_case(w, t, spec):
    if "raw" in spec:
        w.tickets.put_ticket("servicenow", t, raw=spec["raw"])
        return
    if "huge" in spec:
        rec = good_record(t)
        rec["pad"] = "x" * spec["huge"]
        w.tickets.put_ticket("servicenow", t, {"result": [rec]})
        return
    if "dupkey" in spec:
        rec = json.dumps(good_record(t))
        raw = '{"result":[' + rec[:-1] + ',"approval":"approved"}]}'
        w.tickets.put_ticket("servicenow", t, raw=raw)
        return
    if "two" in spec:
        a, b = good_record(t), good_record(t)
        b["requested_for"] = "mallory"
        w.tickets.put_ticket("servicenow", t, {"result": [a, b]})
        return
    if "trailing" in spec:
        w.tickets.put_ticket("servicenow", t,
                             raw=json.dumps({"result": [good_record(t)]}) +
                             ' {"result":[]}')
        return
    if "body" in spec:
        w.tickets.put_ticket("servicenow", t, spec["body"])
        return
    if "status" in spec:
        w.tickets.put_ticket("servicenow", t, {"result": [good_record(t)]},
                             status=spec["status"],
                             headers=spec.get("headers"))
        return
    rec = good_record(t)
    for k, v in spec.items():
        if k == "drop":
            rec.pop(v)
        else:
            rec[k] = v
    w.tickets.put_ticket("servicenow", t, {"result": [rec]})


def check_issued(r, max_duration=3600):
    creds = json.loads(r.stdout)
    assert EXPIRATION_RE.match(creds["Expiration"]), creds
    exp = time.mktime(time.strptime(creds["Expiration"],
                                    "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    # capped by the role's max_duration, whatever the ticket says
    assert exp <= time.time() + max_duration + 60, creds
    return creds


def run_ticket_json(w, spec, code, cls, conf="default", user="alice",
                    role=PM):
    use_config(w, conf)
    t = new_id()
    put_ticket_case(w, t, spec)
    start = time.monotonic()
    r = w.credentials(user, role, t)
    elapsed = time.monotonic() - start
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    if code == 0:
        w.secrets_seen.append(check_issued(r)["SecretAccessKey"])
        return "issued"
    assert r.stdout == ""
    line = helper_line(r)
    check_class(cls, line, r.returncode)
    assert elapsed < 10, elapsed
    return line


def run_sts(w, spec, code, cls):
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    if "fault" in spec:
        use_config(w, "default")
        w.sts.clear_faults()
        w.sts.set_fault(spec["fault"], count=-1, action="AssumeRole")
    else:
        use_config(w, "fake-sts")
        w.fake_sts.answer = sts_body(spec["body"])
    try:
        start = time.monotonic()
        r = w.credentials("alice", PM, t)
        elapsed = time.monotonic() - start
    finally:
        w.sts.clear_faults()
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "fakeSECRET" not in r.stderr and "&xxe" not in r.stderr
    line = helper_line(r)
    check_class(cls, line, r.returncode)
    assert elapsed < 10, elapsed
    # nothing was recorded for the refused issue: alice's next request on
    # the same ticket is decided afresh (no R7 binding left behind)
    return line


def config_text(w, spec):
    if "raw" in spec:
        return spec["raw"]
    text = w.config_text()
    if "set" in spec:
        sec, key, val = spec["set"]
        text = w.config_text(**{sec: {key: val}})
    if "append" in spec:
        text += "\n" + spec["append"]
    if "prepend" in spec:
        text = spec["prepend"] + text
    if "append_to" in spec:
        sec, line = spec["append_to"]
        text = text.replace(f"[{sec}]\n", f"[{sec}]\n{line}\n", 1)
    return text


def run_config(w, spec, code, cls):
    base = os.path.join(w.dir, "config-cases")
    os.makedirs(base, exist_ok=True)
    os.chmod(base, 0o755)
    d = daemon.Pmpgated(base)
    text = config_text(w, spec)
    data = text if isinstance(text, bytes) else text.encode()
    if os.path.isdir(d.config):
        os.rmdir(d.config)
    if os.path.lexists(d.config):
        os.unlink(d.config)
    if spec.get("directory"):
        os.mkdir(d.config)
    else:
        with open(d.config, "wb") as f:
            f.write(data)
        os.chmod(d.config, spec.get("mode", 0o644))
        if "owner" in spec:
            os.chown(d.config, spec["owner"], spec["owner"])
    r = d.check_config()
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    if code != 0:
        lines = r.stderr.strip().splitlines()
        assert len(lines) >= 1 and lines[0].startswith("pmpgated: "), \
            r.stderr
        check_class(cls, lines[0], code)
        # the refusal quotes neither a secret nor raw control bytes
        assert "\x00" not in r.stderr and "\x1b" not in r.stderr
        return lines[0]
    return r.stdout.strip()


def raw_call(path, data, as_user=None, timeout=15):
    if as_user is None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(data)
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return buf
    script = ("import socket,sys\n"
              "s=socket.socket(socket.AF_UNIX);s.settimeout(15)\n"
              "s.connect(sys.argv[1]);s.sendall(sys.stdin.buffer.read())\n"
              "b=b''\n"
              "while not b.endswith(b'\\n'):\n"
              "  c=s.recv(65536)\n"
              "  if not c: break\n"
              "  b+=c\n"
              "sys.stdout.buffer.write(b)\n")
    uid = daemon.USERS[as_user]
    r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                        "--clear-groups", "--", "/usr/bin/python3", "-c",
                        script, path], input=data, capture_output=True,
                       timeout=timeout + 5)
    return r.stdout


def run_proto(w, spec, code, cls):
    use_config(w, "default")
    if "raw" in spec:
        data = spec["raw"]
    else:
        req = json.loads(json.dumps(spec["req"]).replace(
            "ALICE_TICKET", w.alice_ticket))
        data = (json.dumps(req) + "\n").encode()
    out = raw_call(w.daemon.socket, data, spec.get("as"))
    ans = json.loads(out)
    assert ans["v"] == 1
    assert ans["exit"] == code, ans
    assert ans["status"] == ("deny" if code == 1 else "error"), ans
    assert "credentials" not in ans
    text = ans["reason"] + " " + json.dumps(ans.get("rules", []))
    check_class(cls, text, ans["exit"])
    if spec.get("as") == "mallory":
        # the daemon acted for the caller, never for the user it named
        assert "alice" not in ans["reason"] or "mallory" in ans["reason"], ans
    return ans["reason"]


def run_directory(w, spec, code, cls):
    use_config(w, "mail")
    if "pam" in spec:
        t = new_id()
        rec = good_record(t)
        rec.update({"requested_for": "alice@example.com",
                    "u_approvers": ["erin@example.com"],
                    "opened_by": "carol@example.com"})
        w.tickets.put_ticket("servicenow", t, {"result": [rec]})
        got, errors, log = w.pam.account(spec["pam"], t, code)
        assert got == code, (got, errors, log)
        text = " ".join(errors)
        check_class(cls, text, code)
        return text
    t = new_id()
    rec = good_record(t)
    rec["requested_for"] = "alice@example.com"
    rec["u_approvers"] = ["erin@example.com"]
    rec["opened_by"] = "carol@example.com"
    rec.update(spec["ticket"])
    role = PM
    user = "alice"
    if "opened_by" in spec["ticket"]:
        # the administrator role: whoever asked may not hold it (R5), so
        # an ambiguous requester must never count as "someone else"
        role, user = ADMIN, "bob"
        rec.update({"u_aws_role": ADMIN, "requested_for": "bob@example.com",
                    "u_approvers": ["grace@example.com"]})
    w.tickets.put_ticket("servicenow", t, {"result": [rec]})
    r = w.credentials(user, role, t)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    line = helper_line(r)
    assert "(R" in line, line
    return line


RUNNERS = {"pam-user": run_pam_user, "ticket-id": run_ticket_id,
           "ticket-json": run_ticket_json, "sts": run_sts,
           "config": run_config, "proto": run_proto,
           "directory": run_directory}

OBSERVED = []


@pytest.mark.parametrize("case", CATALOGUE,
                         ids=[f"{c[0]}/{c[1]}" for c in CATALOGUE])
def test_hostile_input(w, case):
    cls, _, inp, code, msg = case
    start = time.monotonic()
    text = RUNNERS[cls](w, inp, code, msg)
    OBSERVED.append((cls, case[1], code, time.monotonic() - start))
    assert w.daemon.running(), w.daemon.output()[-3000:]
    assert isinstance(text, str)


def test_controls_still_allowed(w):
    """After the whole catalogue: the valid request is allowed (nothing
    above left the daemon wedged or the ledger bound wrongly)."""
    use_config(w, "default")
    t = new_id()
    w.ticket(t, requested_for="alice", approvers=["erin"])
    r = w.credentials("alice", PM, t)
    assert r.returncode == 0, r.stderr
    w.secrets_seen.append(check_issued(r)["SecretAccessKey"])


def test_no_leak_no_crash_no_secret_in_log(w):
    pid = w.daemon.pid()
    files0, socks0 = w.fd_baseline
    # No file or pipe left open by any row.  Sockets: at most what each
    # worker keeps warm - its connections to the directory, the ticket
    # service, STS and the fake STS, and libcurl's two internal socket
    # pairs (created with the worker's HTTP handle) - 8 per worker.
    workers = 4
    per_worker = 8
    deadline = time.monotonic() + 10
    while True:
        files, socks = fd_kinds(pid)
        ok = files == files0 and socks <= socks0 + workers * per_worker
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert files == files0, (sorted(set(files) ^ set(files0)), files,
                             files0)
    assert socks <= socks0 + workers * per_worker, (socks, socks0)
    # and, once every worker is warm, bursts of refusals of every kind
    # add none
    bad = new_id()
    w.tickets.put_ticket("servicenow", bad, raw="{not json")

    def burst():
        for _ in range(25):
            raw_call(w.daemon.socket, b"{not json\n")
            w.daemon.request({"v": 1, "op": "decide", "role": PM,
                              "ticket": "../x", "user": "alice"})
            w.daemon.request({"v": 1, "op": "decide", "role": PM,
                              "ticket": bad, "user": "alice"})
            w.daemon.request({"v": 1, "op": "decide", "role": PM,
                              "ticket": w.alice_ticket, "user": "*"})
    def settled():
        # a worker finishes (closes its files) just after it answered
        last, end = None, time.monotonic() + 5
        while time.monotonic() < end:
            now = fd_kinds(pid)
            if now == last:
                return now
            last = now
            time.sleep(0.3)
        return last

    burst()
    before = settled()
    burst()
    burst()
    after = settled()
    assert after[0] == before[0], (sorted(set(after[0]) ^ set(before[0])),
                                   after, before)
    assert after[1] <= socks0 + workers * per_worker, (after, before)
    log = w.daemon.output()
    for secret in w.secrets_seen:
        assert secret not in log
    assert "fakeSECRET" not in log
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert bad not in log, log[-3000:]


def test_zz_daemon_stops_cleanly(w):
    """SIGTERM after the whole catalogue: a clean exit, and (when the
    daemon is built with the sanitizers) no leak report at exit."""
    assert w.daemon.stop() == 0
    log = w.daemon.output()
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert bad not in log, log[-3000:]


def test_zz_report(capsys):
    """The catalogue count by class (printed with the test output)."""
    with capsys.disabled():
        print("\nhostile-input catalogue: %d cases" % len(CATALOGUE))
        for cls, n in sorted(CLASSES.items()):
            done = [o for o in OBSERVED if o[0] == cls]
            slow = max((o[3] for o in done), default=0.0)
            print(f"  {cls:12s} {n:4d} cases, {len(done):4d} run, "
                  f"slowest {slow:.2f} s")
