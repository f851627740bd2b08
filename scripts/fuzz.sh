#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ and runs each for a bounded time, one after the other
# (coverage-guided, libFuzzer through libfuzzer-sys, on the stable toolchain: see
# docs/architecture.md, "Fuzzing"). Not run by CI.
#
#   bash scripts/fuzz.sh [seconds-per-target] [target...]
#
# The corpus grows in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>), and a crashing
# input is written to fuzz/artifacts/<target>/; replay one with
#   fuzz/target/x86_64-unknown-linux-gnu/release/<target> <file>
# Exits non-zero when a target crashed (CRASHED: its input is in fuzz/artifacts/<target>/) or
# did not run to its end (STOPPED by a signal, FAILED otherwise).
set -euo pipefail

secs="${1:-60}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

# Coverage instrumentation with stable rustc flags only (what `cargo fuzz` passes with
# `--sanitizer none`, without any -Z flag): libFuzzer's edge counters, the PC table its
# corpus reduction needs, and comparison tracing, which lets it find magic strings.
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
export CARGO_TARGET_DIR="$root/fuzz/target"
cargo build --release --locked --target "$triple" --bins

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^palabre-fuzz$')
fi

failed=0
for t in "${targets[@]}"; do
    bin="$CARGO_TARGET_DIR/$triple/release/$t"
    mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
    log="artifacts/$t/last-run.log"
    status=ok
    # -rss_limit_mb keeps a runaway allocation a finding rather than the machine's problem;
    # -max_len bounds inputs near the largest request a client may send in one JSON field.
    if ! "$bin" "corpus/$t" "seeds/$t" \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
        # A finding (crash, timeout, out of memory) leaves its input behind; a signal from
        # outside does not.
        if grep -q 'Test unit written to' "$log"; then
            status=CRASHED
        elif grep -q 'run interrupted' "$log"; then
            status=STOPPED
        else
            status=FAILED
        fi
        failed=1
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
    corpus="$(find "corpus/$t" -type f | wc -l)"
    printf '%-16s %-8s %12s runs in %ss  %s  corpus %s\n' "$t" "$status" "${runs:-?}" "$secs" "${cov:-}" "$corpus"
    if [ "$status" != ok ]; then
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -5 | sed 's/^/    /'
    fi
done
exit "$failed"
