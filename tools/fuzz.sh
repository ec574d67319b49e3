#!/usr/bin/env bash
# Coverage-guided fuzzing (atheris) of the model loader, of predict/run
# inputs and of the .tflite importer, SECONDS each (default 60), then a replay of every input the fuzzers
# kept, and of the committed regression inputs, under the ASan + UBSan build.
# A crash, a hang over 1 s, memory over 2 GiB or any exception other than a
# bnnrt error fails. New crashers are left in $out/crashes for tests/fuzz/regressions.
set -euo pipefail
seconds=${1:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
out=${BNNRT_FUZZ_DIR:-$(mktemp -d)}
mkdir -p "$out/corpus_load" "$out/corpus_predict" "$out/corpus_tflite" "$out/crashes"
python -m pip install -q atheris
cd "$src"
python tests/fuzz/make_seeds.py "$out/corpus_load"
cp tests/data/lce/*.tflite "$out/corpus_tflite/"
for target in load predict tflite; do
    echo "fuzzing $target for ${seconds}s"
    python tests/fuzz/fuzz_$target.py "$out/corpus_$target" -max_total_time="$seconds" -timeout=1 \
        -rss_limit_mb=2048 -artifact_prefix="$out/crashes/$target-" -print_final_stats=1 2>&1 \
        | grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|==|Traceback|.*Error)" || true
    if [ -n "$(ls "$out/crashes")" ]; then echo "fuzz_$target found: $(ls "$out/crashes")" >&2; exit 1; fi
done
# replay everything under the sanitizer build
BNNRT_REPLAY="python tests/fuzz/replay.py load $out/corpus_load $src/tests/fuzz/regressions/load && \
              python tests/fuzz/replay.py predict $out/corpus_predict && \
              python tests/fuzz/replay.py tflite $out/corpus_tflite" \
    bash "$src/tools/sanitize.sh" tests/test_fuzz_loader.py
