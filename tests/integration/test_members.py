"""pg_dir_group_members (the review's member lists) against a real slapd,
through build/probe/membersprobe: nesting, depth bound, cycles, the other
membership kinds, the member cap, and a group that does not exist.
"""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import common  # noqa: E402
import slapd  # noqa: E402
from test_directory import (ADMIN, PM, TEAM, Env, grp,  # noqa: E402
                            person)

BUILD = os.environ.get("PMPGATE_BUILD", "/work/main/build")
PROBE = os.path.join(BUILD, "probe", "membersprobe")
WRAPPER = os.environ.get("PMPGATE_PROBE_WRAPPER", "").split()


def members(conf, group, max_members=None):
    argv = WRAPPER + [PROBE]
    if max_members is not None:
        argv += ["-m", str(max_members)]
    env = dict(os.environ)
    env["LDAPNOINIT"] = "1"
    r = subprocess.run(argv + [conf, group], capture_output=True, text=True,
                       timeout=60, env=env)
    lines = r.stdout.splitlines()
    if r.returncode != 0:
        return r.returncode, lines, None
    assert lines[-1].startswith("skipped "), r.stdout
    rows = {}
    for line in lines[:-1]:
        name, dn, via = line.split("\t")
        rows[name] = (dn, via)
    return 0, rows, int(lines[-1].split()[1])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not os.access(PROBE, os.X_OK):
        pytest.fail(f"{PROBE} missing: run make build/probe/membersprobe")
    tmp = str(tmp_path_factory.mktemp("members"))
    ca = common.TestCA(tmp)
    s = slapd.Slapd(tmp, ca)
    yield Env(tmp, ca, s)
    s.stop()


def test_direct_members(env):
    rc, rows, skipped = members(env.conf(), PM)
    assert rc == 0, rows
    assert rows == {"alice": (person("alice"), PM),
                    "dave": (person("dave"), PM)}
    assert skipped == 0


def test_nested_members_name_the_group_that_holds_them(env):
    rc, rows, _ = members(env.conf(), ADMIN)
    assert rc == 0, rows
    assert rows == {"bob": (person("bob"), TEAM),
                    "dave": (person("dave"), ADMIN)}
    rc, rows, _ = members(env.conf(nested_groups="no"), ADMIN)
    assert rc == 0 and set(rows) == {"dave"}, rows


def test_depth_bound_matches_the_decision(env):
    # carol is in deep-12: the decision counts her in deep-4 (8 nesting
    # steps, the default max_depth) but not in deep-3.
    rc, rows, _ = members(env.conf(), grp("deep-4"))
    assert rc == 0 and set(rows) == {"carol"}, rows
    assert rows["carol"][1] == grp("deep-12")
    rc, rows, _ = members(env.conf(), grp("deep-3"))
    assert rc == 0 and rows == {}, rows
    rc, rows, _ = members(env.conf(max_depth=11), grp("deep-1"))
    assert rc == 0 and set(rows) == {"carol"}, rows
    rc, rows, _ = members(env.conf(max_depth=10), grp("deep-1"))
    assert rc == 0 and rows == {}, rows


def test_cycle_terminates(env):
    rc, rows, _ = members(env.conf(max_depth=64), grp("cycle-a"))
    assert rc == 0 and set(rows) == {"mallory"}, rows


def test_group_that_does_not_exist(env):
    rc, lines, _ = members(env.conf(), grp("no-such-group"))
    assert rc == 1, lines
    assert lines[0].startswith("error not-found:") and \
        "does not exist" in lines[0], lines


def test_member_cap_fails_closed(env):
    rc, rows, _ = members(env.conf(), PM, max_members=2)
    assert rc == 0 and len(rows) == 2
    rc, lines, _ = members(env.conf(), PM, max_members=1)
    assert rc == 3, lines
    assert "partial list" in lines[0], lines


def test_other_membership_kinds(env):
    rc, rows, _ = members(env.conf(group_membership="memberUid"),
                          grp("pm-posix"))
    assert rc == 0 and rows == {"alice": ("-", grp("pm-posix"))}, rows
    rc, rows, _ = members(env.conf(group_membership="uniqueMember"),
                          grp("pm-unique"))
    assert rc == 0 and rows == {"alice": (person("alice"),
                                          grp("pm-unique"))}, rows
    conf = env.conf(group_membership="memberOf")
    rc, rows, _ = members(conf, ADMIN)
    assert rc == 0, rows
    assert rows == {"bob": (person("bob"), TEAM),
                    "dave": (person("dave"), ADMIN)}
    rc, rows, _ = members(env.conf(group_membership="memberOf",
                                   max_depth=64), grp("cycle-a"))
    assert rc == 0 and set(rows) == {"mallory"}, rows


def test_login_name_follows_user_filter(env):
    conf = env.conf(user_filter="(&(objectClass=inetOrgPerson)(mail=%u))")
    rc, rows, _ = members(conf, PM)
    assert rc == 0, rows
    assert set(rows) == {"alice@example.com", "dave@example.com"}, rows
