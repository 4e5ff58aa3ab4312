#!/usr/bin/env bash
# scripts/setup-host.sh - prepare a Debian 12 bookworm host (or the CI image) for ServerlessOS.
#
# Usage (as root):  scripts/setup-host.sh [--no-vm] [--no-criu]
#   --no-vm    skip the soft-RoCE VM part (qemu, busybox-static, kmod, cpio, Debian kernel download)
#   --no-criu  skip building/installing CRIU 4.1.1 and libcriu
#
# Idempotent; a re-run on a prepared host takes a couple of seconds. It does not run npm.
#  1. apt packages: build tools, clang-format (the lint step), rdma-core + verbs/rdmacm dev +
#     perftest, iproute2, nftables, util-linux, procps, etcd-server (+ etcd-client when apt knows it), libfaketime, clang-14 +
#     libclang-rt-14-dev (libFuzzer for the C++ parsers), the VM tools, and
#     CRIU's build deps. `apt-get update` runs only when something needed is missing.
#  2. sysctl fs.pipe-max-size=4194304 (needed by CRIU lazy/post-copy dumps), persisted in
#     /etc/sysctl.d/60-serverlessos.conf. Only a warning where /proc/sys is read-only
#     (`docker build`): apply it at test time in a privileged container or on the docker host.
#  3. /dev/userfaultfd present and openable by root (created from /proc/misc if missing).
#     vm.unprivileged_userfaultfd is left alone: the project runs as root.
#  4. CRIU 4.1.1 + libcriu with the project's patches, via scripts/criu/build-criu.sh
#     (skipped when /usr/local/sbin/criu reports 4.1.1 and libcriu/headers are installed).
#     Build dir: /var/cache/serverlessos/criu (CRIU_BUILD_DIR overrides; deletable afterwards).
#  5. The Debian bookworm kernel image that `linux-image-amd64` depends on, fetched with
#     `apt-get download` and unpacked with `dpkg -x` (never installed) into
#     <project>/.cache/vm/kernel/ (boot/vmlinuz-KVER, lib/modules/KVER + depmod), with
#     <project>/.cache/vm/kernel/kernel.env recording KVER, the package and its version.
#  6. promtool (test/daemon/metrics.test.ts lints sosd's /metrics with `promtool check metrics`):
#     Debian's `prometheus` package is fetched with `apt-get download` (never installed: its
#     postinst would start a Prometheus server) and only usr/bin/promtool is unpacked, to
#     /usr/local/lib/serverlessos/promtool (PROMTOOL overrides). The .deb stays in
#     /var/cache/serverlessos/promtool (deletable); skipped when that promtool runs.
#
# Output: concise progress lines; apt and build output goes to /var/log/serverlessos/setup-host.log
# (and /var/cache/serverlessos/criu/build.log), whose tail is shown on failure. Exits non-zero
# with an ERROR line on any failure.
set -Eeuo pipefail

WANT_PIPE_MAX=4194304
SYSCTL_FILE=/etc/sysctl.d/60-serverlessos.conf

PKGS_BASE=(build-essential python3 pkg-config git clang-format
  rdma-core libibverbs-dev librdmacm-dev ibverbs-utils ibverbs-providers rdmacm-utils perftest
  iproute2 nftables util-linux procps
  iputils-arping                       # a migrated address is announced with unsolicited ARP
  etcd-server
  chromium                             # the demo report's test renders it headless (puppeteer-core)
  libfaketime                          # tests step an agent's wall clock (LD_PRELOAD, monotonic untouched)
  clang-14 libclang-rt-14-dev)         # libFuzzer + ASan for the C++ parsers that face peers (test/fuzz/native)
PKGS_OPTIONAL=(etcd-client)            # installed when the apt index has it (bookworm: 3.4.23)
PKGS_VM=(qemu-system-x86 busybox-static kmod cpio)

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

T0=${EPOCHREALTIME/./}
elapsed() { local d=$(( ${EPOCHREALTIME/./} - T0 )); printf '%d.%01d' $((d / 1000000)) $((d % 1000000 / 100000)); }
log()  { printf '[setup-host %6ss] %s\n' "$(elapsed)" "$*"; }
warn() { printf '[setup-host %6ss] WARNING: %s\n' "$(elapsed)" "$*" >&2; }
die()  { printf '[setup-host %6ss] ERROR: %s\n' "$(elapsed)" "$*" >&2; exit 1; }
trap 'die "command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

