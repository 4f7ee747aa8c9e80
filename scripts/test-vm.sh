#!/usr/bin/env bash
# The guest test lane: the integration tests that need a kernel with soft-dirty
# memory tracking and remote lazy pages (pre-copy, post-copy from the source's
# memory), run inside a QEMU guest that boots Debian's own 6.1 kernel with this
# machine's root filesystem (virtme-ng, software emulation).
#
#   bash scripts/test-vm.sh [--install-only] [-- ARGS for the test binaries]
#   bash scripts/test-vm.sh --bench     # the guest benchmark instead of the tests
#
# 1. Installs what it needs, idempotently, from the package registries only:
#    qemu-system-x86, kmod and busybox-static (apt); the newest bookworm
#    linux-image-6.1.0-*-amd64-unsigned (apt-get download + dpkg -x; its
#    modules go to /lib/modules/<ver>, then depmod); virtme-ng (PyPI) in a
#    virtualenv. Everything is cached under $CKPTCTL_VM_DIR.
# 2. Builds the guest test targets (cargo feature `guest-tests`) on the host.
# 3. Boots one guest (--disable-kvm: KVM guests abort or hang on these
#    machines), runs every guest test binary inside it one test at a time with
#    CRIU named explicitly (CKPTCTL_CRIU), and carries the verdict and the logs
#    back through a --rwdir directory: the launcher's exit code does not.
#
# --bench runs scripts/bench/guest_migrate.py in the guest instead (4 GiB of
# guest memory: it migrates a 1 GiB process): the migration strategies side
# by side, printed as ratios (the guest is emulated).
#
# Exit code: 0 when every guest test passed; 1 otherwise. With
# CKPTCTL_TEST_REQUIRE_CRIU=1 (CI), a guest that does not boot or a test that
# is skipped (#[ignore]d, or skipped at run time) is a failure too.
#
# Environment overrides (all optional):
#   CKPTCTL_VM_DIR      cache (kernel, venv)         (default /var/cache/ckptctl-vm)
#   CKPTCTL_VM_TIMEOUT  seconds for the guest run    (default 840)
#   CKPTCTL_VM_MEMORY   guest memory                 (default 2G)
#   CKPTCTL_VM_CPUS     guest CPUs                   (default 2)
#   CKPTCTL_VM_CRIU     CRIU used in the guest       (default /usr/local/bin/criu)
#   CKPTCTL_VM_KEEP=1   keep the results directory
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

VM_DIR="${CKPTCTL_VM_DIR:-/var/cache/ckptctl-vm}"
VM_TIMEOUT="${CKPTCTL_VM_TIMEOUT:-840}"
VM_MEMORY="${CKPTCTL_VM_MEMORY:-}"
VM_CPUS="${CKPTCTL_VM_CPUS:-2}"
VM_CRIU="${CKPTCTL_VM_CRIU:-/usr/local/bin/criu}"
VNG_VERSION="1.42"
APT_PKGS=(qemu-system-x86 kmod busybox-static)
REQUIRE="${CKPTCTL_TEST_REQUIRE_CRIU:-}"

export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

START=$SECONDS
log() { printf 'test-vm: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    log "wall time: $((SECONDS - START)) s"
    exit 1
}

install_only=0
bench=0
test_args=()
while (($#)); do
    case "$1" in
    --install-only) install_only=1 ;;
    --bench) bench=1 ;;
    --)
        shift
        test_args=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

[[ "$(id -u)" -eq 0 ]] || die "must run as root (the guest tests drive CRIU as root)"

# --- 1. install ---------------------------------------------------------------

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

APT_UPDATED=0
apt_update_once() {
    ((APT_UPDATED)) && return 0
    log "apt-get update"
    apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null || log "warning: apt-get update reported errors"
    APT_UPDATED=1
}

install_apt_pkgs() {
    local missing=() p
    for p in "${APT_PKGS[@]}"; do
        pkg_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    apt_update_once
    log "apt-get install ${missing[*]}"
    apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "${missing[@]}" >/dev/null
}

