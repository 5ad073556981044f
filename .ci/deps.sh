#!/bin/sh
# deps.sh install|check - the Debian packages pmpgate builds and tests with.
# One list, used by "make deps", "make check", "make demo" and .ci/run.
set -eu
PKGS="build-essential pkg-config clang llvm ca-certificates openssl procps
util-linux iproute2 groff-base binutils systemd
libldap-dev libpam0g-dev libcurl4-openssl-dev libssl-dev libjansson-dev
libexpat1-dev libcmocka-dev
slapd ldap-utils libpam-wrapper libnss-wrapper python3-pypamtest libpamtest0
libpamtest0-dev pamtester awscli python3-botocore python3-pytest
etcd-server etcd-client valgrind"

missing() {
	for p in $PKGS; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || echo "$p"
	done
}

case "${1:-check}" in
install)
	m=$(missing)
	[ -z "$m" ] && exit 0
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing Debian packages; as root run:" >&2
		echo "  apt-get install -y --no-install-recommends" $m >&2
		exit 2
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $m
	;;
check)
	m=$(missing)
	[ -z "$m" ] && exit 0
	if [ "$(id -u)" = 0 ]; then
		exec "$0" install
	fi
	echo "deps: missing Debian packages:" $m >&2
	echo "deps: run 'make deps' as root, or: apt-get install -y --no-install-recommends" $m >&2
	exit 2
	;;
*)
	echo "usage: deps.sh install|check" >&2
	exit 2
	;;
esac
