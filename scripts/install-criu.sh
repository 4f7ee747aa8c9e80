#!/usr/bin/env bash
# Install a working CRIU (>= 4.0) and the tools ckptctl needs at run time, on
# Debian 12 (bookworm), x86_64, as root. Idempotent: a second run only checks.
#
# Why not `apt-get install criu`: bookworm's criu 3.17 fails `criu check` on
# newer kernels ("vdso: Unexpected rt vDSO area bounds"). Debian 13 (trixie)
# ships criu 4.1.1, which works but needs glibc >= 2.38. So we download the
# trixie .debs (criu, libcompel1, trixie's libc6 and the libraries criu links
# against), unpack them into a private prefix, and point the criu binary's ELF
# interpreter and RPATH at that prefix with patchelf. The system libc is never
# touched, and the trixie apt source only ever lives in a private apt state
# directory under a temp dir, so the system's apt can never pull trixie.
#
# It also installs `crit`, CRIU's own image decoder (trixie's python3-pycriu,
# pure Python, unpacked into its own prefix; it runs under bookworm's python3
# with bookworm's python3-protobuf), which the tests compare `ckptctl
# inspect` with. A wrapper on PATH sets PYTHONPATH; the system's python
# packages are not touched.
#
# Environment overrides (all optional):
#   CKPTCTL_CRIU_PREFIX   private prefix      (default /opt/ckptctl-criu)
#   CKPTCTL_CRIU_LINK     symlink on PATH     (default /usr/local/bin/criu)
#   CKPTCTL_CRIU_VERSION  trixie deb version  (default 4.1.1-1)
#   CKPTCTL_CRIU_FORCE=1  reinstall even if a working criu (and crit) is found
#   CKPTCTL_CRIT_PREFIX   crit's prefix       (default /opt/ckptctl-crit)
#   CKPTCTL_CRIT_LINK     crit wrapper        (default /usr/local/bin/crit)
set -euo pipefail

PREFIX="${CKPTCTL_CRIU_PREFIX:-/opt/ckptctl-criu}"
LINK="${CKPTCTL_CRIU_LINK:-/usr/local/bin/criu}"
CRIU_DEB_VERSION="${CKPTCTL_CRIU_VERSION:-4.1.1-1}"
FORCE="${CKPTCTL_CRIU_FORCE:-0}"
CRIT_PREFIX="${CKPTCTL_CRIT_PREFIX:-/opt/ckptctl-crit}"
CRIT_LINK="${CKPTCTL_CRIT_LINK:-/usr/local/bin/crit}"
DEBIAN_MIRROR="http://deb.debian.org/debian"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
MULTIARCH="x86_64-linux-gnu"
LIBDIR_REL="usr/lib/${MULTIARCH}"

# Bookworm packages needed at run time:
#   iptables  - iptables-restore/ip6tables-restore for the default network lock
#   nftables  - `nft`, handy for inspecting/cleaning --network-lock nftables
#   iproute2  - ip netns / veth, also exec'd by criu to dump/restore net ns
#   util-linux- unshare/setsid for pid-namespace workloads
#   patchelf  - rewrites the trixie criu binary's interpreter and rpath
#   openssl   - the TLS migration tests make their certificates with it
#   python3-protobuf - what trixie's pycriu (crit) imports
RUNTIME_PKGS=(iptables nftables iproute2 util-linux patchelf openssl python3-protobuf)

# Trixie packages unpacked into the private prefix. criu + libcompel1 are
# pinned to CRIU_DEB_VERSION; the libraries take trixie's current version.
# libnftnl11 is not in environment.md's list: trixie's libnftables1 needs
# libnftnl.so.11 >= 1.2.9, and bookworm has none installed by default (and only
# 1.2.4 when iptables/nftables are installed), so ldd reported it missing.
# Everything else (gnutls, gmp, mnl, xtables, jansson, md, ...) resolves to
# bookworm's libraries via /etc/ld.so.cache; checked with LD_BIND_NOW.
TRIXIE_LIBS=(libc6 libnftables1 libnftnl11 libnl-3-200 libprotobuf-c1 libnet1 libbsd0 libuuid1)

export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-criu: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" -eq 0 ]] || die "must run as root"
[[ "$(uname -m)" == "x86_64" ]] || die "only x86_64 is supported (got $(uname -m))"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script targets Debian 12"

# --- helpers ----------------------------------------------------------------

# Print "MAJOR.MINOR.PATCH" as reported by `$1 --version`, or nothing.
criu_version_of() {
    local out
    out="$("$1" --version 2>/dev/null)" || return 0
    sed -n 's/^Version:[[:space:]]*\([0-9][0-9.]*\).*/\1/p' <<<"$out" | head -n1
}

# True if binary $1 reports version >= 4.0 and `criu check` passes.
criu_is_good() {
    local bin="$1" ver major
    [[ -x "$bin" ]] || return 1
    ver="$(criu_version_of "$bin")"
    [[ -n "$ver" ]] || return 1
    major="${ver%%.*}"
    [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 4)) || return 1
    timeout 60 "$bin" check >/dev/null 2>&1
}

