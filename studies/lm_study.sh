#!/usr/bin/env bash
# The language-model study behind docs/results.md, "Language models": every run of the lm-study
# preset, two at a time, in an order that makes the main comparison first.
#
#   studies/lm_study.sh [STEP ...]       (no step: every step, in the order below)
#
# Each step is one `lstsd compare` of two runs (one thread each on 2 cores, ~40 min); finished runs
# are reused and an interrupted one resumes, so running a step again only makes what is missing.
# The whole preset at once is `lstsd compare --preset lm-study --jobs 2` (arm by arm instead).
# Environment: LSTSD (the CLI, default .venv/bin/lstsd), JOBS (default 2), OUT (default
# runs/compare-lm-study), EXTRA (more `--set` values for every run), KEEP (the `keep` step's folder).
set -euo pipefail
cd "$(dirname "$0")/.."
LSTSD=${LSTSD:-.venv/bin/lstsd}
JOBS=${JOBS:-2}
OUT=${OUT:-runs/compare-lm-study}
EXTRA=${EXTRA:-}

compare() { "$LSTSD" compare --preset lm-study --jobs "$JOBS" --out "$OUT" --methods "$1" --seeds "$2" \
              ${EXTRA:+--set $EXTRA}; }

# A finished run's results are three small files (config.yaml, metrics.jsonl, results.json: a few KB);
# its checkpoints are 3.2 GB. `keep` copies the small ones to KEEP (default studies/results/lm-study),
# where they are committed: `lstsd report studies/results/lm-study --against vanilla` makes the tables
# again without the runs.
KEEP=${KEEP:-studies/results/lm-study}
keep() {
  local run
  for run in "$OUT"/*/; do
    [ -f "$run/results.json" ] || continue
    mkdir -p "$KEEP/$(basename "$run")"
    cp "$run"/config.yaml "$run"/metrics.jsonl "$run"/results.json "$KEEP/$(basename "$run")/"
  done
  echo "kept $(ls "$KEEP" | wc -l) runs' results in $KEEP"
}

step() {
  case "$1" in
    main-01)      compare vanilla,lstsd 0,1 ;;             # the question: seeds 0 and 1
    topk-ls-0)    compare lstsd-topk,label_smoothing 0 ;;  # the amendment's arm, the control
    main-2)       compare vanilla,lstsd 2 ;;
    weights-0)    compare lstsd-quarter,lstsd-rampup 0 ;;
    weights-1)    compare lstsd-quarter,lstsd-rampup 1 ;;
    weights-2)    compare lstsd-quarter,lstsd-rampup 2 ;;
    ls-12)        compare label_smoothing 1,2 ;;
    topk-12)      compare lstsd-topk 1,2 ;;
    pretrained-01) compare lstsd-pretrained 0,1 ;;         # item 4: the pretrained long-term teacher (ours)
    pretrained-2) compare lstsd-pretrained 2 ;;
    report)       "$LSTSD" report "$OUT" --against vanilla ;;
    keep)         keep ;;                                  # the finished runs' small files, to commit
    *) echo "unknown step $1 (steps: main-01 topk-ls-0 main-2 weights-0 weights-1 weights-2 ls-12 topk-12 pretrained-01 pretrained-2 report keep)" >&2
       exit 2 ;;
  esac
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(main-01 topk-ls-0 main-2 weights-0 weights-1 weights-2 ls-12 topk-12 pretrained-01 pretrained-2 report keep)
for s in "${steps[@]}"; do
  echo "== lm study: step $s ($(date -u +%H:%M))"
  step "$s"
done
