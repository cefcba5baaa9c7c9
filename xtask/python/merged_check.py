"""The merge half of `cargo xtask interop`: transformers loads folders written by `peft merge`
and gives the outputs the Python library's merge_and_unload gave (the fixtures' `merged`).

usage: merged_check.py FIXTURES_DIR MERGED_DIR   (MERGED_DIR/<case> per case below)
"""
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file

TOL = 1e-4
CASES = {
    "llama_qv": "LlamaForCausalLM",
    "gpt2_lora": "GPT2LMHeadModel",
    "bert_seq_cls": "BertForSequenceClassification",
    "vit_qv": "ViTForImageClassification",
    "segformer_qv": "SegformerForSemanticSegmentation",
    "ia3_llama": "LlamaForCausalLM",
    "ia3_gpt2": "GPT2LMHeadModel",
}


def main() -> int:
    fixtures, merged = Path(sys.argv[1]), Path(sys.argv[2])
    transformers.logging.set_verbosity_error()
    failures = 0
    for case, cls in CASES.items():
        model = getattr(transformers, cls).from_pretrained(merged / case, dtype=torch.float32).eval()
        e = load_file(fixtures / "cases" / case / "expected.safetensors")
        with torch.no_grad():
            if "pixel_values" in e:
                out = model(pixel_values=e["pixel_values"]).logits
            else:
                out = model(input_ids=e["input_ids"], attention_mask=e.get("attention_mask")).logits
        diff = out - e["merged"]
        if "attention_mask" in e and diff.dim() == 3:
            diff = diff[e["attention_mask"].bool()]
        worst = diff.abs().max().item()
        ok = worst < TOL
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {case}: transformers loads the merged folder, max diff {worst:.1e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
