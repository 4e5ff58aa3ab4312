#!/usr/bin/env bash
# scripts/criu/build-criu.sh - build and install CRIU 4.1.1 (criu + libcriu) for ServerlessOS
# on Debian 12 bookworm, from Debian trixie's *source* package.
#
# Usage (as root):
#   scripts/criu/build-criu.sh              build + install if not installed yet (idempotent)
#   scripts/criu/build-criu.sh --force      rebuild + reinstall even if installed
#   scripts/criu/build-criu.sh --check      exit 0 iff the wanted criu/libcriu is installed
#   scripts/criu/build-criu.sh --print-deps print the bookworm packages the build needs, one a line
#   scripts/criu/build-criu.sh --apt-source write the trixie deb-src entry; print "update" when an
#                                           `apt-get update` is needed before the source download, else "ok"
# scripts/setup-host.sh calls it with these modes so that one `apt-get update` serves everything.
#
# Installs:   /usr/local/sbin/criu (+ criu-ns), /usr/local/lib/libcriu.so{,.2,.2.0} + libcriu.a,
#             /usr/local/lib/pkgconfig/criu.pc, /usr/local/include/criu/{criu.h,version.h,rpc.proto,...},
#             CRIU's rpc.proto and stats.proto in /usr/local/include/criu (lib/criu reads them at run time;
#             on a host where an older run of this script installed CRIU without stats.proto, a re-run
#             only adds the .proto files from the source tarball, without rebuilding),
#             stamp /usr/local/share/serverlessos/criu-build-stamp (version + sha256 of the patches)
# Apt:        /etc/apt/sources.list.d/serverlessos-trixie-src.sources, a `deb-src` entry ONLY.
#             Never add trixie `deb` (binary) entries: installing trixie binaries upgrades libc.
# Build dir:  $CRIU_BUILD_DIR (default /var/cache/serverlessos/criu): the orig tarball, the unpacked
#             and patched tree (make is incremental on a re-run) and build.log. It is not needed
#             after the install and may be deleted (the Dockerfile does).
# Patches:    every criu-4.1.1-*.patch beside this script is applied (-p1) once, e.g. the
#             SO_PASSCRED/SO_PASSSEC fix needed to dump inet sockets on kernels >= 6.16
#             (upstream issue checkpoint-restore/criu#2705).
# Env:        CRIU_BUILD_DIR, JOBS (default nproc), MIRROR (default: this host's Debian mirror),
#             ALLOW_NON_BOOKWORM=1.
#
# Runtime notes for the project:
#  - VMs without working hardware breakpoints hang in `criu dump` ("Waiting for <pid> to trap"):
#    run criu with CRIU_FAULT=130.
#  - libcriu 4.1.1's criu_check() fails (-52: upstream bug, fixed after 4.1.1); criu_dump() and
#    criu_restore() through libcriu work. Use the `criu check` CLI instead.
#  - Lazy (post-copy) dumps need fs.pipe-max-size >= 4194304 (set by scripts/setup-host.sh).
set -Eeuo pipefail

CRIU_VERSION=4.1.1
CRIU_SO_MAJOR=2
ORIG_TARBALL=criu_${CRIU_VERSION}.orig.tar.xz
ORIG_SHA256=f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe
PREFIX=/usr/local
SBINDIR=$PREFIX/sbin
LIBDIR=$PREFIX/lib
INCDIR=$PREFIX/include/criu
STAMP=$PREFIX/share/serverlessos/criu-build-stamp
SRC_LIST=/etc/apt/sources.list.d/serverlessos-trixie-src.sources
BUILD_DIR=${CRIU_BUILD_DIR:-/var/cache/serverlessos/criu}
JOBS=${JOBS:-$(nproc)}
HERE=$(dirname "$(readlink -f "$0")")

# Bookworm packages. Line 1: required to build. Line 2: features criu links when present
# (libbsd: setproctitle/strlcpy, gnutls: TLS page-server, which lib/migration requires,
# libnftables: --network-lock nftables).
# Line 3: tools used by this script and criu's runtime helpers (crit/criu-ns need python3-protobuf).
DEPS=(
  build-essential patch pkg-config libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler libnl-3-dev libnet1-dev libcap-dev uuid-dev python3
  libbsd-dev libgnutls28-dev libnftables-dev
  xz-utils ca-certificates python3-protobuf iproute2
)
# CRIU's .proto files the project reads at run time (RPC messages, stats images).
PROTOS=(rpc stats)
MAKE_VARS=(PREFIX="$PREFIX" SBINDIR="$SBINDIR" LIBDIR="$LIBDIR" SKIP_PIP_INSTALL=1)

# Deterministic tools: Debian's python3/gcc, not a pyenv/nvm shim from the caller's PATH.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