# The kernel: $VM_DIR/kernel/vmlinuz-<ver>, its modules in /lib/modules/<ver>.
# Sets KVER and VMLINUZ.
install_kernel() {
    local found pkg debs
    mkdir -p "$VM_DIR/kernel"
    found="$(find "$VM_DIR/kernel" -maxdepth 1 -name 'vmlinuz-6.1.0-*-amd64' | sort -V | tail -n1)"
    if [[ -z "$found" ]]; then
        apt_update_once
        # The plain flavour: -cloud- has no 9p, -rt- is not needed.
        pkg="$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' |
            awk '{print $1}' | sort -V | tail -n1)"
        [[ -n "$pkg" ]] || die "no linux-image-6.1.0-*-amd64-unsigned package in apt's lists (bookworm)"
        log "downloading $pkg"
        debs="$(mktemp -d /tmp/ckptctl-vm-kernel.XXXXXX)"
        (cd "$debs" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >/dev/null)
        mkdir -p "$debs/x" "$VM_DIR/kernel"
        dpkg -x "$debs"/*.deb "$debs/x"
        found="$(find "$debs/x/boot" -maxdepth 1 -name 'vmlinuz-6.1.0-*-amd64' | head -n1)"
        [[ -n "$found" ]] || die "$pkg holds no boot/vmlinuz-*"
        KVER="${found##*/vmlinuz-}"
        if [[ ! -d "/lib/modules/$KVER" ]]; then
            mkdir -p /lib/modules
            cp -a "$debs/x/lib/modules/$KVER" "/lib/modules/$KVER.new.$$"
            mv -T "/lib/modules/$KVER.new.$$" "/lib/modules/$KVER"
        fi
        cp "$found" "$VM_DIR/kernel/vmlinuz-$KVER.new"
        mv -f "$VM_DIR/kernel/vmlinuz-$KVER.new" "$VM_DIR/kernel/vmlinuz-$KVER"
        rm -rf -- "$debs"
        found="$VM_DIR/kernel/vmlinuz-$KVER"
    fi
    KVER="${found##*/vmlinuz-}"
    VMLINUZ="$found"
    [[ -d "/lib/modules/$KVER/kernel" ]] || {
        # The cache survived but the modules did not: fetch them again.
        rm -f -- "$VMLINUZ"
        install_kernel
        return
    }
    if [[ ! -e "/lib/modules/$KVER/modules.dep" ]]; then
        depmod "$KVER"
    fi
}

# virtme-ng in a virtualenv. Sets VNG.
install_vng() {
    VNG="$VM_DIR/venv/bin/vng"
    if [[ -x "$VNG" ]] && "$VM_DIR/venv/bin/python" -m pip show virtme-ng 2>/dev/null |
        grep -x "Version: $VNG_VERSION" >/dev/null; then
        return 0
    fi
    log "virtme-ng $VNG_VERSION into $VM_DIR/venv"
    rm -rf -- "$VM_DIR/venv"
    mkdir -p "$VM_DIR"
    python3 -m venv "$VM_DIR/venv"
    "$VM_DIR/venv/bin/python" -m pip install --quiet --disable-pip-version-check "virtme-ng==$VNG_VERSION"
    [[ -x "$VNG" ]] || die "virtme-ng installed no vng launcher"
}

install_apt_pkgs
install_kernel
install_vng
log "kernel $KVER ($VMLINUZ), $("$VNG" --version 2>&1 | head -n1), $(qemu-system-x86_64 --version | head -n1)"
if ((install_only)); then
    log "installed; wall time: $((SECONDS - START)) s"
    exit 0
fi

[[ -x "$VM_CRIU" ]] || die "no CRIU at $VM_CRIU (bash scripts/install-criu.sh installs it)"
if [[ -z "$VM_MEMORY" ]]; then
    if ((bench)); then VM_MEMORY=4G; else VM_MEMORY=2G; fi
fi

# --- 2. build the guest tests on the host -------------------------------------

if ((bench)); then
    log "building ckptctl for the guest benchmark"
    cargo build --locked --bin ckptctl
    BINS=()
