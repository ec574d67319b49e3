#!/usr/bin/env bash
# The asv suite over a range of commits, on this machine, then asv's HTML report.
#
#   tools/asv_history.sh [RANGE] [asv run options...]
#
# RANGE is a git range (default HEAD~10..HEAD); e.g. "v0.1.0..main", or
# "HEAD~50..HEAD --steps 10" for every fifth commit. Each commit is built in its
# own virtualenv (benchmarks/asv.conf.json) and measured; results go to
# benchmarks/results/<machine>/, commits already measured are skipped
# (--skip-existing-commits). Then `asv publish` writes benchmarks/html/: open
# benchmarks/html/index.html in a browser (or run `asv preview` in benchmarks/).
# Only ratios between commits measured on one machine mean anything
# (docs/performance.md, "Performance history").
set -euo pipefail
cd "$(dirname "$0")/../benchmarks"
range=${1:-HEAD~10..HEAD}
shift || true
asv machine --yes >/dev/null                # this machine's description, asked once
asv run "$range" --skip-existing-commits --show-stderr "$@" || status=$?
# asv exits 2 when a benchmark failed on some commit (e.g. one older than the
# benchmark): still publish what was measured, then say so
asv publish
echo "report: $(pwd)/html/index.html"
exit "${status:-0}"
