#!/usr/bin/env bash
# Builds the fuzz targets once, then runs each for SECONDS (default 30) on its
# committed seeds plus the local corpus (fuzz/corpus/<target>, not committed).
# Fails on the first crash; the input is left in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS]
#
# Stable toolchain, no sanitizer (the dm crate has no unsafe code). With
# AddressSanitizer: SANITIZER=address RUSTC_BOOTSTRAP=1 fuzz/run.sh
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
sanitizer="${SANITIZER:-none}"
targets=(xml wbxml notification acl uri delegation)

cargo fuzz build -s "$sanitizer"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "== $t: ${seconds}s"
    cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1
done
echo "all ${#targets[@]} targets ran ${seconds}s each without a crash"
