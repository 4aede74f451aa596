#!/usr/bin/env bash
# The benchmarks on the real model, Gemma 3 270M on the CPU (README, "A real model on a CPU"): each comparison is
# measured side by side in one run of its script; the rows (bench/_rows.py) go to OUT, one JSON file per script.
# Small sizes (minutes on a shared 2-core machine); each script takes more items and repeats.
#   bash bench/real_model.sh [OUT]        # default: bench/results/gemma-3-270m-cpu
set -euo pipefail
OUT=${1:-bench/results/gemma-3-270m-cpu}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
"$PY" bench/bench_cli_eval.py --model gemma-3-270m --tasks sentiment_aligned:en,mgsm_aligned:en --limit 16 \
  --max-gen-toks 32 --batch-size 8 --repeats 2 --json "$OUT/cli_eval.json"
"$PY" bench/bench_paper_cost.py --model gemma-3-270m --lang en --limit 5 --batch-size 8 --repeats 1 \
  --json "$OUT/paper_cost.json"
"$PY" bench/bench_train.py --model gemma-3-270m --steps 2 --batch 4 --max-length 128 --repeats 2 \
  --json "$OUT/train.json"
