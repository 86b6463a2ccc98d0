#!/usr/bin/env bash
# Prepare .gpu/ (git-ignored) for benchmarks/gpu_finetune.sh on a GPU machine that has torch,
# transformers and sentence-transformers but no network and none of this project's other
# packages: the wheels it lacks, the three datasets, MiniLM with fp16 weights (45 MB, so that the
# tree that travels stays under 64 MiB; cast back to float32 there), and composed params
# (no Hydra there). Run from the repository root on the CPU machine:
#     bash benchmarks/gpu_prepare.sh [DATASETS_DIR]
set -euo pipefail
PY=${PYTHON:-python}
DATA=${1:-../shared/datasets}
G=.gpu
grep -qx "/.gpu" "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null || echo "/.gpu" >> "$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p $G/whl $G/datasets $G/minilm16
for n in setfit==1.2.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 evaluate==0.4.6 skops==0.16.0 \
         prettytable==3.18.0 wcwidth==0.7.0 sentence-transformers==6.2.0 hydra-core==1.3.8 omegaconf==2.3.1; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $G/whl "$n"
done
$PY -m pip wheel -q --no-deps -w $G/whl antlr4-python3-runtime==4.9.3   # sdist only: a pure-Python wheel
cp -r "$DATA"/banking77 "$DATA"/clinc150 "$DATA"/github-issues $G/datasets/
SRC=$($PY -c "from ticket_triage.models.encoder import default_encoder_path as d; print(d())")
for f in 1_Pooling config.json config_sentence_transformers.json modules.json sentence_bert_config.json \
         special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt; do cp -r "$SRC/$f" $G/minilm16/; done
$PY - "$SRC" "$G/minilm16" <<'PYEOF'
import sys
from safetensors.torch import load_file, save_file
d = load_file(f"{sys.argv[1]}/model.safetensors")
save_file({k: v.half().contiguous() for k, v in d.items()}, f"{sys.argv[2]}/model.safetensors", metadata={"format": "pt"})
PYEOF
$PY - <<'PYEOF'
import json
from ticket_triage.config import compose
for th in ("default", "open_world"):
    p = compose(["model=transformer", f"thresholds={th}"])
    json.dump(p, open(f".gpu/params_transformer_{th}.json", "w"), indent=1, default=str)
PYEOF
du -sh $G
