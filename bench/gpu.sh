#!/usr/bin/env bash
# One command for a lent GPU machine (one H100/H200 class GPU, no internet, an 8-minute slot),
# from the repository root:
#
#     bash bench/gpu.sh             # on the GPU: about 6 minutes, never more than MLMKIT_GPU_BUDGET_S (450)
#     bash bench/gpu.sh --dry-run   # the same steps on a CPU with tiny shapes (under a minute; also MLMKIT_GPU_DRY_RUN=1)
#
# (a) picks a Python with torch (MLMKIT_GPU_PYTHON, ./.venv, python3), or makes a venv and installs
#     torch only when none has it; mlmkit runs from src/ (nothing installed); other missing modules
#     are pip-installed beside it when the network allows, else those parts report the failure;
# (b) mlmkit vs transformers' Trainer, tokens/s at base size (BERT-base, sequence 512, bf16) on the
#     same data, compile off and on (bench/throughput.py with GPU settings, one process per part);
# (c) a one-GPU FSDP smoke: torchrun --nproc-per-node 1 -m mlmkit train --strategy fsdp, the
#     bert-base-gpu preset for a few steps with gradient checkpointing, checkpoints checked sharded;
# (d) one markdown table (bench/gpu_report.py), also written to $RESULTS/table.md.
#
# Each part has its own time box inside the whole budget; a part that fails or runs out of time
# is a row saying so, and the other rows still come. Nothing here is needed by the tests.
# Results: MLMKIT_GPU_RESULTS (default .cache/gpu-bench/<time>, git-ignored), one log per part.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DRY=${MLMKIT_GPU_DRY_RUN:-0}
[[ "${1:-}" == "--dry-run" ]] && DRY=1
BUDGET=${MLMKIT_GPU_BUDGET_S:-450}  # the slot is 8 minutes; this leaves room for start-up and copies
RESULTS=${MLMKIT_GPU_RESULTS:-$ROOT/.cache/gpu-bench/$(date +%Y%m%d-%H%M%S)}
T0=$SECONDS
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 MLMKIT_CACHE="$RESULTS/cache"

# ---------------------------------------------------------------------------- (a) Python, torch
has_torch() {  # $1 imports torch (and, unless a dry run, sees a CUDA GPU)
    "$1" -c "import sys, torch; sys.exit(0 if $DRY or torch.cuda.is_available() else 1)" 2>/dev/null
}
PY="" CPU_TORCH=""
for cand in "${MLMKIT_GPU_PYTHON:-}" "$ROOT/.venv/bin/python" "$ROOT/.cache/gpu-bench/venv/bin/python" python3; do
    [[ -n "$cand" ]] && command -v "$cand" >/dev/null || continue
    if has_torch "$cand"; then PY=$cand; break; fi
    [[ -z "$CPU_TORCH" ]] && "$cand" -c "import torch" 2>/dev/null && CPU_TORCH=$cand
done
if [[ -z "$PY" && -n "$CPU_TORCH" ]]; then  # torch is here, the GPU is not: installing would not help
    echo "torch ($CPU_TORCH) sees no CUDA GPU: nothing to measure (bash bench/gpu.sh --dry-run runs the same steps on the CPU)"
    exit 1
fi
if [[ -z "$PY" ]]; then  # no Python with torch: a venv, torch installed into it (needs the network)
    echo "no Python with torch; making .cache/gpu-bench/venv and installing torch into it"
    python3 -m venv --system-site-packages "$ROOT/.cache/gpu-bench/venv"
    PY="$ROOT/.cache/gpu-bench/venv/bin/python"
    "$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q torch
    has_torch "$PY" || { echo "torch cannot reach a GPU here: nothing to measure (try --dry-run)"; exit 1; }
