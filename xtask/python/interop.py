"""The Python half of `cargo xtask interop`: load adapters written by the Rust crates with the
Python PEFT library and compare outputs with what Rust computed.

usage: interop.py FIXTURES_DIR RUST_OUT_DIR
"""
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from huggingface_hub import ModelCard
from peft import PeftModel
from safetensors.torch import load_file

TOL = 1e-4


def main() -> int:
    fixtures, out = Path(sys.argv[1]), Path(sys.argv[2])
    failures = 0
    cases = sorted(p for p in out.iterdir() if (p / "adapter").is_dir())
    if not cases:
        print(f"no Rust-written adapters under {out}")
        return 1
    for case_dir in cases:
        meta = json.loads((fixtures / "cases" / case_dir.name / "case.json").read_text())
        model_cls = getattr(transformers, meta["model_class"])
        # LoRA cases name the model folder (`llama`), prompt-method cases its path (`models/llama`).
        model_dir = fixtures / meta["model"] if meta["model"].startswith("models/") else fixtures / "models" / meta["model"]
        base = model_cls.from_pretrained(model_dir, attn_implementation="eager")
        model = PeftModel.from_pretrained(base, case_dir / "adapter").eval()
        rust = load_file(case_dir / "outputs.safetensors")
        with torch.no_grad():
            if "pixel_values" in rust:  # vision cases (AdaLoRA on ViT's patch embedding)
                out_py = model(pixel_values=rust["pixel_values"])
            elif "labels" in rust:  # seq2seq: the decoder reads the labels shifted right
                out_py = model(input_ids=rust["input_ids"], attention_mask=rust["attention_mask"], labels=rust["labels"])
            else:
                out_py = model(input_ids=rust["input_ids"], attention_mask=rust["attention_mask"])
        got = out_py.logits if hasattr(out_py, "logits") else out_py.last_hidden_state
        want = rust["adapted"]
        if "labels" in rust:
            pass  # seq2seq logits cover the decoder positions, all compared
        elif got.dim() == 3 and "logits_mask" in rust:  # prompt methods: virtual positions in front
            keep = rust["logits_mask"].bool()
            got, want = got[keep], want[keep]
        elif got.dim() == 3 and "attention_mask" in rust:  # compare real tokens only
            keep = rust["attention_mask"].bool()
            got, want = got[keep], want[keep]
        diff = (got - want).abs().max().item()
        card = card_problem(model, case_dir / "adapter")
        status = f"CARD: {card}" if card else "ok" if diff < TOL else "MISMATCH"
        failures += status != "ok"
        print(f"{case_dir.name:32s} max abs diff {diff:.2e}  {status}")
    print(f"{len(cases) - failures} passed, {failures} failed")
    return 1 if failures else 0


def card_problem(model, adapter: Path) -> str:
    """What is wrong with the README.md model card Rust wrote beside the adapter ('' if nothing):
    the Hub's parser must read its metadata, and the Python library must update it in place."""
    path = adapter / "README.md"
    if not path.is_file():
        return "no README.md"
    data = ModelCard.load(path).data
    if data.library_name != "peft":
        return f"library_name is {data.library_name!r}"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(path, Path(tmp) / "README.md")
        model.save_pretrained(tmp)
        updated = (Path(tmp) / "README.md").read_text()
    if "Written by the Rust peft crate" not in updated or "- PEFT " not in updated:
        return "the Python library did not keep and update the card"
    return ""


if __name__ == "__main__":
    sys.exit(main())