report() {
    local bin="$1"
    printf 'criu: %s (Version: %s)\n' "$bin" "$(criu_version_of "$bin")"
}

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

APT_UPDATED=0
apt_update_once() {
    ((APT_UPDATED)) && return 0
    log "apt-get update"
    if ! apt-get -q update >/dev/null; then
        log "warning: apt-get update reported errors; trying to continue"
    fi
    APT_UPDATED=1
}

install_runtime_pkgs() {
    local missing=() p
    for p in "${RUNTIME_PKGS[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    apt_update_once
    log "apt-get install ${missing[*]}"
    apt-get -q -y install --no-install-recommends "${missing[@]}" >/dev/null
}

# --- 1. runtime packages (bookworm) ----------------------------------------

install_runtime_pkgs

# --- 2. is a good criu already there? --------------------------------------

CRIU_OK=0
if [[ "$FORCE" != "1" ]]; then
    # A working criu at our own install location: make sure the link exists.
    if criu_is_good "$PREFIX/usr/sbin/criu"; then
        if [[ "$(readlink -f "$LINK" 2>/dev/null || true)" != "$(readlink -f "$PREFIX/usr/sbin/criu")" ]]; then
            # Only replace the link if whatever is there is not itself a good criu.
            if ! criu_is_good "$LINK"; then
                mkdir -p "$(dirname "$LINK")"
                ln -sfn "$PREFIX/usr/sbin/criu" "$LINK"
            fi
        fi
    fi
    # Anything called criu on PATH (distro package, our link, a hand build).
    if onpath="$(command -v criu 2>/dev/null)" && criu_is_good "$onpath"; then
        log "a working criu is already installed; nothing to do"
        report "$onpath"
        CRIU_OK=1
    fi
    if ((!CRIU_OK)) && criu_is_good "$LINK"; then
        log "a working criu is installed at $LINK, but PATH ($PATH) resolves criu elsewhere"
        report "$LINK"
        CRIU_OK=1
    fi
fi

# A private apt configuration: its own sources dir (holding only trixie.sources),
# lists dir and no binary caches. The system's /etc/apt/sources.list.d and
# /var/lib/apt/lists are never modified, so nothing can pull trixie's libc into
# the bookworm system, even if this script is interrupted half-way.
WORK=""
STAGE=""
APT_TRIXIE=()
cleanup() {
    if [[ -n "$WORK" ]]; then rm -rf -- "$WORK"; fi
    if [[ -n "$STAGE" ]]; then rm -rf -- "$STAGE"; fi
}
trap cleanup EXIT
trixie_index() {
    [[ -z "$WORK" ]] || return 0
    WORK="$(mktemp -d /tmp/install-criu.XXXXXX)"
    mkdir -p "$WORK/etc/sources.list.d" "$WORK/lists/partial" "$WORK/debs" "$WORK/crit-debs"
    : >"$WORK/etc/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' \
        "$DEBIAN_MIRROR" "$KEYRING" >"$WORK/etc/sources.list.d/trixie.sources"
    APT_TRIXIE=(
        -o "Dir::Etc::SourceList=$WORK/etc/sources.list"
        -o "Dir::Etc::SourceParts=$WORK/etc/sources.list.d"
        -o "Dir::State::Lists=$WORK/lists"
        -o "Dir::Cache::pkgcache="
        -o "Dir::Cache::srcpkgcache="
        -o "Acquire::Languages=none"
        -o "APT::Sandbox::User=root"
    )
    log "fetching the trixie package index (private apt state in $WORK)"
    apt-get -q "${APT_TRIXIE[@]}" update >/dev/null
}

