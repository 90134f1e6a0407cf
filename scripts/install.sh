#!/usr/bin/env bash
# Install everything electrum-joinmarket needs to build, run and test, idempotently.
#
#   host packages        from the system's own apt sources (never changed); incl. ngircd and tor
#                        (their Debian services are disabled: tests start their own)
#   Electrum 4.8+        Debian sid .debs, fetched with a PRIVATE apt configuration in the cache dir
#   bitcoind (Knots 29+) idem, with sid's libc6/libstdc++6/libgcc-s1, run through sid's own loader
#   .venv                Electrum's Python deps (read from its METADATA), PyQt6, test tools, this project
#   ElectrumX            e-x==1.20.0 in its own venv
#
# Cache: $EJM_CACHE (default ~/.cache/electrum-joinmarket). A second run only checks stamps.
# Any missing piece stops the script with a message naming it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EJM_CACHE:-$HOME/.cache/electrum-joinmarket}
VENV=${EJM_VENV:-$ROOT/.venv}
export PIP_CACHE_DIR=$CACHE/pip PIP_DISABLE_PIP_VERSION_CHECK=1

say()  { printf '[install] %s\n' "$*"; }
die()  { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }
# pip prints a warning for every package about the machine's optional local indexes; keep real errors.
quiet_pip() {
  local log rc=0; log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  grep -v 'is ignored: it is neither a file nor a directory' "$log" >&2 || true
  rm -f "$log"; return "$rc"
}
sidhint="Debian sid may have changed (package renamed, removed, or a new soname); see docs/devstack.md 'What runs'."