log() { printf '[build-criu] %s\n' "$*"; }
die() { printf '[build-criu] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

want_stamp() {
  echo "criu $CRIU_VERSION"
  cat "$HERE"/criu-"$CRIU_VERSION"-*.patch 2>/dev/null | sha256sum | cut -d' ' -f1
}

protos_ok() {
  local p
  for p in "${PROTOS[@]}"; do [ -f "$INCDIR/$p.proto" ] || return 1; done
}

installed_ok() { binary_ok && protos_ok; }

binary_ok() {
  local v
  v=$("$SBINDIR/criu" --version 2>/dev/null | sed -n 's/^Version: *//p') || return 1
  [ "$v" = "$CRIU_VERSION" ] || return 1
  [ -e "$LIBDIR/libcriu.so.$CRIU_SO_MAJOR" ] || return 1
  [ -f "$INCDIR/criu.h" ] && [ -f "$INCDIR/rpc.proto" ] || return 1
  # grep without -q: -q exits at the first match, and under pipefail ldconfig's SIGPIPE fails the check
  ldconfig -p | grep "libcriu.so.$CRIU_SO_MAJOR .*=> $LIBDIR/" >/dev/null || return 1
  [ "$(cat "$STAMP" 2>/dev/null)" = "$(want_stamp)" ] || return 1
}

mirror() {
  local m=${MIRROR:-}
  [ -n "$m" ] || m=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# trixie's criu source version that is 4.1.1 (e.g. 4.1.1-2), from the apt source index; empty if unknown
src_version() {
  apt-cache showsrc criu 2>/dev/null | sed -n 's/^Version: //p' | grep -m1 "^$CRIU_VERSION-" || true
}

tarball_ok() { [ -f "$BUILD_DIR/$ORIG_TARBALL" ] && echo "$ORIG_SHA256  $BUILD_DIR/$ORIG_TARBALL" | sha256sum -c --status; }

# Writes the deb-src entry; returns 0 if it changed.
write_apt_source() {
  local want
  want="# ServerlessOS (scripts/criu/build-criu.sh): trixie SOURCE packages only, to build CRIU $CRIU_VERSION.
# Do not add trixie binary (deb) entries: they would upgrade libc on this bookworm host.
Types: deb-src
URIs: $(mirror)
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
  if [ -f "$SRC_LIST" ] && [ "$(cat "$SRC_LIST")" = "$want" ]; then return 1; fi
  printf '%s\n' "$want" > "$SRC_LIST"
  return 0
}

missing_deps() {
  local p st
  for p in "${DEPS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ $st == ii* ]] || echo "$p"
  done
}

# ---- modes ---------------------------------------------------------------------------------
MODE=build
case "${1:-}" in
  "") ;;
  --force) MODE=force ;;
  --check) MODE=check ;;
  --print-deps) MODE=deps ;;
  --apt-source) MODE=aptsrc ;;
  -h|--help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d'; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac

case $MODE in
  check) if installed_ok; then exit 0; else exit 1; fi ;;
  deps) printf '%s\n' "${DEPS[@]}"; exit 0 ;;
esac

[ "$(id -u)" -eq 0 ] || die "must run as root"
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ] && [ "${ALLOW_NON_BOOKWORM:-0}" != 1 ]; then
  die "targets Debian 12 bookworm, found '${PRETTY_NAME:-?}' (ALLOW_NON_BOOKWORM=1 to override)"
fi

if [ $MODE = aptsrc ]; then
  if write_apt_source; then
    log "wrote $SRC_LIST (deb-src trixie)" >&2
    tarball_ok && echo ok || echo update
  elif tarball_ok || [ -n "$(src_version)" ]; then
    echo ok
  else
    echo update
  fi
  exit 0
fi

if [ $MODE = build ] && installed_ok; then
  log "criu $CRIU_VERSION + libcriu.so.$CRIU_SO_MAJOR already installed in $PREFIX (--force to rebuild)"
  exit 0
fi

# CRIU built and installed by an older run of this script, only the .proto files missing:
# fetch/unpack the source as usual, skip make.
ONLY_PROTOS=0
if [ $MODE = build ] && binary_ok; then
  ONLY_PROTOS=1
  log "criu $CRIU_VERSION installed; adding CRIU's .proto files (${PROTOS[*]}) to $INCDIR"
fi

T0=$SECONDS
mkdir -p "$BUILD_DIR"
BUILD_LOG=$BUILD_DIR/build.log
: > "$BUILD_LOG"
# run CMD...: output to build.log; on failure show its tail
quiet() {
  if ! "$@" >>"$BUILD_LOG" 2>&1; then
    printf '[build-criu] ---- last lines of %s ----\n' "$BUILD_LOG" >&2
    tail -n 25 "$BUILD_LOG" >&2
    die "failed: $*"
  fi
}

