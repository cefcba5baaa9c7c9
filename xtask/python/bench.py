"""The Python reference side of `cargo xtask bench`, and the side-by-side table.

    bench.py RESULTS_DIR [--quick]

Runs the training-step workloads of the Rust benchmark (`bench/`, `peft-bench`) with transformers'
LlamaForCausalLM and Hugging Face PEFT on PyTorch (CPU, 2 threads), writes RESULTS_DIR/python.json,
then merges it with RESULTS_DIR/rust.json (written by `peft-bench` just before) into
RESULTS_DIR/TABLE.md.

The model sizes come from rust.json when it is there, so both sides always run the same workload;
without it the defaults below (the same as the Rust binary's) apply.

Each variant runs in its own child process (this script with `--variant NAME`), so that its peak
resident memory (VmHWM, reset after the model is built) is its own.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

THREADS = 2

# The Rust binary's sizes (bench/src/workload.rs); rust.json overrides them.
DEFAULTS = {
    False: dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8,
                num_key_value_heads=8, vocab_size=2048, batch=8, seq=64, rank=16, alpha=32.0, num_virtual_tokens=8,
                warmup=3, steps=20),
    True: dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=4, vocab_size=512, batch=4, seq=32, rank=16, alpha=32.0, num_virtual_tokens=8,
               warmup=2, steps=5),
}

VARIANTS = ["frozen", "peft_lora", "peft_dora", "torch_reparam_lora", "peft_prompt_tuning", "peft_prefix_tuning"]


# --------------------------------------------------------------------------------------------
# Memory, as the Rust side reads it.

def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak():
    """Resets VmHWM to the current RSS (Linux 4.0+); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mib(kb):
    return kb / 1024.0


# --------------------------------------------------------------------------------------------
# One variant, in a child process.

def build_model(w):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=w["vocab_size"],
        hidden_size=w["hidden_size"],
        intermediate_size=w["intermediate_size"],
        num_hidden_layers=w["num_hidden_layers"],
        num_attention_heads=w["num_attention_heads"],
        num_key_value_heads=w["num_key_value_heads"],
        max_position_embeddings=max(2 * w["seq"], 128),
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.train()
    return model, config


class Reparam:
    """`W + s * B A` as a weight parametrization: PyTorch's analogue of Burn's `apply_lora`."""

    @staticmethod
    def make(out_features, in_features, rank, scaling):
        import torch

        class LoraParametrization(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lora_A = torch.nn.Parameter(torch.randn(rank, in_features) / rank)
                self.lora_B = torch.nn.Parameter(torch.zeros(out_features, rank))

            def forward(self, weight):
                return weight + scaling * (self.lora_B @ self.lora_A)

        return LoraParametrization()


def make_trainer(name, w):
    """Builds the model for variant `name` and returns `(step, trainable_params)`; `step()` runs
    one training step and returns the loss (its `.item()` waits for the work)."""
    import torch

    model, _ = build_model(w)
    torch.manual_seed(1)
    ids = torch.randint(0, w["vocab_size"], (w["batch"], w["seq"]))

    if name == "frozen":
        model.requires_grad_(False)
        embed = model.get_input_embeddings()

        def step():
            # Gradients flow to the input embeddings only: every layer's activation gradients.
            embeds = embed(ids).detach().requires_grad_(True)
            loss = model(inputs_embeds=embeds, labels=ids).loss
            loss.backward()
            return loss.item()

        return step, 0
    if name in ("peft_lora", "peft_dora"):
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=w["rank"], lora_alpha=w["alpha"], lora_dropout=0.0, target_modules="all-linear",
                            use_dora=name == "peft_dora")
        model = get_peft_model(model, config)
    elif name in ("peft_prompt_tuning", "peft_prefix_tuning"):
        from peft import PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model

        kind = PromptTuningConfig if name == "peft_prompt_tuning" else PrefixTuningConfig
        model = get_peft_model(model, kind(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=w["num_virtual_tokens"]))
    elif name == "torch_reparam_lora":
        import torch.nn.utils.parametrize as parametrize

        model.requires_grad_(False)
        scaling = w["alpha"] / w["rank"]
        for module_name, module in list(model.named_modules()):
            if isinstance(module, torch.nn.Linear) and module_name.startswith("model.layers."):
                out_f, in_f = module.weight.shape
                parametrize.register_parametrization(module, "weight", Reparam.make(out_f, in_f, w["rank"], scaling))
    else:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, sum(p.numel() for p in params)