DO_VM=1 DO_CRIU=1
for a in "$@"; do
  case $a in
    --no-vm) DO_VM=0 ;;
    --no-criu) DO_CRIU=0 ;;
    -h|--help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument '$a' (usage: $0 [--no-vm] [--no-criu])" ;;
  esac
done

ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
BUILD_CRIU=$ROOT/scripts/criu/build-criu.sh
LOG_DIR=/var/log/serverlessos
LOG=$LOG_DIR/setup-host.log

[ "$(id -u)" -eq 0 ] || die "must run as root"
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || die "apt/dpkg not found: this script targets Debian 12 bookworm"
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ] && [ "${ALLOW_NON_BOOKWORM:-0}" != 1 ]; then
  die "targets Debian 12 bookworm, found '${PRETTY_NAME:-?}' (ALLOW_NON_BOOKWORM=1 to override)"
fi
[ $DO_CRIU = 0 ] || [ -x "$BUILD_CRIU" ] || die "$BUILD_CRIU missing or not executable"
mkdir -p "$LOG_DIR"
printf '\n==== %s setup-host.sh %s\n' "$(date -Is)" "$*" >>"$LOG"

# run CMD...: output to the log; on failure show its tail and stop
quiet() {
  if ! "$@" >>"$LOG" 2>&1; then
    printf -- '---- last lines of %s ----\n' "$LOG" >&2
    tail -n 25 "$LOG" >&2
    die "failed: $*"
  fi
}
APT_UPDATED=0
apt_update() {
  [ $APT_UPDATED = 1 ] && return 0
  log "apt-get update"
  quiet apt-get update
  APT_UPDATED=1
}
not_installed() {   # prints the given packages that are not installed
  local p st
  for p in "$@"; do
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ $st == ii* ]] || echo "$p"
  done
}
has_candidate() {   # the apt index offers a version of package $1
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

log "project: $ROOT (vm=$DO_VM criu=$DO_CRIU; details in $LOG)"

# ---- 1. packages ---------------------------------------------------------------------------
CRIU_NEEDED=0
if [ $DO_CRIU = 1 ] && ! "$BUILD_CRIU" --check; then CRIU_NEEDED=1; fi

PKGS=("${PKGS_BASE[@]}")
[ $DO_VM = 0 ] || PKGS+=("${PKGS_VM[@]}")
if [ $CRIU_NEEDED = 1 ]; then
  mapfile -t criu_deps < <("$BUILD_CRIU" --print-deps)
  PKGS+=("${criu_deps[@]}")
fi
mapfile -t MISSING < <(not_installed "${PKGS[@]}" | awk '!seen[$0]++')

need_update=0
[ ${#MISSING[@]} -eq 0 ] || need_update=1
if [ $CRIU_NEEDED = 1 ]; then
  # the trixie deb-src entry must be in place before the (single) apt-get update
  [ "$("$BUILD_CRIU" --apt-source)" = ok ] || need_update=1
fi
[ $need_update = 0 ] || apt_update

for p in $(not_installed "${PKGS_OPTIONAL[@]}"); do
  if has_candidate "$p"; then MISSING+=("$p"); else log "$p: not in the apt index, skipped"; fi
done
if [ ${#MISSING[@]} -gt 0 ]; then
  log "apt-get install ${MISSING[*]}"
  quiet apt-get install -y --no-install-recommends "${MISSING[@]}"
  mapfile -t still < <(not_installed "${MISSING[@]}")
  [ ${#still[@]} -eq 0 ] || die "still not installed after apt-get install: ${still[*]}"
  log "packages installed"
else
  log "packages: all ${#PKGS[@]} present"
fi

# ---- 2. sysctl fs.pipe-max-size ---------------------------------------------------------------
want_conf="# ServerlessOS (scripts/setup-host.sh): CRIU lazy (post-copy) dumps need pipes of ~3 MiB.
fs.pipe-max-size = $WANT_PIPE_MAX"
if [ "$(cat "$SYSCTL_FILE" 2>/dev/null)" != "$want_conf" ]; then
  printf '%s\n' "$want_conf" >"$SYSCTL_FILE"
  log "wrote $SYSCTL_FILE"
fi
cur=$(cat /proc/sys/fs/pipe-max-size)
if [ "$cur" -ge $WANT_PIPE_MAX ]; then
  log "sysctl fs.pipe-max-size = $cur (ok)"
elif [ -w /proc/sys/fs/pipe-max-size ]; then
  sysctl -q -w fs.pipe-max-size=$WANT_PIPE_MAX >/dev/null || die "sysctl -w fs.pipe-max-size=$WANT_PIPE_MAX failed"
  log "sysctl fs.pipe-max-size: $cur -> $(cat /proc/sys/fs/pipe-max-size)"
else
  warn "/proc/sys is read-only here (container build?): fs.pipe-max-size stays $cur; set it to $WANT_PIPE_MAX at run time (privileged container or the host)"
fi

# ---- 3. /dev/userfaultfd ----------------------------------------------------------------------
# Soft failures (warnings) only where /proc/sys is read-only, i.e. an unprivileged container build.
uffd_problem() { if [ -w /proc/sys/fs/pipe-max-size ]; then die "$*"; else warn "$* (fine during a container build; needed at test time)"; fi; }
uffd_minor=$(awk '$2=="userfaultfd"{print $1}' /proc/misc 2>/dev/null || true)
if [ -z "$uffd_minor" ]; then
  if [ -e /proc/sys/vm/unprivileged_userfaultfd ]; then
    warn "kernel has userfaultfd(2) but no /dev/userfaultfd (kernel < 6.1?): the syscall is used (root)"
  else
    uffd_problem "this kernel has no userfaultfd support (CONFIG_USERFAULTFD)"
  fi
else
  if [ ! -c /dev/userfaultfd ]; then
    log "creating /dev/userfaultfd (char 10:$uffd_minor)"
    mknod -m 0600 /dev/userfaultfd c 10 "$uffd_minor" 2>/dev/null || true
  fi
  if [ -c /dev/userfaultfd ] && (: <>/dev/userfaultfd) 2>/dev/null; then
    log "/dev/userfaultfd ok ($(stat -c '%A %U' /dev/userfaultfd))"
  else
    uffd_problem "/dev/userfaultfd cannot be opened read-write"
  fi
fi

# ---- 4. CRIU 4.1.1 + libcriu --------------------------------------------------------------------
if [ $DO_CRIU = 0 ]; then
  log "criu: skipped (--no-criu)"
elif [ $CRIU_NEEDED = 0 ]; then
  log "criu: $(/usr/local/sbin/criu --version | head -1) + libcriu already installed"
else
  log "criu: building 4.1.1 (about 3 min)"
  "$BUILD_CRIU" || die "CRIU build failed (see /var/cache/serverlessos/criu/build.log)"
  "$BUILD_CRIU" --check || die "criu 4.1.1/libcriu not found after the build"
  if out=$(CRIU_FAULT=130 /usr/local/sbin/criu check 2>&1); then
    log "criu check (CRIU_FAULT=130): $(tail -n1 <<<"$out")"
  else
    warn "'CRIU_FAULT=130 criu check' failed in this environment (the build is fine): $(tail -n3 <<<"$out" | paste -sd'|' -)"
  fi
fi

# ---- 5. Debian kernel for the soft-RoCE VM ------------------------------------------------------
resolve_kernel() {  # sets KPKG KVER KPKGVER from linux-image-amd64's dependency
  KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1=="Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
  [ -n "$KPKG" ] || return 1
  KVER=${KPKG#linux-image-}
  KPKGVER=$(apt-cache policy "$KPKG" 2>/dev/null | sed -n 's/^ *Candidate: //p')
  [ -n "$KPKGVER" ] && [ "$KPKGVER" != "(none)" ]
}
if [ $DO_VM = 0 ]; then
  log "vm kernel: skipped (--no-vm)"
else
  VMDIR=$ROOT/.cache/vm
  KDIR=$VMDIR/kernel
  KENV=$KDIR/kernel.env
  have_kver=$(sed -n 's/^KVER=//p' "$KENV" 2>/dev/null || true)
  have_pkgver=$(sed -n 's/^KERNEL_PACKAGE_VERSION=//p' "$KENV" 2>/dev/null || true)
  have_ok=0
  [ -n "$have_kver" ] && [ -f "$KDIR/boot/vmlinuz-$have_kver" ] && [ -f "$KDIR/lib/modules/$have_kver/modules.dep" ] && have_ok=1
  if ! resolve_kernel; then
    if [ $have_ok = 1 ] && [ $APT_UPDATED = 0 ]; then
      warn "cannot resolve linux-image-amd64 from the apt index (no lists?): keeping $have_kver"
      KVER=$have_kver KPKGVER=$have_pkgver
    else
      apt_update
      resolve_kernel || die "cannot resolve the kernel package from 'apt-cache depends linux-image-amd64'"
    fi
  fi
  if [ $have_ok = 1 ] && [ "$have_kver" = "$KVER" ] && [ "$have_pkgver" = "$KPKGVER" ]; then
    log "vm kernel: $KVER ($KPKGVER) present in ${KDIR#"$ROOT"/}"
  else
    log "vm kernel: downloading $KPKG=$KPKGVER (linux-image-amd64's dependency)"
    mkdir -p "$VMDIR"
    TMP=$(mktemp -d "$VMDIR/.dl.XXXXXX")
    trap 'rm -rf "$TMP"' EXIT
    id _apt >/dev/null 2>&1 && chown _apt "$TMP"   # lets apt download sandboxed as _apt
    (cd "$TMP" && apt-get download "$KPKG=$KPKGVER") >>"$LOG" 2>&1 \
      || { tail -n 15 "$LOG" >&2; die "apt-get download $KPKG=$KPKGVER failed"; }
    deb=$(ls "$TMP"/"$KPKG"_*.deb)
    log "vm kernel: dpkg -x $(basename "$deb") ($(du -h "$deb" | cut -f1))"
    dpkg -x "$deb" "$TMP/kernel"
    [ -f "$TMP/kernel/boot/vmlinuz-$KVER" ] || die "$deb has no boot/vmlinuz-$KVER"
    depmod -b "$TMP/kernel" "$KVER" || die "depmod -b for $KVER failed"
    cat >"$TMP/kernel/kernel.env" <<EOF
# Debian kernel for the soft-RoCE VM, unpacked by scripts/setup-host.sh (not installed).
KVER=$KVER
KERNEL_PACKAGE=$KPKG
KERNEL_PACKAGE_VERSION=$KPKGVER
VMLINUZ=boot/vmlinuz-$KVER
MODULES=lib/modules/$KVER
EOF
    rm -rf "$KDIR"
    mv "$TMP/kernel" "$KDIR"
    rm -rf "$TMP"; trap - EXIT
    # keep the cache deletable by the project's owner
    owner=$(stat -c %u:%g "$ROOT")
    [ "$owner" = 0:0 ] || { chown "$owner" "$ROOT/.cache" && chown -R "$owner" "$VMDIR"; } 2>/dev/null || true
    log "vm kernel: $KVER ready in ${KDIR#"$ROOT"/} ($(du -sh "$KDIR" | cut -f1))"
  fi
fi

# ---- 6. promtool (from Debian's prometheus package, not installed) -----------------------------
PROMTOOL=${PROMTOOL:-/usr/local/lib/serverlessos/promtool}
PROMTOOL_CACHE=/var/cache/serverlessos/promtool
if pt_ver=$("$PROMTOOL" --version 2>&1 | head -1) && [ -n "$pt_ver" ] && [ -x "$PROMTOOL" ]; then
  log "promtool: $pt_ver present ($PROMTOOL)"
else
  has_candidate prometheus || apt_update
  has_candidate prometheus || die "the apt index has no prometheus package: cannot fetch promtool"
  pt_pkgver=$(apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: //p')
  mkdir -p "$PROMTOOL_CACHE"
  id _apt >/dev/null 2>&1 && chown _apt "$PROMTOOL_CACHE"   # lets apt download sandboxed as _apt
  pt_deb=$(ls "$PROMTOOL_CACHE"/prometheus_"${pt_pkgver//:/%3a}"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$pt_deb" ]; then
    log "promtool: apt-get download prometheus=$pt_pkgver"
    (cd "$PROMTOOL_CACHE" && apt-get download "prometheus=$pt_pkgver") >>"$LOG" 2>&1 \
      || { tail -n 15 "$LOG" >&2; die "apt-get download prometheus=$pt_pkgver failed"; }
    pt_deb=$(ls "$PROMTOOL_CACHE"/prometheus_*.deb | head -1)
  fi
  # Only the one file: the tarball member, not the whole package (dpkg-deb -x would unpack all of it).
  pt_tmp=$(mktemp -d)
  dpkg-deb --fsys-tarfile "$pt_deb" | tar -x -C "$pt_tmp" ./usr/bin/promtool \
    || { rm -rf "$pt_tmp"; die "$(basename "$pt_deb") has no usr/bin/promtool"; }
  mkdir -p "$(dirname "$PROMTOOL")"
  install -m 0755 "$pt_tmp/usr/bin/promtool" "$PROMTOOL"
  rm -rf "$pt_tmp"
  "$PROMTOOL" --version >/dev/null 2>&1 || die "$PROMTOOL does not run"
  log "promtool: $("$PROMTOOL" --version 2>&1 | head -1) installed as $PROMTOOL"
fi

log "done"