else
    log "building the guest tests (cargo feature guest-tests)"
    mapfile -t BINS < <(
        cargo test --locked --features guest-tests --no-run --message-format=json --test 'guest_*' |
            python3 -c 'import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target") or {}
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in t.get("kind", []) \
            and t.get("name", "").startswith("guest_"):
        print(m["executable"])'
    )
    ((${#BINS[@]} > 0)) || die "no guest test binary was built (tests/guest_*.rs)"
    log "guest test binaries: ${BINS[*]##*/}"
fi

# --- 3. run them in the guest ---------------------------------------------------

RES="$(mktemp -d /tmp/ckptctl-vm-results.XXXXXX)"
chmod 0700 "$RES"
if [[ "${CKPTCTL_VM_KEEP:-0}" != "1" ]]; then
    trap 'rm -rf -- "$RES"' EXIT
fi

# The script the guest runs. Its images and work directories live on the
# guest's /tmp (9p cannot hold the unix sockets CRIU's lazy-pages daemon
# needs); only the verdict and logs go to $RES (the --rwdir).
{
    printf '#!/bin/bash\n'
    printf 'RES=%q\n' "$RES"
    printf 'ROOT=%q\n' "$ROOT"
    printf 'REQUIRE=%q\n' "$REQUIRE"
    printf 'export CKPTCTL_CRIU=%q\n' "$VM_CRIU"
    printf 'BINS=(%s)\n' "$(printf '%q ' "${BINS[@]}")"
    printf 'ARGS=(%s)\n' "$(printf '%q ' "${test_args[@]}")"
    printf 'BENCH=%q\n' "$bench"
    cat <<'GUEST'
# The console fd (and any other inherited fd) must not reach a workload:
# CRIU cannot dump it. Keep stdio on a log file in the results directory.
for fd in /proc/self/fd/*; do
    fd="${fd##*/}"
    [[ "$fd" -gt 2 ]] && eval "exec $fd>&-" 2>/dev/null
done
exec </dev/null >>"$RES/guest.log" 2>&1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1 CARGO_TERM_COLOR=never
[[ -n "$REQUIRE" ]] && export CKPTCTL_TEST_REQUIRE_CRIU="$REQUIRE"
echo "guest: kernel $(uname -r), criu $("$CKPTCTL_CRIU" --version | head -n1)"
for f in mem_dirty_track uffd-noncoop; do
    echo "guest: criu check --feature $f: $("$CKPTCTL_CRIU" check --feature "$f" 2>&1 | tail -n1)"
done
mount | grep -E ' on /(tmp)? ' || true
cd "$ROOT" || exit 1
# The tests run ckptctl hundreds of times, and the host's files reach the
# guest over 9p without a page cache: each exec would read the 100 MB debug
# binary again. Read it once into the guest's tmpfs and bind it over its path.
if [[ -x target/debug/ckptctl ]] && mkdir -p /tmp/ckptctl-bin &&
    cp target/debug/ckptctl /tmp/ckptctl-bin/ckptctl &&
    mount --bind /tmp/ckptctl-bin/ckptctl target/debug/ckptctl; then
    echo "guest: target/debug/ckptctl served from the guest's tmpfs"
fi
if [[ "$BENCH" == 1 ]]; then
    CKPTCTL="$ROOT/target/debug/ckptctl" python3 "$ROOT/scripts/bench/guest_migrate.py" 2>&1 | tee -a "$RES/bench.log"
    echo "${PIPESTATUS[0]}" >"$RES/verdict"
    exit 0
fi
rc=0
for bin in "${BINS[@]}"; do
    echo "==> ${bin##*/}"
    "$bin" --test-threads=1 "${ARGS[@]}" 2>&1 | tee -a "$RES/tests.log"
    r=${PIPESTATUS[0]}
    echo "==> ${bin##*/}: exit $r"
    [[ $r -eq 0 ]] || rc=1
done
echo "$rc" >"$RES/verdict"
GUEST
} >"$RES/guest.sh"
chmod 0755 "$RES/guest.sh"

log "booting the guest (kernel $KVER, TCG, ${VM_MEMORY} memory, ${VM_CPUS} CPUs, timeout ${VM_TIMEOUT} s)"
boot_start=$SECONDS
set +e
PATH="$VM_DIR/venv/bin:$PATH" timeout --kill-after=30 "$VM_TIMEOUT" "$VNG" --run "$VMLINUZ" --disable-kvm \
    --memory "$VM_MEMORY" --cpus "$VM_CPUS" --verbose --rwdir "$RES" \
    --exec "$RES/guest.sh" </dev/null >"$RES/console.log" 2>&1
vng_rc=$?
set -e
log "guest ran for $((SECONDS - boot_start)) s (launcher exit $vng_rc)"

if [[ -s "$RES/guest.log" ]]; then
    echo "---------------------------------------- guest log"
    cat "$RES/guest.log"
    echo "----------------------------------------"
fi

verdict="$(cat "$RES/verdict" 2>/dev/null || true)"
if ((bench)) && [[ -n "$verdict" ]]; then
    log "wall time: $((SECONDS - START)) s"
    [[ "$verdict" == "0" ]] || die "the guest benchmark ran nothing"
    exit 0
fi
if [[ -z "$verdict" ]]; then
    echo "---------------------------------------- console (last 60 lines)"
    tail -n 60 "$RES/console.log" || true
    echo "----------------------------------------"
    ((vng_rc == 124)) && log "the guest run timed out after $VM_TIMEOUT s"
    die "the guest left no verdict (it did not boot, or the run did not finish)"
fi

# Totals over every "test result:" line the guest's test binaries printed.
read -r passed failed skipped < <(awk '
    /^test result: / {
        for (i = 1; i <= NF; i++) {
            if ($i ~ /^passed;?$/)  p += $(i - 1)
            if ($i ~ /^failed;?$/)  f += $(i - 1)
            if ($i ~ /^ignored;?$/) s += $(i - 1)
        }
    }
    END { printf "%d %d %d\n", p, f, s }
' "$RES/tests.log" 2>/dev/null || echo "0 0 0")
# A test that skipped at run time says so on a line starting "skipped:".
runtime_skips="$(grep -c '^skipped:' "$RES/tests.log" 2>/dev/null || true)"
skipped=$((skipped + ${runtime_skips:-0}))

status=0
[[ "$verdict" == "0" ]] || status=1
if ((passed == 0)); then
    log "no guest test ran"
    status=1
fi
if [[ -n "$REQUIRE" ]] && ((skipped > 0)); then
    log "CKPTCTL_TEST_REQUIRE_CRIU is set and $skipped guest test(s) skipped"
    status=1
fi
log "wall time: $((SECONDS - START)) s"
echo "guest-tests: $passed passed, $failed failed, $skipped skipped"
exit "$status"