def summary(times):
    return dict(median_ms=statistics.median(times), min_ms=min(times), max_ms=max(times), samples_ms=times)


def run_variant(name, w):
    """One variant alone in this process: its step times and its peak memory."""
    import torch

    torch.set_num_threads(THREADS)
    step, trainable = make_trainer(name, w)
    base_kb = status_kb("VmRSS:")
    peak_reset = reset_peak()
    times, loss = [], float("nan")
    for i in range(w["warmup"] + w["steps"]):
        start = time.perf_counter()
        loss = step()
        elapsed = time.perf_counter() - start
        if i >= w["warmup"]:
            times.append(elapsed * 1e3)
    peak_kb = status_kb("VmHWM:")
    return dict(
        summary(times),
        rss_base_mb=mib(base_kb),
        peak_rss_mb=mib(peak_kb),
        peak_extra_mb=mib(peak_kb - base_kb) if peak_reset else None,
        peak_reset=peak_reset,
        trainable_params=trainable,
        loss=loss,
    )


def run_interleaved(w):
    """Every variant in this process, one step of each in turn, so that a busy machine slows them
    alike and their ratios stay fair."""
    import torch

    torch.set_num_threads(THREADS)
    steps = {name: make_trainer(name, w)[0] for name in VARIANTS}
    times = {name: [] for name in VARIANTS}
    for i in range(w["warmup"] + w["steps"]):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            elapsed = time.perf_counter() - start
            if i >= w["warmup"]:
                times[name].append(elapsed * 1e3)
    return {name: summary(t) for name, t in times.items()}


# --------------------------------------------------------------------------------------------
# The parent: every variant, python.json, TABLE.md.

def workload_for(results, quick):
    w = dict(DEFAULTS[quick])
    rust = load_json(os.path.join(results, "rust.json"))
    if rust and rust.get("quick") == quick and "workload" in rust:
        w.update({k: v for k, v in rust["workload"].items() if k in w})
    return w


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def child(args, w):
    cmd = [sys.executable, __file__, *args, "--workload", json.dumps(w)]
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    # OpenMP threads that spin while waiting lose their core to any other process on a shared
    # machine, and a step then takes 10-100x longer; passive waiting costs little when idle.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"`bench.py {' '.join(args)}` failed with exit status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_children(w):
    out = {}
    for name in VARIANTS:
        print(f"python bench: {name} ...", file=sys.stderr, flush=True)
        out[name] = child(["--variant", name], w)
        print(f"  median {out[name]['median_ms']:.1f} ms, peak +{fmt(out[name]['peak_extra_mb'], 1)} MB",
              file=sys.stderr, flush=True)
    print("python bench: all variants interleaved ...", file=sys.stderr, flush=True)
    for name, times in child(["--interleaved"], w).items():
        out[name]["interleaved"] = times
        print(f"  {name}: median {times['median_ms']:.1f} ms", file=sys.stderr, flush=True)
    return out


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return ""