# ---- 1. apt: deb-src entry + build deps ------------------------------------------------------
t=$SECONDS
need_update=0
write_apt_source && { log "wrote $SRC_LIST (deb-src trixie)"; need_update=1; }
mapfile -t missing < <(missing_deps)
[ ${#missing[@]} -eq 0 ] || need_update=1
tarball_ok || [ -n "$(src_version)" ] || need_update=1
if [ $need_update = 1 ]; then
  log "apt-get update"
  quiet apt-get update
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing build deps: ${missing[*]}"
  quiet apt-get install -y --no-install-recommends "${missing[@]}"
fi
t_deps=$((SECONDS - t))

# ---- 2. source: the orig tarball of trixie's criu 4.1.1 source package ------------------------
t=$SECONDS
if tarball_ok; then
  log "$ORIG_TARBALL present in $BUILD_DIR"
else
  sv=$(src_version)
  [ -n "$sv" ] || die "no criu $CRIU_VERSION-* source package in the apt index (trixie has: $(apt-cache showsrc criu 2>/dev/null | sed -n 's/^Version: //p' | paste -sd' ' -))"
  log "apt-get source --download-only criu=$sv"
  dl=$BUILD_DIR/dl
  rm -rf "$dl"; mkdir -p "$dl"
  id _apt >/dev/null 2>&1 && chown _apt "$dl"   # lets apt download sandboxed as _apt
  # Only the orig tarball is needed (checked by sha256 below); a missing .dsc/.debian.tar on a
  # mirror makes apt exit non-zero, so its status alone is not the verdict.
  (cd "$dl" && apt-get source -q --download-only "criu=$sv") >>"$BUILD_LOG" 2>&1 || log "apt-get source exited non-zero (checking for the tarball)"
  [ -f "$dl/$ORIG_TARBALL" ] || { tail -n 15 "$BUILD_LOG" >&2; die "$ORIG_TARBALL was not downloaded"; }
  mv "$dl/$ORIG_TARBALL" "$BUILD_DIR/"
  rm -rf "$dl"
  tarball_ok || die "$ORIG_TARBALL: sha256 mismatch (want $ORIG_SHA256)"
fi
SRCDIR=$BUILD_DIR/criu-$CRIU_VERSION
if [ ! -f "$SRCDIR/Makefile.versions" ]; then
  log "unpacking $ORIG_TARBALL"
  rm -rf "$SRCDIR"
  tar -C "$BUILD_DIR" -xf "$BUILD_DIR/$ORIG_TARBALL"
fi
for pf in "$HERE"/criu-"$CRIU_VERSION"-*.patch; do
  [ -f "$pf" ] || continue
  if patch -d "$SRCDIR" -p1 -N --dry-run -s <"$pf" >/dev/null 2>&1; then
    log "applying $(basename "$pf")"
    patch -d "$SRCDIR" -p1 -N -s <"$pf"
  elif patch -d "$SRCDIR" -p1 -R --dry-run -s <"$pf" >/dev/null 2>&1; then
    log "$(basename "$pf") already applied"
  else
    die "$(basename "$pf") does not apply to $SRCDIR (delete that folder to start from a clean tree)"
  fi
done
t_src=$((SECONDS - t))

# ---- 3. build ------------------------------------------------------------------------------
t=$SECONDS
if [ $ONLY_PROTOS = 0 ]; then
log "make -j$JOBS criu (~1.5-2 min; output in $BUILD_LOG)"
quiet make -C "$SRCDIR" -j"$JOBS" "${MAKE_VARS[@]}" criu
log "make -j$JOBS lib"
quiet make -C "$SRCDIR" -j"$JOBS" "${MAKE_VARS[@]}" lib
v=$("$SRCDIR/criu/criu" --version | sed -n 's/^Version: *//p')
[ "$v" = "$CRIU_VERSION" ] || die "the built criu reports version '$v', want $CRIU_VERSION"
# Migrations move pages over CRIU's mutual TLS: a criu built without gnutls cannot.
ldd "$SRCDIR/criu/criu" | grep -q libgnutls || die "the built criu does not link gnutls (libgnutls28-dev missing?)"
fi
t_make=$((SECONDS - t))

# ---- 4. install ----------------------------------------------------------------------------
t=$SECONDS
if [ $ONLY_PROTOS = 0 ]; then
  log "make install-criu install-lib (PREFIX=$PREFIX LIBDIR=$LIBDIR)"
  quiet make -C "$SRCDIR" "${MAKE_VARS[@]}" install-criu install-lib
  ldconfig
  mkdir -p "$(dirname "$STAMP")"
  want_stamp >"$STAMP"
fi
# rpc.proto describes `criu swrk` messages, stats.proto the stats-dump/stats-restore images:
# lib/criu loads both at run time, so they always match the installed CRIU.
for p in "${PROTOS[@]}"; do
  cmp -s "$SRCDIR/images/$p.proto" "$INCDIR/$p.proto" || install -D -m 0644 "$SRCDIR/images/$p.proto" "$INCDIR/$p.proto"
done
t_inst=$((SECONDS - t))

installed_ok || die "post-install check failed (criu --version / libcriu / headers / ldconfig)"
log "installed $("$SBINDIR/criu" --version | head -1) -> $SBINDIR/criu, $(readlink -f "$LIBDIR/libcriu.so.$CRIU_SO_MAJOR"), $INCDIR/"
log "timings (s): deps=$t_deps source=$t_src make=$t_make install=$t_inst total=$((SECONDS - T0))"
