#!/usr/bin/env bash
# mlalign's GPU checks in one go, most valuable first, each step under its own timeout and writing its JSON into
# OUT as soon as it has it (a step cut short keeps what it wrote):
#   env.json             GPU, driver, package versions
#   qlora-7b.json        QLoRA speed/memory, Llama-2-7B shape at 1024 and 512: plain HF loop vs mlalign's trainer
#   qlora-1.5b.json      the same, Qwen2.5-1.5B shape at 1024            (bench/bench_qlora_gpu.py)
#   qlora-cudnn.json     7B shape at 1024: plain, mlalign and liger, each with cuDNN attention on and off
#                        (mlalign first: cuDNN caches graphs per process, see bench_qlora_gpu.py)
#   cli.json             every CUDA path of the CLI: train (killed, resumed), 4-bit eval/analyses, merge, run --recipe
#   eval-speed.json      mlalign eval vs lm_eval --model hf, same model/tasks/limit/batch  (bench/gpu_cli_check.py)
#   qlora-profile.json   where the time goes (torch.profiler): GPU busy fraction, kernel launches, top ops
#   logs.tgz             every step's full log;  summary.txt  the tables printed at the end
# Usage: bash bench/gpu_check.sh OUT            on a CUDA GPU: every step but qlora-profile
#        STEPS="cli eval-speed" bash bench/gpu_check.sh OUT    only those steps (qlora-profile only when named)
#        bash bench/gpu_check.sh OUT --smoke    the same steps on the CPU with tiny shapes
# On an H100 the default steps take more than the 10 minutes one device call may run: run them as two or three
# calls, e.g. STEPS="cli eval-speed", then STEPS="qlora-cudnn", then STEPS="qlora-7b qlora-1.5b".
# Needs MLALIGN_DATA_DIR and mlalign installed; bench/gpu_bundle.sh prepares both for an offline GPU machine:
#   here: MLALIGN_DATA_DIR=../shared/data bash bench/gpu_bundle.sh        (writes .gpu/, about 35 MB)
#   there (device tool, carry .gpu): bash bench/gpu_bundle.sh --install && export PYTHONPATH=/tmp/site \
#     PATH=/tmp/site/bin:$PATH MLALIGN_DATA_DIR=$PWD/.gpu/data && bash bench/gpu_check.sh $OUT
set -uo pipefail
out=$(mkdir -p "${1:?usage: bench/gpu_check.sh OUT [--smoke]}" && cd "$1" && pwd)
smoke=${2:-}
cd "$(dirname "$0")"
work=$(mktemp -d "${TMPDIR:-/tmp}/mlalign-gpu.XXXXXX")
logs="$work/logs"
mkdir -p "$logs"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MLALIGN_OFFLINE=1
py=${PYTHON:-python3}
ckpt=$work  # the random checkpoints: in memory where /dev/shm has room for a 7B one (13 GB)
if [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -n 1)" -gt 20000000 ] 2>/dev/null; then
  ckpt=$(mktemp -d /dev/shm/mlalign-ckpt.XXXXXX)
fi

step() {  # step NAME TIMEOUT_S COMMAND...: run it with its log in $logs, then say how it ended
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  case " ${STEPS:-qlora-7b qlora-1.5b cli eval-speed qlora-cudnn} env " in *" $name "*) ;; *) return ;; esac
  timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$logs/$name.log" 2>&1
  rc=$?
  echo "$name: rc=$rc in $((SECONDS - start)) s$([ "$rc" = 124 ] && echo " (timed out after $limit s)")" | tee -a "$out/summary.txt"
  tar -czf "$out/logs.tgz" -C "$work" logs $(cd "$work" && ls -d cli/logs 2>/dev/null) 2>/dev/null
}

if [ "$smoke" = --smoke ]; then
  dev=(--device cpu) shapes7=tiny-llama:64+32 shapes15=tiny-qwen2:64 steps=(--steps 1 --warmup 1) cli=(--smoke)
  t_q7=300 t_q15=120 t_cli=600 t_speed=300 t_prof=120 shapes_prof=tiny-qwen2:64 shapes_cudnn=tiny-llama:64 t_cudnn=300
else
  dev=() shapes7=llama2-7b:1024+512 shapes15=qwen2.5-1.5b:1024 steps=(--steps 3 --warmup 1) cli=()
  t_q7=260 t_q15=110 t_cli=330 t_speed=140 t_prof=150 shapes_prof=qwen2.5-1.5b:1024,llama2-7b:1024
  shapes_cudnn=llama2-7b:1024 t_cudnn=200
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee -a "$out/summary.txt"
fi

step env 60 "$py" - "$out/env.json" <<'EOF'
import json, platform, sys
from importlib.metadata import PackageNotFoundError, version
import torch
def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None
names = ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets", "lm_eval", "liger_kernel",
         "tokenizers", "huggingface_hub", "mlalign")
env = {"python": platform.python_version(), "cuda": torch.version.cuda,
       "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
       "versions": {n: v(n) for n in names}}
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(json.dumps(env))
EOF
cat "$out/env.json" >>"$out/summary.txt"

step qlora-7b "$t_q7" "$py" bench_qlora_gpu.py "${dev[@]}" --shapes "$shapes7" "${steps[@]}" \
  --checkpoint-dir "$ckpt" --json "$out/qlora-7b.json"
step qlora-1.5b "$t_q15" "$py" bench_qlora_gpu.py "${dev[@]}" --shapes "$shapes15" "${steps[@]}" \
  --checkpoint-dir "$ckpt" --json "$out/qlora-1.5b.json"
step cli "$t_cli" "$py" gpu_cli_check.py "${cli[@]}" --work "$work/cli" --json "$out/cli.json"
step eval-speed "$t_speed" "$py" gpu_cli_check.py "${cli[@]}" --section eval-speed --repeats 1 --work "$work/cli" \
  --json "$out/eval-speed.json"
step qlora-cudnn "$t_cudnn" "$py" bench_qlora_gpu.py "${dev[@]}" --shapes "$shapes_cudnn" "${steps[@]}" \
  --variants mlalign,plain,plain-no-cudnn,mlalign-cudnn,liger,liger-cudnn --checkpoint-dir "$ckpt" \
  --json "$out/qlora-cudnn.json"
step qlora-profile "$t_prof" "$py" bench_qlora_gpu.py "${dev[@]}" --shapes "$shapes_prof" --variants mlalign,mlalign-cudnn \
  --steps 1 --warmup 1 --profile --checkpoint-dir "$ckpt" --json "$out/qlora-profile.json"

for name in qlora-7b qlora-1.5b cli eval-speed qlora-cudnn; do  # the short tables, last in the output
  grep -E "^(shape|llama|qwen|tiny|[a-z0-9-]+ +rc=|[0-9]+ of)" "$logs/$name.log" 2>/dev/null | grep -v '^{' >>"$out/summary.txt"
done
tail -n 40 "$out/summary.txt"
rm -rf "$work" "$ckpt"
