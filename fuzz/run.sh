#!/usr/bin/env bash
# Fuzz every minipay target for a while: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60. Works from any directory (e.g. the repository root).
# The committed seeds (fuzz/seeds/<target>) are read; new inputs go to fuzz/corpus/<target>
# and crashes to fuzz/artifacts/<target>. Exits non-zero if any target crashes.
# cargo-fuzz needs -Z flags; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them.
set -euo pipefail

secs="${1:-60}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
shift $(( $# > 0 ? 1 : 0 ))

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$fuzz_dir"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# Build everything first so build time does not count against the fuzzing time.
for target in "${targets[@]}"; do
    cargo fuzz build "$target"
done

mkdir -p logs
summary=()
failed=0
for target in "${targets[@]}"; do
    corpus="$fuzz_dir/corpus/$target"
    seeds="$fuzz_dir/seeds/$target"
    log="$fuzz_dir/logs/$target.log"
    mkdir -p "$corpus" "$seeds"
    echo "== fuzzing $target for ${secs}s (log: $log)" >&2
    start=$(date +%s)
    status=0
    cargo fuzz run "$target" "$corpus" "$seeds" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    done_line=$(grep -a -E '^Done [0-9]+ runs' "$log" | tail -n 1 || true)
    if [ "$status" -eq 0 ] && [ -n "$done_line" ]; then
        runs=$(sed -E 's/^Done ([0-9]+) runs.*/\1/' <<<"$done_line")
        took=$(sed -E 's/.* in ([0-9]+) second.*/\1/' <<<"$done_line")
        files=$(find "$corpus" -type f | wc -l)
        summary+=("$target: ok, $runs runs in ${took}s, corpus $files files")
    else
        failed=1
        artifact=$(grep -a -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/Test unit written to //' || true)
        panic=$(grep -a -m 1 -A 1 'panicked at' "$log" | tr '\n' ' ' | cut -c 1-400 || true)
        [ -n "$panic" ] || panic=$(grep -a -m 1 -E '^(==[0-9]+== ?)?ERROR:' "$log" | cut -c 1-400 || true)
        summary+=("$target: CRASH after ${elapsed}s: ${panic:-see $log}${artifact:+ [input: $artifact]}")
        tail -n 40 "$log" >&2
    fi
done

echo
printf '%s\n' "${summary[@]}"
exit "$failed"
