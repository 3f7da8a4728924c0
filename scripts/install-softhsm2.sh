#!/bin/sh
# Install SoftHSM2 (the PKCS#11 token the pkcs11 key provider is tested against) when it is
# missing. CI runs as root on a clean Debian clone; elsewhere, say what to run instead.
set -eu
if command -v softhsm2-util >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq softhsm2 >/dev/null
    exit 0
fi
echo "softhsm2 is missing: install the Debian package 'softhsm2' (the pkcs11 tests skip without it)" >&2