fi
mkdir -p "$RESULTS"
# What mlmkit and the Trainer import; a missing one is installed beside src/ if pip can reach an index.
DEPS="$ROOT/.cache/gpu-bench/deps"
export PYTHONPATH="$ROOT/src:$DEPS${PYTHONPATH:+:$PYTHONPATH}"
missing=$("$PY" - <<'EOF'
import importlib.util
need = {"transformers": "transformers", "tokenizers": "tokenizers", "safetensors": "safetensors",
        "yaml": "PyYAML", "typer": "typer", "click": "click", "rich": "rich", "tqdm": "tqdm", "numpy": "numpy",
        "pyarrow": "pyarrow", "huggingface_hub": "huggingface_hub", "accelerate": "accelerate", "psutil": "psutil"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
EOF
)
if [[ -n "$missing" ]]; then
    echo "installing into $DEPS: $missing"
    timeout 120 "$PY" -m pip install -q --no-deps --target "$DEPS" --retries 1 --timeout 10 $missing \
        || echo "could not install $missing (no network?): the parts that need them will fail"
fi
"$PY" - <<'EOF' | tee "$RESULTS/machine.txt"
import platform, torch, transformers
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU (dry run)"
print(f"{gpu}; torch {torch.__version__}; transformers {transformers.__version__}; python {platform.python_version()}")
EOF

# ---------------------------------------------------------------------------- the parts' settings
SAMPLE="$ROOT/src/mlmkit/samples/english.txt"
if ((DRY)); then
    THROUGHPUT=(--device cpu --precision bf16 --size tiny --seq 64 --batch 4 --rounds 1 --steps 2 --warmup 1
                --threads 2 --max-records 300)
    FSDP=(--max-steps 2 --set model.size=tiny --set data.max_length=64 --set train.batch_size=4
          --set tokenizer.vocab_size=1000 --set data.max_samples=300 --set train.data_workers=0
          --set train.save_every=1 --set train.eval_every=2 --set data.max_eval_samples=8)
    # A dry run checks the code paths, not inductor: compiling even a tiny model takes minutes on a
    # small CPU, so torch.compile is a no-op there (the GPU run compiles for real).
    COMPILE_ENV=(env TORCHDYNAMO_DISABLE=1)
    CAP_EAGER=60 CAP_FSDP=60 CAP_COMPILE=60
else
    THROUGHPUT=(--device cuda --precision bf16 --size base --seq 512 --batch 64 --rounds 1 --steps 30 --warmup 5
                --threads 8)
    FSDP=(--max-steps 6 --set train.save_every=3 --set train.eval_every=6 --set data.max_eval_samples=64)
    COMPILE_ENV=()
    CAP_EAGER=150 CAP_FSDP=120 CAP_COMPILE=200
fi
RESERVE=10  # kept for the table

run_part() {  # name cap command...: run with a time box; the status file holds rc, seconds, limit
    local name=$1 cap=$2
    shift 2
    local left=$((BUDGET - (SECONDS - T0) - RESERVE))
    local limit=$((cap < left ? cap : left))
    if ((limit < 20)); then
        echo "== $name: skipped (the budget is spent)"
        echo "skipped 0 0" >"$RESULTS/$name.status"
        return
    fi
    echo "== $name (at most ${limit}s)"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
    local rc=$?
    echo "$rc $((SECONDS - start)) $limit" >"$RESULTS/$name.status"
    tail -n 4 "$RESULTS/$name.log" | sed 's/^/   /'
}

# ---------------------------------------------------------------------------- (b) + (c)
cd "$ROOT/bench"  # throughput.py imports common.py from here
run_part eager "$CAP_EAGER" "$PY" throughput.py "${THROUGHPUT[@]}" --sample-data --variants mlmkit,trainer \
    --out "$RESULTS/eager.json"
cd "$ROOT"
run_part fsdp "$CAP_FSDP" "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m mlmkit train \
    --preset bert-base-gpu --data "$SAMPLE" --output "$RESULTS/fsdp-run" --overwrite --strategy fsdp \
    --set train.compile=false --set train.gradient_checkpointing=true --set train.log_every=1 \
    --set train.progress=false "${FSDP[@]}"
cd "$ROOT/bench"
run_part mlmkit_compile "$CAP_COMPILE" ${COMPILE_ENV[@]+"${COMPILE_ENV[@]}"} "$PY" throughput.py "${THROUGHPUT[@]}" --sample-data \
    --variants mlmkit_compile --out "$RESULTS/mlmkit_compile.json"
run_part trainer_compile "$CAP_COMPILE" ${COMPILE_ENV[@]+"${COMPILE_ENV[@]}"} "$PY" throughput.py "${THROUGHPUT[@]}" --sample-data \
    --variants trainer_compile --out "$RESULTS/trainer_compile.json"
cd "$ROOT"

# ---------------------------------------------------------------------------- (d) the table
echo
"$PY" bench/gpu_report.py "$RESULTS" $( ((DRY)) && echo --dry-run) | tee "$RESULTS/table.md"
echo
echo "logs and results: $RESULTS ($((SECONDS - T0))s in all)"