# The interpreter of both venvs: the distribution's own Python (Debian builds it with PGO and LTO;
# the sid Electrum .deb is made for it). Measured here: pure-Python work in 0.67x the CPU time of
# a default source build (pyenv's) found first on PATH, and the suite is mostly Python. EJM_PYTHON
# overrides it.
if [ -n "${EJM_PYTHON:-}" ]; then PY=$EJM_PYTHON
elif [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3
else PY=python3; fi
PY_EXE=$("$PY" -c 'import os, sys; print(os.path.realpath(sys.executable))') \
  || die "no usable Python at '$PY' (set EJM_PYTHON)"
EX_VERSION=1.20.0

mkdir -p "$CACHE"
t0=$(date +%s)

# ---------------------------------------------------------------- host packages
HOST_PKGS=(python3-venv python3-dev gcc make autoconf automake libtool pkg-config ca-certificates
           ngircd tor libevent-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libzmq5 libsqlite3-0
           libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 binutils dpkg)
# libevent/zmq names differ on Debian 13 (t64 transition): accept either spelling.
host_missing=()
for p in "${HOST_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    alt="${p/-2.1-7/-2.1-7t64}"
    if [ "$alt" != "$p" ] && dpkg-query -W -f='${Status}' "$alt" 2>/dev/null | grep -q 'install ok installed'; then
      continue
    fi
    host_missing+=("$p")
  fi
done
if [ ${#host_missing[@]} -gt 0 ]; then
  say "host packages missing: ${host_missing[*]}"
  [ "$(id -u)" = 0 ] || die "run as root (or install these with apt-get): ${host_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed on the system's own sources"
  resolved=()
  for p in "${host_missing[@]}"; do
    if apt-cache show "$p" >/dev/null 2>&1; then resolved+=("$p");
    elif apt-cache show "${p/-2.1-7/-2.1-7t64}" >/dev/null 2>&1; then resolved+=("${p/-2.1-7/-2.1-7t64}");
    else die "host package $p not found in the system's apt sources"; fi
  done
  apt-get install -y -qq --no-install-recommends "${resolved[@]}" >/dev/null \
    || die "apt-get install failed for: ${resolved[*]}"
  # Debian starts ngircd and tor as services on install; tests run their own on free ports (tor:
  # a private network on 127.0.0.1 that never contacts the real Tor network, devstack/tor.py).
  for svc in ngircd tor; do
    (command -v systemctl >/dev/null && systemctl disable --now "$svc" >/dev/null 2>&1) || true
    (command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1) || true
  done
fi
command -v tor-gencert >/dev/null || [ -x /usr/bin/tor-gencert ] \
  || die "tor-gencert missing (Debian's tor package ships it): apt-get install tor"

# ---------------------------------------------------------------- Debian sid, privately
SID=$CACHE/sid
SID_ROOT=$SID/root
SID_PKGS=(python3-electrum electrum bitcoin-knots libc6 libgcc-s1 libstdc++6)
sid_stamp=$SID/unpacked.stamp
if [ ! -f "$sid_stamp" ] || [ ! -x "$SID_ROOT/usr/bin/bitcoind" ]; then
  say "fetching ${SID_PKGS[*]} from Debian sid (private apt configuration in $SID)"
  mkdir -p "$SID/etc/apt/sources.list.d" "$SID/etc/apt/preferences.d" "$SID/lists/partial" \
           "$SID/cache/archives/partial" "$SID/debs"
  # Use the same Debian mirror the host uses, with suite sid.
  mirror=$(grep -rhoE '(https?://[^ ]+/debian)/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
             /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v security | head -n1 | tr -d ' ' || true)
  mirror=${mirror%/}
  [ -n "$mirror" ] || die "could not find a Debian mirror in the system's apt sources"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || die "missing $keyring (package debian-archive-keyring)"
  echo "deb [signed-by=$keyring] $mirror sid main" > "$SID/etc/apt/sources.list"
  : > "$SID/status"
  cat > "$SID/apt.conf" <<EOF
Dir::Etc "$SID/etc/apt";
Dir::Etc::SourceList "$SID/etc/apt/sources.list";
Dir::Etc::SourceParts "$SID/etc/apt/sources.list.d";
Dir::Etc::Preferences "$SID/etc/apt/preferences";
Dir::Etc::PreferencesParts "$SID/etc/apt/preferences.d";
Dir::State "$SID";
Dir::State::Lists "$SID/lists";
Dir::State::status "$SID/status";
Dir::Cache "$SID/cache";
APT::Architecture "$(dpkg --print-architecture)";
Acquire::Languages "none";
Acquire::Check-Valid-Until "false";
APT::Sandbox::User "root";
EOF
  export APT_CONFIG=$SID/apt.conf
  apt-get update -qq -o Debug::NoLocking=1 || die "apt-get update (private, sid) failed. $sidhint"
  (cd "$SID/debs" && rm -f ./*.deb && apt-get download -qq -o Debug::NoLocking=1 "${SID_PKGS[@]}") \
    || die "could not download one of ${SID_PKGS[*]} from sid. $sidhint"
  unset APT_CONFIG
  rm -rf "$SID_ROOT.new" && mkdir -p "$SID_ROOT.new"
  for deb in "$SID"/debs/*.deb; do dpkg-deb -x "$deb" "$SID_ROOT.new"; done
  rm -rf "$SID_ROOT" && mv "$SID_ROOT.new" "$SID_ROOT"
  [ -x "$SID_ROOT/usr/bin/bitcoind" ] || die "bitcoin-knots .deb has no usr/bin/bitcoind. $sidhint"
  [ -d "$SID_ROOT/usr/lib/python3/dist-packages/electrum" ] || die "python3-electrum .deb has no electrum package. $sidhint"
  ls "$SID"/debs > "$sid_stamp"
fi

# bitcoind/bitcoin-cli wrappers: sid's loader and libraries first, the host's libevent/zmq after.
BIN=$CACHE/bin
mkdir -p "$BIN"
arch_triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
loader=$(ls "$SID_ROOT"/usr/lib/"$arch_triplet"/ld-linux*.so.* 2>/dev/null | head -n1 || true)
[ -n "$loader" ] || die "no dynamic loader in sid's libc6 under $SID_ROOT/usr/lib/$arch_triplet. $sidhint"
for tool in bitcoind bitcoin-cli; do
  cat > "$BIN/$tool.new" <<EOF
#!/bin/sh
# generated by scripts/install.sh: run sid's $tool with sid's loader and C/C++ runtime
L=$SID_ROOT/usr/lib/$arch_triplet
exec "$loader" --library-path "\$L:/usr/lib/$arch_triplet:/lib/$arch_triplet" "$SID_ROOT/usr/bin/$tool" "\$@"
EOF
  chmod +x "$BIN/$tool.new" && mv "$BIN/$tool.new" "$BIN/$tool"
done
"$BIN/bitcoind" -version >/dev/null 2>&1 || die "bitcoind from sid does not start: $("$BIN/bitcoind" -version 2>&1 | head -n3). $sidhint"

# ---------------------------------------------------------------- .venv
ELECTRUM_SITE=$SID_ROOT/usr/lib/python3/dist-packages
meta=$(ls -d "$ELECTRUM_SITE"/electrum-*.dist-info 2>/dev/null | head -n1)
[ -n "$meta" ] || die "no electrum dist-info in $ELECTRUM_SITE. $sidhint"
# Electrum's own runtime requirements (no extras), plus the GUI and crypto extras we use.
electrum_reqs=$(sed -n 's/^Requires-Dist: //p' "$meta/METADATA" | grep -v 'extra ==' ; echo "pyqt6"; echo "cryptography>=2.6")
req_hash=$( { echo "$electrum_reqs"; cat "$ROOT/setup.py"; echo "$PY_EXE"; } | sha256sum | cut -c1-16)
venv_stamp=$VENV/.ejm-$req_hash
# The requirements are installed once per (requirements, setup.py, interpreter) into a template
# venv in the cache; a checkout's venv is a copy of it (a few seconds instead of ~45: pip, PyQt6)
# with this checkout installed editable. Venvs are not relocatable: the copy's scripts are
# rewritten to its own path. A checkout's venv is derived state: it is replaced, not patched.
TEMPLATES=$CACHE/venvs
TEMPLATE=$TEMPLATES/$req_hash
build_template() {
  say "building the venv template $TEMPLATE (Electrum's requirements from its METADATA, PyQt6, test tools)"
  rm -rf "$TEMPLATE"
  "$PY" -m venv "$TEMPLATE" || die "$PY -m venv failed (package python3-venv)"
  quiet_pip "$TEMPLATE/bin/pip" install -q --upgrade pip wheel setuptools || die "pip upgrade failed in $TEMPLATE"
  printf '%s\n' "$electrum_reqs" > "$TEMPLATE/electrum-requirements.txt"
  quiet_pip "$TEMPLATE/bin/pip" install -q -r "$TEMPLATE/electrum-requirements.txt" \
    || die "could not install Electrum's Python requirements (see $TEMPLATE/electrum-requirements.txt)"
  # this project's dependencies (its extras included), then the project itself out again
  quiet_pip "$TEMPLATE/bin/pip" install -q -e "$ROOT[daemon,test]" || die "could not install this project's dependencies"
  quiet_pip "$TEMPLATE/bin/pip" uninstall -q -y electrum-joinmarket || die "pip uninstall failed in $TEMPLATE"
  touch "$TEMPLATE/.complete"
}
if [ ! -f "$venv_stamp" ]; then
  mkdir -p "$TEMPLATES"
  (
    flock 9                                      # one build per template, whoever asks first
    [ -f "$TEMPLATE/.complete" ] || build_template   # its name holds the interpreter
  ) 9>"$TEMPLATES/.lock"
  [ -f "$TEMPLATE/.complete" ] || die "the venv template $TEMPLATE was not built"
  say "making $VENV from the template"
  rm -rf "$VENV"
  cp -a "$TEMPLATE" "$VENV" || die "could not copy $TEMPLATE to $VENV"
  rm -f "$VENV/.complete"
  grep -rlI --null -F "$TEMPLATE" "$VENV/bin" "$VENV/pyvenv.cfg" | xargs -0 -r sed -i "s|$TEMPLATE|$VENV|g" \
    || die "could not point the scripts in $VENV/bin at $VENV"
  quiet_pip "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT" \
    || die "could not install this project into $VENV"
  touch "$venv_stamp"
  # keep the three newest templates
  ls -1dt "$TEMPLATES"/*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$ELECTRUM_SITE" > "$site/electrum-sid.pth"
# A .deb ships no bytecode (its postinst compiles it), and with PYTHONDONTWRITEBYTECODE set every
# Electrum process would compile Electrum from source again: ~0.7 s of CPU per start, and the tests
# start hundreds. Compile it once into the cache.
pyc_stamp=$SID/pyc-$("$VENV/bin/python" -c 'import sys; print(sys.implementation.cache_tag)').stamp
if [ ! -f "$pyc_stamp" ] || [ "$sid_stamp" -nt "$pyc_stamp" ]; then
  "$VENV/bin/python" -m compileall -q -j 0 "$ELECTRUM_SITE" >/dev/null \
    || die "could not compile Electrum's modules in $ELECTRUM_SITE"
  touch "$pyc_stamp"
fi
# the `electrum` command from the sid package, run by this checkout's venv Python. It lives in the
# venv (per checkout): a launcher in the shared cache would make every other checkout run this
# checkout's code.
if [ -f "$SID_ROOT/usr/bin/electrum" ]; then
  { echo "#!$VENV/bin/python"; tail -n +2 "$SID_ROOT/usr/bin/electrum"; } > "$VENV/bin/electrum.new"
  chmod +x "$VENV/bin/electrum.new" && mv "$VENV/bin/electrum.new" "$VENV/bin/electrum"
fi
rm -f "$BIN/electrum"   # left by older versions of this script
"$VENV/bin/python" - <<'EOF' || die "Electrum does not import in the venv. $sidhint"
import electrum, electrum_ecc
from electrum.version import ELECTRUM_VERSION
major, minor = (int(x) for x in ELECTRUM_VERSION.split(".")[:2])
assert (major, minor) >= (4, 8), f"Electrum {ELECTRUM_VERSION} is older than 4.8"
EOF

# ---------------------------------------------------------------- ElectrumX venv
# one ElectrumX venv per interpreter (in its name): checkouts on different Pythons share the cache
EXV=$CACHE/electrumx-venv-$(printf '%s' "$PY_EXE" | sha256sum | cut -c1-8)
if [ ! -x "$EXV/bin/electrumx_server" ] || ! "$EXV/bin/python" -c "import importlib.metadata as m; assert m.version('e-x') == '$EX_VERSION'" 2>/dev/null; then
  say "building ElectrumX (e-x==$EX_VERSION) venv in $EXV"
  rm -rf "$EXV"
  "$PY" -m venv "$EXV" || die "python3 -m venv failed for ElectrumX"
  quiet_pip "$EXV/bin/pip" install -q "e-x==$EX_VERSION" || die "could not install e-x==$EX_VERSION from PyPI"
  [ -x "$EXV/bin/electrumx_server" ] || die "e-x installed but electrumx_server is missing"
fi

# ---------------------------------------------------------------- summary
cat > "$CACHE/env.sh" <<EOF
# generated by scripts/install.sh
export EJM_CACHE="$CACHE"
export EJM_BITCOIND="$BIN/bitcoind"
export EJM_BITCOIN_CLI="$BIN/bitcoin-cli"
export EJM_ELECTRUMX="$EXV/bin/electrumx_server"
export EJM_NGIRCD="$(command -v ngircd || echo /usr/sbin/ngircd)"
export EJM_TOR="$(command -v tor || echo /usr/sbin/tor)"
EOF
ev=$("$VENV/bin/python" -c 'from electrum.version import ELECTRUM_VERSION as v; print(v)')
kv=$("$BIN/bitcoind" -version | head -n1)
say "ready in $(( $(date +%s) - t0 ))s: Electrum $ev; $kv; e-x $EX_VERSION; cache $CACHE"
