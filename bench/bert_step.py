"""The torch side of `bench/examples/bert_step.rs`: a `peft demo` training step, part by part.

    bert_step.py MODEL_DIR [ROUNDS]

LoRA r 8 alpha 16 on MiniLM-L6 `query`/`value` with a fresh 3-way classifier (Hugging Face PEFT),
AdamW lr 2e-3, on the same synthetic batch as the Rust example (16 rows padded to 48), 2 threads.
Prints medians in ms of forward to the loss, backward, the AdamW update and the whole step, with
dropout 0.1 everywhere and with all dropout off, and one layer's attention / feed-forward blocks.
"""

import statistics
import sys
import time

import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import BertForSequenceClassification

torch.set_num_threads(2)
BATCH, SEQ = 16, 48


def batch():
    ids = torch.zeros(BATCH, SEQ, dtype=torch.long)
    mask = torch.zeros(BATCH, SEQ, dtype=torch.long)
    for i in range(BATCH):
        n = 20 + (7 * i) % 29
        for t in range(n):
            ids[i, t] = 1000 + (7 * i + 13 * t) % 20000
        mask[i, :n] = 1
    return ids, mask, torch.tensor([i % 3 for i in range(BATCH)])


def build(model_dir, p):
    base = BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=3, hidden_dropout_prob=p, attention_probs_dropout_prob=p,
        attn_implementation="eager")
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=p, target_modules=["query", "value"],
                      task_type=TaskType.SEQ_CLS)
    model = get_peft_model(base, lora)
    model.train()
    return model


def steps(model, rounds):
    ids, mask, labels = batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3, weight_decay=0.01)
    laps = [[], [], [], []]
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.item()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        t3 = time.perf_counter()
        if r > 0:
            for lap, d in zip(laps, [t1 - t0, t2 - t1, t3 - t2, t3 - t0]):
                lap.append(d * 1e3)
    return [statistics.median(l) for l in laps]


def blocks(model, rounds):
    layer = model.base_model.model.bert.encoder.layer[0]
    x = torch.randn(BATCH, SEQ, 384, requires_grad=True)
    _, mask, _ = batch()
    add = ((1 - mask.float()) * -1e4).reshape(BATCH, 1, 1, SEQ)
    att, ffn = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        layer.attention(x, attention_mask=add)[0].sum().backward()
        att.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        layer.output(layer.intermediate(x), x).sum().backward()
        ffn.append((time.perf_counter() - t) * 1e3)
    return statistics.median(att), statistics.median(ffn)


def main():
    model_dir = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    print(f"{'ms (median)':<22} {'forward':>8} {'backward':>8} {'grads':>8} {'adamw':>8} {'step':>8}")
    for name, p in [("dropout 0.1", 0.1), ("dropout 0", 0.0)]:
        torch.manual_seed(0)
        model = build(model_dir, p)
        att, ffn = blocks(model, rounds)
        f, b, o, s = steps(model, rounds)
        print(f"{name:<22} {f:>8.1f} {b:>8.1f} {'-':>8} {o:>8.1f} {s:>8.1f}")
        print(f"  layer 0 fwd+bwd: attention {att:.1f}, feed-forward {ffn:.1f}")


if __name__ == "__main__":
    main()
