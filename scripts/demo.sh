#!/usr/bin/env bash
# Newcomer demo (as root): start a counter in its own pid namespace,
# checkpoint it with examples/demo/counter-checkpoint.toml, restore it with
# examples/demo/counter-restore.toml, and show that it kept counting.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CKPTCTL=${CKPTCTL:-target/release/ckptctl}
[[ -x "$CKPTCTL" ]] || cargo build --release --locked --quiet
state=$(mktemp -d /tmp/ckptctl-demo.XXXXXX)
counter="$state/counter"
cleanup() {
    [[ -n "${pid:-}" ]] && kill -9 "$pid" 2>/dev/null || true
    [[ -f /run/ckptctl-demo-counter.pid ]] && kill -9 "$(cat /run/ckptctl-demo-counter.pid)" 2>/dev/null || true
    rm -rf "$state"
}
trap cleanup EXIT

# The loop opens its counter file itself; stdio goes to /dev/null, so the
# tree has nothing open outside itself.
unshare --pid --fork setsid sh -c \
    "i=0; while :; do i=\$((i+1)); echo \$i > $counter.tmp; mv -f $counter.tmp $counter; sleep 0.1; done" \
    </dev/null >/dev/null 2>&1 &
launcher=$!
for _ in $(seq 100); do
    pid=$(cat "/proc/$launcher/task/$launcher/children" 2>/dev/null | awk '{print $1}')
    [[ -n "$pid" && -s "$counter" ]] && break
    sleep 0.05
done
echo "==> counter running as pid $pid (its own pid namespace); counting: $(cat "$counter")"
sleep 1
echo "==> counter: $(cat "$counter")"

echo "==> ckptctl apply examples/demo/counter-checkpoint.toml --pid $pid --force"
"$CKPTCTL" apply examples/demo/counter-checkpoint.toml --pid "$pid" --force
at_dump=$(cat "$counter")
sleep 1
echo "==> after the checkpoint the counter stands still at $(cat "$counter") (dumped at $at_dump)"
wait "$launcher" 2>/dev/null || true

echo "==> ckptctl apply examples/demo/counter-restore.toml"
"$CKPTCTL" apply examples/demo/counter-restore.toml
sleep 1.5
now=$(cat "$counter")
echo "==> restored as pid $(cat /run/ckptctl-demo-counter.pid); counter went on: $at_dump -> $now"
if (( now > at_dump )); then echo "OK: it kept counting"; else echo "FAILED: the counter did not move" >&2; exit 1; fi
