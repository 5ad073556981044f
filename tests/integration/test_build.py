"""The build: hardening flags, thin clients, compiled-in paths, install."""
import os
import re
import shutil
import stat
import subprocess
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("PMPGATE_BUILD", os.path.join(SRC, "build"))
BINARIES = ["pmpgated", "pmpgate-credentials", "pmpgate"]


def readelf(*args):
    return subprocess.run(["readelf", *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("name", BINARIES)
def test_hardening(name):
    path = os.path.join(BUILD, name)
    dyn = readelf("-d", "-W", path)
    assert re.search(r"\(FLAGS\)\s+.*BIND_NOW", dyn), "no full RELRO (BIND_NOW)"
    assert re.search(r"\(FLAGS_1\)\s+.*PIE", dyn), "not PIE"
    hdr = readelf("-h", path)
    assert "DYN (Position-Independent Executable" in hdr
    seg = readelf("-l", "-W", path)
    assert "GNU_RELRO" in seg
    assert not re.search(r"GNU_STACK.*RWE", seg), "executable stack"
    syms = readelf("--dyn-syms", "-W", path)
    assert "__stack_chk_fail" in syms, "no stack protector"
    assert re.search(r"__\w+_chk@", syms), "no _FORTIFY_SOURCE checks"


def test_no_setuid_or_setgid_binary():
    for name in BINARIES:
        mode = os.stat(os.path.join(BUILD, name)).st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID)


def needed(path):
    return sorted(re.findall(r"\(NEEDED\).*\[(.+)\]", readelf("-d", path)))


def test_helper_links_only_libc_and_jansson():
    assert needed(os.path.join(BUILD, "pmpgate-credentials")) == \
        ["libc.so.6", "libjansson.so.4"]


def test_daemon_links_the_libraries_the_design_names():
    libs = needed(os.path.join(BUILD, "pmpgated"))
    for lib in ("libldap", "libcurl", "libjansson", "libexpat", "libcrypto"):
        assert any(x.startswith(lib) for x in libs), (lib, libs)


@pytest.fixture(scope="module")
def alt_build():
    """A second build with other GNU path variables, staged with
    make install DESTDIR=..."""
    tmp = tempfile.mkdtemp(prefix="pmpgate-build-")
    b = os.path.join(tmp, "build")
    dest = os.path.join(tmp, "dest")
    vars_ = [f"BUILD={b}", "PREFIX=/usr", "SYSCONFDIR=/opt/pg/etc",
             "LOCALSTATEDIR=/opt/pg/var", "RUNSTATEDIR=/opt/pg/run"]
    subprocess.run(["make", "-s", "-C", SRC, "-j2", *vars_, "all"],
                   check=True, capture_output=True)
    subprocess.run(["make", "-s", "-C", SRC, *vars_, f"DESTDIR={dest}",
                    "install"], check=True, capture_output=True)
    yield b, dest
    shutil.rmtree(tmp, ignore_errors=True)


def test_path_variables_set_compiled_in_defaults(alt_build):
    b, _ = alt_build
    r = subprocess.run([os.path.join(b, "pmpgated"), "-h"],
                       capture_output=True, text=True)
    assert "/opt/pg/etc/pmpgate/pmpgate.conf" in r.stdout
    r = subprocess.run([os.path.join(b, "pmpgate-credentials"), "--help"],
                       capture_output=True, text=True)
    assert "/opt/pg/run/pmpgate/socket" in r.stdout + r.stderr


def test_install_layout_and_modes(alt_build):
    _, dest = alt_build
    expect = {
        "usr/sbin/pmpgated": 0o755,
        "usr/bin/pmpgate-credentials": 0o755,
        "usr/bin/pmpgate": 0o755,
        "opt/pg/etc/pmpgate/pmpgate.conf.example": 0o640,
        "usr/lib/systemd/system/pmpgated.service": 0o644,
        "usr/share/man/man8/pmpgated.8": 0o644,
        "usr/share/man/man1/pmpgate-credentials.1": 0o644,
        "usr/share/man/man5/pmpgate.conf.5": 0o644,
        "usr/share/man/man8/pmpgate.8": 0o644,
    }
    for rel, mode in expect.items():
        st = os.stat(os.path.join(dest, rel))
        assert stat.S_IMODE(st.st_mode) == mode, (rel, oct(st.st_mode))
    unit = open(os.path.join(dest, "usr/lib/systemd/system/pmpgated.service")).read()
    assert "ExecStart=/usr/sbin/pmpgated -f -c /opt/pg/etc/pmpgate/pmpgate.conf" in unit
    assert "@" not in re.sub(r"SystemCallFilter=@\S+", "", unit)
    for key in ("NoNewPrivileges=yes", "ProtectSystem=strict",
                "ProtectHome=yes", "PrivateTmp=yes",
                "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                "CapabilityBoundingSet=\n",
                "SystemCallFilter=@system-service"):
        assert key in unit, key


def test_man_pages_render():
    pages = sorted(os.listdir(os.path.join(SRC, "docs", "man")))
    assert len(pages) >= 4
    for page in pages:
        r = subprocess.run(["groff", "-man", "-ww", "-z",
                            os.path.join(SRC, "docs", "man", page)],
                           capture_output=True, text=True)
        assert r.returncode == 0, (page, r.stderr)
        assert r.stderr == "", (page, r.stderr)
