#!/usr/bin/env bash
# The fine-tuned families on a GPU (--device cuda), one bounded run: GitHub issues (react, vscode,
# 300 -> 300, SetFit and transformer, 3 seeds), BANKING77 topics and CLINC150 open_world through the
# production policy path (transformer), and the CLINC150 out-of-scope ceiling on the fine-tuned
# embeddings. Serving stays what ships: the int8 ONNX encoder on the CPU. Needs .gpu/ from
# benchmarks/gpu_prepare.sh. Writes JSON results and one log to $OUT (default /tmp/gpu-out).
#     bash benchmarks/gpu_finetune.sh [SECONDS_PER_LANE]       # e.g. 400 on the device, 60 for a CPU smoke test
set -u
OUT=${OUT:-/tmp/gpu-out}
LANE_S=${1:-400}
DEV=${DEVICE:-cuda}
SEEDS=${SEEDS:-1,2,3}
QUICK=${QUICK:-}     # non-empty: a smoke test (a few steps each)
mkdir -p "$OUT"
G=$PWD/.gpu
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/log.txt"; }
[ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$G"/whl/*.whl \
  >> "$OUT/log.txt" 2>&1 || { log "wheel install failed"; exit 1; }
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
       TOKENIZERS_PARALLELISM=false TRIAGE_DATASETS=$G/datasets TRIAGE_CACHE_DIR=/tmp/tt-cache MPLBACKEND=Agg
ENC=/tmp/minilm32
python3 - "$G/minilm16" "$ENC" <<'PYEOF' >> "$OUT/log.txt" 2>&1
import shutil, sys
from safetensors.torch import load_file, save_file
src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst, dirs_exist_ok=True)
save_file({k: v.float().contiguous() for k, v in load_file(f"{src}/model.safetensors").items()},
          f"{dst}/model.safetensors", metadata={"format": "pt"})
PYEOF
(nvidia-smi -L; nproc; python3 -c "import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__, torch.cuda.is_available())") >> "$OUT/log.txt" 2>&1
Q1=(); Q2=()
if [ -n "$QUICK" ]; then Q1=(--set max_steps=2 --set batch_size=4 --latency-rounds 1); Q2=(--set model.max_steps=2); fi
# lanes A1/A2: GitHub issues (react, vscode), both families, 3 seeds (+ int8 latency against the frozen encoder)
laneA() {
  TRIAGE_TORCH_THREADS=5 timeout "$LANE_S" python3 benchmarks/bench_finetune.py --families transformer,setfit \
    --repos "$1" --seeds "$SEEDS" --device "$DEV" --encoder "$ENC" --latency "${Q1[@]}" \
    --out "$OUT/finetune_gpu_$1.json" > "$OUT/lane_$1.txt" 2>&1
  log "lane A $1 (github issues) rc=$?"
}
# lane B: CLINC150 open_world policy, BANKING77 topics policy, CLINC150 out-of-scope ceiling
laneB() {
  local common=(--family transformer --set model.device="$DEV" --set model.pretrained="$ENC" --set model.epochs=4
                --set model.batch_size=32 --set model.max_train_minutes=2.5 "${Q2[@]}")
  TRIAGE_TORCH_THREADS=5 timeout $((LANE_S * 4 / 10)) python3 benchmarks/bench_policy.py "${common[@]}" --datasets clinc150 \
    --thresholds open_world --params "$G/params_transformer_open_world.json" --out "$OUT/policy_clinc150_gpu.json" > "$OUT/lane_b.txt" 2>&1
  log "lane B clinc150 open_world rc=$?"
  TRIAGE_TORCH_THREADS=5 timeout $((LANE_S * 35 / 100)) python3 benchmarks/bench_policy.py "${common[@]}" --datasets banking77 \
    --label-level tag --params "$G/params_transformer_default.json" --out "$OUT/policy_banking77_gpu.json" >> "$OUT/lane_b.txt" 2>&1
  log "lane B banking77 rc=$?"
  local q3=(); [ -n "$QUICK" ] && q3=(--set max_steps=2)
  TRIAGE_TORCH_THREADS=5 timeout $((LANE_S * 22 / 100)) python3 benchmarks/bench_ood.py --finetune transformer --device "$DEV" \
    --encoder "$ENC" --max-train-minutes 1.5 --set epochs=3 --set batch_size=32 "${q3[@]}" \
    --out "$OUT/ood_finetuned_gpu.json" >> "$OUT/lane_b.txt" 2>&1
  log "lane B ood rc=$?"
}
log "start (lane budget ${LANE_S}s, device $DEV)"
laneA react & A1=$!
laneA vscode & A2=$!
laneB & B=$!
wait $A1 $A2 $B
log "done"
(cd "$OUT" && tar czf lane_logs.tgz lane_*.txt && rm -f lane_*.txt)   # at most 8 files come back