install_criu() {
# --- 3. download criu and its libraries from trixie -------------------------

START=$SECONDS
trixie_index
STAGE="${PREFIX}.new.$$"

log "downloading criu ${CRIU_DEB_VERSION} and libraries from trixie"
(
    cd "$WORK/debs"
    if ! apt-get -q "${APT_TRIXIE[@]}" download \
        "criu=${CRIU_DEB_VERSION}" "libcompel1=${CRIU_DEB_VERSION}" >/dev/null; then
        # Trixie may have moved on to a point release (e.g. 4.1.1-1+deb13u1).
        log "warning: criu=${CRIU_DEB_VERSION} not in trixie; taking trixie's current criu"
        apt-get -q "${APT_TRIXIE[@]}" download criu libcompel1 >/dev/null
    fi
    apt-get -q "${APT_TRIXIE[@]}" download "${TRIXIE_LIBS[@]}" >/dev/null
)

# --- 4. unpack into a staging prefix and patch ------------------------------

rm -rf -- "$STAGE"
mkdir -p "$STAGE"
for deb in "$WORK"/debs/*.deb; do
    dpkg -x "$deb" "$STAGE"
done
# Not needed at run time: docs, man pages, lintian overrides.
rm -rf -- "$STAGE/usr/share/doc" "$STAGE/usr/share/man" "$STAGE/usr/share/lintian"
# Bookworm's libgnutls30 works with this criu; trixie's would drag in more.
# (We do not download it, but never let one into the prefix.)
rm -f -- "$STAGE/$LIBDIR_REL"/libgnutls*

[[ -x "$STAGE/usr/sbin/criu" ]] || die "criu binary missing from the trixie package"
[[ -e "$STAGE/$LIBDIR_REL/ld-linux-x86-64.so.2" ]] || die "trixie ld.so missing"

# Interpreter and RPATH point at the final prefix. --force-rpath writes
# DT_RPATH (not DT_RUNPATH) so it also applies to the libraries' own
# dependencies (e.g. libnftables -> libnftnl) and to dlopen (NSS modules).
# A symlink (not an LD_LIBRARY_PATH wrapper) is used on PATH so that the
# programs criu itself runs (ip, iptables-restore, tar, action scripts) keep
# using the system's libc.
patchelf --set-interpreter "$PREFIX/$LIBDIR_REL/ld-linux-x86-64.so.2" \
    --set-rpath "$PREFIX/$LIBDIR_REL" --force-rpath "$STAGE/usr/sbin/criu"
criu_debs=("$WORK"/debs/criu_*.deb)
DEB_VER="$(dpkg-deb -f "${criu_debs[0]}" Version)"
mkdir -p "$STAGE/bin"
ln -sfn ../usr/sbin/criu "$STAGE/bin/criu"
cat >"$STAGE/README" <<EOF
CRIU ${DEB_VER} from Debian trixie, unpacked with its
trixie libc into this private prefix by ckptctl's scripts/install-criu.sh.
The binary usr/sbin/criu has its ELF interpreter and RPATH set to this prefix.
Installed $(date -u +%Y-%m-%dT%H:%M:%SZ). Safe to delete together with $LINK.
EOF

# --- 5. move into place and link --------------------------------------------

if [[ -e "$PREFIX" ]]; then
    rm -rf -- "${PREFIX}.old"
    mv -- "$PREFIX" "${PREFIX}.old"
fi
mv -- "$STAGE" "$PREFIX"
rm -rf -- "${PREFIX}.old"

mkdir -p "$(dirname "$LINK")"
ln -sfn "$PREFIX/usr/sbin/criu" "$LINK"

# --- 6. verify --------------------------------------------------------------

ver="$(criu_version_of "$LINK")"
[[ -n "$ver" ]] || die "$LINK --version failed after install"
if check_out="$(timeout 60 "$LINK" check 2>&1)"; then
    log "criu check: $(tail -n1 <<<"$check_out")"
else
    printf '%s\n' "$check_out" >&2
    die "criu $ver installed at $LINK, but 'criu check' failed"
fi

resolved="$(command -v criu 2>/dev/null || true)"
if [[ "$(readlink -f "$resolved" 2>/dev/null || true)" != "$(readlink -f "$LINK")" ]]; then
    log "warning: 'criu' on PATH resolves to '${resolved:-nothing}', not $LINK"
fi

log "installed in $((SECONDS - START)) s"
report "$LINK"
}

if ((!CRIU_OK)); then
    install_criu
fi

# --- 7. crit (CRIU's image decoder), for the tests --------------------------

crit_is_good() {
    [[ -x "$CRIT_LINK" ]] && timeout 60 "$CRIT_LINK" --version >/dev/null 2>&1
}

if [[ "$FORCE" != "1" ]] && crit_is_good; then
    log "crit is installed at $CRIT_LINK ($("$CRIT_LINK" --version))"
else
    trixie_index
    log "downloading python3-pycriu ${CRIU_DEB_VERSION} (crit) from trixie"
    (
        cd "$WORK/crit-debs"
        if ! apt-get -q "${APT_TRIXIE[@]}" download "python3-pycriu=${CRIU_DEB_VERSION}" >/dev/null; then
            log "warning: python3-pycriu=${CRIU_DEB_VERSION} not in trixie; taking trixie's current one"
            apt-get -q "${APT_TRIXIE[@]}" download python3-pycriu >/dev/null
        fi
    )
    STAGE="${CRIT_PREFIX}.new.$$"
    rm -rf -- "$STAGE"
    for deb in "$WORK"/crit-debs/*.deb; do
        dpkg -x "$deb" "$STAGE"
    done
    [[ -d "$STAGE/usr/lib/python3/dist-packages/pycriu" ]] ||
        die "pycriu missing from the trixie package"
    rm -rf -- "$CRIT_PREFIX"
    mv -- "$STAGE" "$CRIT_PREFIX"
    mkdir -p "$(dirname "$CRIT_LINK")"
    {
        printf '#!/bin/sh\n'
        printf '# crit from trixie python3-pycriu, installed by ckptctl scripts/install-criu.sh\n'
        printf 'PYTHONPATH="%s/usr/lib/python3/dist-packages" exec /usr/bin/python3 -m crit "$@"\n' "$CRIT_PREFIX"
    } >"$CRIT_LINK"
    chmod 0755 "$CRIT_LINK"
    crit_is_good || die "crit installed at $CRIT_LINK does not run"
    log "crit installed at $CRIT_LINK ($("$CRIT_LINK" --version))"
fi