def fmt(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def check(value, target, less_is_pass=True):
    if value is None:
        return ""
    return " ✓" if (value <= target if less_is_pass else value >= target) else " ✗"


def times(entry):
    """The interleaved timings of a variant (fair ratios), else its own-process ones."""
    if not entry:
        return None
    return entry.get("interleaved") or entry


def time_cell(t):
    return f"{fmt(t['median_ms'])} ({fmt(t['min_ms'])}–{fmt(t['max_ms'])})" if t else "–"


def table(rust, python, quick):
    import torch
    import transformers
    import peft

    w = (rust or {}).get("workload") or python["workload"]
    rv = (rust or {}).get("variants", {})
    pv = python["variants"]
    lines = [f"# peft benchmarks{' (quick)' if quick else ''}", ""]
    lines.append(f"- Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    lines.append(f"- Machine: {cpu_model()}, {os.cpu_count()} cores; both sides use {THREADS} threads."
                 f" Load average during the runs: Rust {(rust or {}).get('loadavg_start', '?')} →"
                 f" {(rust or {}).get('loadavg_end', '?')}, Python {python.get('loadavg_start', '?')} →"
                 f" {python.get('loadavg_end', '?')} (the machine is shared with other work)")
    lines.append(f"- Rust: Burn 0.22.1, `flex` CPU backend + autodiff, release build; Python"
                 f" {platform.python_version()}, torch {torch.__version__} (CPU,"
                 f" OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}), transformers"
                 f" {transformers.__version__}, peft {peft.__version__}")
    lines.append(
        f"- Workload: Llama, hidden {w['hidden_size']}, intermediate {w['intermediate_size']},"
        f" {w['num_hidden_layers']} layers, {w['num_attention_heads']} heads / {w['num_key_value_heads']} kv heads,"
        f" vocab {w['vocab_size']}, fp32; batch {w['batch']} x seq {w['seq']}; LoRA r {w['rank']}, alpha {w['alpha']},"
        f" all-linear (7 per layer), no dropout; prompt and prefix tuning {w.get('num_virtual_tokens', '?')} virtual"
        f" tokens; AdamW. {w['steps']} timed steps after {w['warmup']} warm-up steps.")
    lines.append("- **Step ms**: median (min–max), all variants in one process with their steps taken in turn, so that"
                 " other load slows them alike; **alone**: the median in the variant's own process.")
    lines.append("- **Peak MB**: peak RSS during the steps minus the RSS once the model is built and initialised"
                 " (activations, gradients, optimizer state), in the variant's own process.")
    lines.append("")
    lines.append("| variant | Rust step ms | Rust alone | Rust peak MB | Python step ms | Python alone | Python peak MB |")
    lines.append("|---|---|---|---|---|---|---|")
    rows = [
        ("frozen base: fwd + bwd to the input embeddings", "frozen", "frozen"),
        ("peft LoRA: fwd + bwd + AdamW", "peft_lora", "peft_lora"),
        ("peft DoRA (`use_dora`): fwd + bwd + AdamW", "peft_dora", "peft_dora"),
        ("weight reparameterization (Burn `apply_lora` / torch `parametrize`) + AdamW", "burn_apply_lora",
         "torch_reparam_lora"),
        ("peft prompt tuning: fwd + bwd to the prompt + AdamW", "peft_prompt_tuning", "peft_prompt_tuning"),
        ("peft prefix tuning: fwd + bwd to the prefix + AdamW", "peft_prefix_tuning", "peft_prefix_tuning"),
    ]
    for label, rk, pk in rows:
        r, p = rv.get(rk), pv.get(pk)
        lines.append(f"| {label} | {time_cell(times(r))} | {fmt(get(r, 'median_ms'))} | {fmt(get(r, 'peak_extra_mb'))}"
                     f" | {time_cell(times(p))} | {fmt(get(p, 'median_ms'))} | {fmt(get(p, 'peak_extra_mb'))} |")
    lines.append("")

    def med(variants, key):
        t = times(variants.get(key))
        return t["median_ms"] if t else None

    def paired(variants, a, b):
        """The median over rounds of a's step time over b's in the same round: steps taken back
        to back share the machine's load, so this ratio holds where the medians drift."""
        ta, tb = get(variants, a, "interleaved", "samples_ms"), get(variants, b, "interleaved", "samples_ms")
        if not ta or not tb or len(ta) != len(tb):
            return ratio(med(variants, a), med(variants, b))
        return statistics.median(x / y for x, y in zip(ta, tb))

    r_peft, r_frozen = med(rv, "peft_lora"), med(rv, "frozen")
    p_peft, p_frozen = med(pv, "peft_lora"), med(pv, "frozen")
    m_peft, m_apply = get(rv, "peft_lora", "peak_extra_mb"), get(rv, "burn_apply_lora", "peak_extra_mb")
    pm_peft, pm_reparam = get(pv, "peft_lora", "peak_extra_mb"), get(pv, "torch_reparam_lora", "peak_extra_mb")
    lines.append("Step-time ratios are paired: the median over rounds of the two variants' steps in the same round"
                 " of the interleaved run. Python's `apply_lora` column is torch `parametrize`.")
    lines.append("")
    lines.append("| ratio | Rust | Python | target (Rust) |")
    lines.append("|---|---|---|---|")
    x = paired(rv, "peft_lora", "frozen")
    lines.append(f"| peft / frozen, step time | {fmt(x, 2)}{check(x, 1.25)} | {fmt(paired(pv, 'peft_lora', 'frozen'), 2)}"
                 f" | <= 1.25 |")
    x = paired(rv, "peft_lora", "burn_apply_lora")
    lines.append(f"| peft / apply_lora, step time | {fmt(x, 2)}{check(x, 0.8)} |"
                 f" {fmt(paired(pv, 'peft_lora', 'torch_reparam_lora'), 2)} | <= 0.8 |")
    x = ratio(m_peft, m_apply)
    lines.append(f"| peft / apply_lora, peak MB | {fmt(x, 2)}{check(x, 1.0 - 1e-9)} | {fmt(ratio(pm_peft, pm_reparam), 2)}"
                 f" | < 1 |")
    x = paired(rv, "peft_dora", "peft_lora")
    lines.append(f"| DoRA / LoRA, step time | {fmt(x, 2)} | {fmt(paired(pv, 'peft_dora', 'peft_lora'), 2)} | lower than Python |")
    x = ratio(get(rv, "peft_dora", "peak_extra_mb"), m_peft)
    lines.append(f"| DoRA / LoRA, peak MB | {fmt(x, 2)} | {fmt(ratio(get(pv, 'peft_dora', 'peak_extra_mb'), pm_peft), 2)}"
                 f" | lower than Python |")
    for label, key in (("prompt tuning", "peft_prompt_tuning"), ("prefix tuning", "peft_prefix_tuning")):
        x = paired(rv, key, "frozen")
        lines.append(f"| {label} / frozen, step time | {fmt(x, 2)}{check(x, 1.05)} | {fmt(paired(pv, key, 'frozen'), 2)}"
                     f" | <= 1.05 |")
    lines.append(f"| peft-rust / peft-python, step time | {fmt(ratio(r_peft, p_peft), 2)} | | |")
    lines.append(f"| frozen-rust / frozen-python, step time | {fmt(ratio(r_frozen, p_frozen), 2)} | | |")
    lines.append("")

    attach = (rust or {}).get("attach")
    if attach:
        lines.append("## Attaching LoRA to a large Llama (Rust)")
        lines.append("")
        lines.append("`LlamaForCausalLM::new` then `get_peft_model(model, LoraConfig::new(16).with_lora_alpha(32.0)"
                     ".with_target_modules(\"all-linear\"))`; peak RSS is the whole process's.")
        lines.append("")
        lines.append("| model | layers | base params | sites | adapter params | base stays lazy | `new` s"
                     " | `get_peft_model` s | peak RSS MB |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        lines.append(
            f"| hidden {attach['hidden_size']}, intermediate {attach['intermediate_size']}, {attach['num_attention_heads']}"
            f" heads / {attach['num_key_value_heads']} kv, vocab {attach['vocab_size']} | {attach['num_hidden_layers']}"
            f" (of {attach['requested_layers']} asked) | {attach['base_params']:,} | {attach['sites']} |"
            f" {attach['trainable_params']:,} | {'yes' if attach['lazy_base'] else 'no'} | {attach['new_s']:.3f} |"
            f" {attach['attach_s']:.2f} | {attach['peak_rss_mb']:.0f} |")
        if attach.get("note"):
            lines.append("")
            lines.append(attach["note"])
        lines.append("")
    if not rust:
        lines.append("rust.json was missing: run `cargo xtask bench` for the Rust side.")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", help="the results folder (bench/results)")
    parser.add_argument("--quick", action="store_true", help="the small model, for a run under a minute")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--interleaved", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:
        print(json.dumps(run_variant(args.variant, json.loads(args.workload))))
        return
    if args.interleaved:
        print(json.dumps(run_interleaved(json.loads(args.workload))))
        return
    if not args.results:
        parser.error("the results folder is required")
    os.makedirs(args.results, exist_ok=True)
    w = workload_for(args.results, args.quick)
    start_load = loadavg()
    python = dict(implementation="python", quick=args.quick, threads=THREADS, workload=w,
                  date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  variants=run_children(w), loadavg_start=start_load, loadavg_end=loadavg())
    with open(os.path.join(args.results, "python.json"), "w") as f:
        json.dump(python, f, indent=2)
    rust = load_json(os.path.join(args.results, "rust.json"))
    if rust and rust.get("quick") != args.quick:
        print("bench: rust.json is from a run with another --quick setting; leaving it out", file=sys.stderr)
        rust = None
    text = table(rust, python, args.quick)
    with open(os.path.join(args.results, "TABLE.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
