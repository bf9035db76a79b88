#!/usr/bin/env python
"""The language tower's reading levers, measured as curves: each run pretrains a tiny LM with `pretrain_lm` and
scores its reading accuracy (the benchmark answered from each picture's true caption, tuning seed 7, and the same
LM with an empty slot) every `eval_every` steps, so one run gives accuracy at many token budgets (constant learning
rate after the warm-up: every evaluated step is a budget one could have stopped at).

    python benchmarks/reading_levers.py --runs stream-128x2 stream-128x4 --workers 2
    python benchmarks/reading_levers.py --list
    python benchmarks/reading_levers.py --score stream-128x2 shipped      # the standard benchmark: seed 0, 200 a category
    python benchmarks/reading_levers.py --tags stream-128x6               # per question type, latest checkpoint
    python benchmarks/reading_levers.py --cooldown stream-128x4-bs4 --steps 1600   # lr decayed to 0 from the checkpoint

Each finished evaluation appends one row to data_samples/towers/reading/curves.csv (run, step, tokens, scores);
a run whose last step is already there is skipped. Runs span sittings: each saves its whole state to
runs/reading/NAME.pt at every evaluation, and a run that finds its checkpoint goes on from it (its rows in
curves.csv are rewritten from the checkpoint's curve first), so a kill loses at most one evaluation interval and
the weights equal those of an uninterrupted run. A run without a checkpoint (the first two, from before runs
could resume) starts from scratch and drops its partial rows. Each run writes its settings and status to runs.json
beside it and its final weights to runs/reading/NAME.safetensors (kept out of the repository). One thread per worker.
"""
import argparse, csv, json, os, platform, time
from pathlib import Path

for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(v, "1")

OUT = Path("data_samples/towers/reading")
FIELDS = ["run", "step", "tokens", "loss", "general", "ocr", "math", "hallucination", "overall", "blank", "elapsed_s"]
STREAM = dict(rows="stream", schedule="constant", warmup_ratio=0.03, lr=2e-3, batch_size=16, eval_every=500)
# name -> (LMRecipe fields, text_config overrides of the tiny scale)
RUNS = {
    "stream-128x2": (STREAM | dict(steps=6000), {}),
    "stream-128x4": (STREAM | dict(steps=4500), dict(num_hidden_layers=4)),
    "stream-128x2-bs4": (STREAM | dict(steps=12000, batch_size=4, eval_every=1000), {}),
    # levers measured with resumable runs: 4 documents a step (the formation law's smaller batch), lr scaled by
    # sqrt(4/16); and depth 6
    "stream-128x4-bs4": (STREAM | dict(steps=32000, batch_size=4, lr=1e-3, eval_every=2000), dict(num_hidden_layers=4)),
    "stream-128x6": (STREAM | dict(steps=8000), dict(num_hidden_layers=6)),
    # minimal pairs: half the rows a scene and its twin with the questions whose answers differ; each question once
    "stream-128x4-bs4-twin": (STREAM | dict(steps=32000, batch_size=4, lr=1e-3, eval_every=2000, p_twin=0.5, dedup=True),
                              dict(num_hidden_layers=4)),
    # a copy curriculum: half the documents open with the caption copied word for word (answers-only loss on the copy)
    "stream-128x4-copy": (STREAM | dict(steps=8000, p_copy=0.5), dict(num_hidden_layers=4)),
    "stream-192x3": (STREAM | dict(steps=3000), dict(hidden_size=192, num_hidden_layers=3, num_attention_heads=6,
                                                     num_key_value_heads=3, intermediate_size=384)),
    "packed-256": (dict(schedule="constant", warmup_ratio=0.03, steps=4000, batch_size=8, lr=3e-3, n_scenes=12000,
                        eval_every=500), {}),
}


def done_steps(run: str) -> set:
    f = OUT / "curves.csv"
    if not f.exists(): return set()
    with open(f) as fh: return {int(r["step"]) for r in csv.DictReader(fh) if r["run"] == run}


def set_rows(run: str, curve: list) -> None:
    "Replace run `run`'s rows in curves.csv by `curve` (its checkpoint's curve; [] to drop them)."
    f = OUT / "curves.csv"
    with open(f) as fh: rows = [r for r in csv.DictReader(fh) if r["run"] != run]
    with open(f, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore"); w.writeheader()
        w.writerows(rows + [{"run": run, **r} for r in curve])


def checkpoint_path(name: str) -> Path:
    return Path("runs/reading") / f"{name}.pt"


def record(name: str, **extra) -> None:
    "Write run `name`'s settings (recipe, size, command, versions) and `extra` into runs.json."
    import torch, transformers
    from transformers import Qwen2ForCausalLM
    from sail_vl_nb.config import get_config
    fields, text_config = RUNS[name]
    with torch.device("meta"): n_params = sum(p.numel() for p in Qwen2ForCausalLM(get_config("tiny", text_config=text_config).text_config).parameters())
    meta = json.loads((OUT / "runs.json").read_text()) if (OUT / "runs.json").exists() else {}
    meta[name] = {"command": f"python benchmarks/reading_levers.py --runs {name}", "recipe": fields, "text_config": text_config,
                  "params": n_params, "date": time.strftime("%Y-%m-%d"), "threads": 1,
                  "versions": {"python": platform.python_version(), "torch": torch.__version__,
                               "transformers": transformers.__version__}} | extra
    (OUT / "runs.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


def one_run(name: str) -> str:
    import torch
    torch.set_num_threads(1)
    from sail_vl_nb.text import default_tokenizer
    from sail_vl_nb.towers.lm import pretrain_lm
    from sail_vl_nb.towers.recipes import LMRecipe
    fields, text_config = RUNS[name]
    recipe = LMRecipe(**fields)
    if recipe.steps in done_steps(name): return f"{name}: already done"

    def append(row):
        with open(OUT / "curves.csv", "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore").writerow({"run": name, **row})
        print(name, row, flush=True)

    ck = checkpoint_path(name)
    set_rows(name, torch.load(ck, weights_only=True)["curve"] if ck.exists() else [])
    record(name, status=f"running (checkpoint {ck}; rerun the command to go on after a stop)")
    state, info = pretrain_lm("tiny", recipe, default_tokenizer("tiny"), progress=False, text_config=text_config,
                              on_eval=append, checkpoint=ck)
    from safetensors.torch import save_file
    save_file(state, f"runs/reading/{name}.safetensors")          # the weights stay out of the repository
    record(name, status="finished", held_out_ppl=info["held_out_ppl"], tokens_seen=info["tokens_seen"],
           seconds=info["seconds"])
    return f"{name}: {info['seconds']:.0f} s"


def score(names) -> None:
    "Reading accuracy on the standard benchmark (seed 0, 200 a category) of finished runs' weights or the shipped tower."
    import torch
    torch.set_num_threads(1)
    from safetensors.torch import load_file
    from transformers import Qwen2ForCausalLM
    from sail_vl_nb.config import get_config
    from sail_vl_nb.evaluate import make_benchmark
    from sail_vl_nb.towers import pretrained_towers
    from sail_vl_nb.towers.lm import reading_accuracy
    bench, out_f = make_benchmark(200, seed=0), OUT / "standard.json"
    out = json.loads(out_f.read_text()) if out_f.exists() else {}
    for name in names:
        state = pretrained_towers("tiny")["llm_state"] if name == "shipped" else load_file(f"runs/reading/{name}.safetensors")
        lm = Qwen2ForCausalLM(get_config("tiny", text_config=RUNS[name][1] if name in RUNS else {}).text_config)
        lm.load_state_dict(state)
        out[name] = {"caption": reading_accuracy(lm, "tiny", bench), "empty slot": reading_accuracy(lm, "tiny", bench, blind=True),
                     "bench": {"n_per_category": 200, "seed": 0},
                     "command": f"python benchmarks/reading_levers.py --score {name}"}
        print(name, json.dumps(out[name]), flush=True)
    out_f.write_text(json.dumps(out, indent=1, sort_keys=True))


def tags(name: str, n: int = 200, seed: int = 7) -> None:
    "Where a run's reader fails: accuracy per question type (tag) on the tuning benchmark, from its latest checkpoint."
    import torch
    torch.set_num_threads(1)
    from collections import defaultdict
    from transformers import Qwen2ForCausalLM
    from sail_vl_nb.config import get_config
    from sail_vl_nb.evaluate import make_benchmark
    from sail_vl_nb.towers.lm import reading_accuracy
    ck = torch.load(checkpoint_path(name), weights_only=True)
    lm = Qwen2ForCausalLM(get_config("tiny", text_config=RUNS[name][1]).text_config)
    lm.load_state_dict(ck["lm"])
    r = reading_accuracy(lm, "tiny", make_benchmark(n, seed=seed), return_items=True)
    by = defaultdict(list)
    for it in r["items"]: by[(it["category"], it["level"], it["tag"])].append(it["correct"])
    out = {"run": name, "step": ck["step"], "tokens": ck["seen"], "bench": {"n_per_category": n, "seed": seed},
           "overall": r["overall"], "tags": {"/".join(map(str, k)): [round(sum(v) / len(v), 3), len(v)] for k, v in sorted(by.items())}}
    for k, (acc, m) in out["tags"].items(): print(f"{k:40s} {acc:.2f}  (n={m})")
    f = OUT / "tags.json"
    allr = json.loads(f.read_text()) if f.exists() else {}
    allr[name] = out | {"command": f"python benchmarks/reading_levers.py --tags {name}"}
    f.write_text(json.dumps(allr, indent=1, sort_keys=True))


def cooldown(name: str, steps: int, at: int | None = None) -> None:
    """Branch a linear decay of the learning rate to 0 over `steps` steps off run `name`'s checkpoint (the
    warm-up-stable-decay recipe: a constant-rate run can be cooled down at any budget), then score reading on the
    tuning benchmark. One row per branch in cooldown.csv. `at`: the checkpoint's step, checked (default: the latest)."""
    import random
    import torch
    torch.set_num_threads(1)
    from torch import nn
    from transformers import Qwen2ForCausalLM
    from sail_vl_nb.config import get_config
    from sail_vl_nb.evaluate import make_benchmark
    from sail_vl_nb.towers.build import processor_for
    from sail_vl_nb.towers.lm import reading_accuracy, stream_batches
    from sail_vl_nb.towers.recipes import LMRecipe
    from sail_vl_nb.train import param_groups
    fields, text_config = RUNS[name]
    recipe = LMRecipe(**fields)
    ck = torch.load(checkpoint_path(name), weights_only=True)
    if at is not None and ck["step"] != at: raise SystemExit(f"{name}'s checkpoint is at step {ck['step']}, not {at}")
    lm = Qwen2ForCausalLM(get_config("tiny", text_config=text_config).text_config); lm.load_state_dict(ck["lm"])
    opt = torch.optim.AdamW(param_groups(lm, recipe.lr, recipe.weight_decay), lr=recipe.lr); opt.load_state_dict(ck["opt"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    stream = random.Random(); stream.setstate(ck["stream"])
    batches, seen, t0 = stream_batches(processor_for("tiny"), recipe, rng=stream), ck["seen"], time.perf_counter()
    lm.train()
    for _ in range(steps):
        ids, labels, att = next(batches)
        seen += int(att.sum())
        lm(input_ids=ids, attention_mask=att, labels=labels).loss.backward()
        nn.utils.clip_grad_norm_(lm.parameters(), recipe.grad_clip)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
    bench = make_benchmark(recipe.eval_items, seed=recipe.eval_seed)
    row = {"run": name, "from_step": ck["step"], "cooldown_steps": steps, "tokens": seen, **reading_accuracy(lm, "tiny", bench),
           "blank": reading_accuracy(lm, "tiny", bench, blind=True)["overall"], "seconds": round(time.perf_counter() - t0, 1),
           "command": f"python benchmarks/reading_levers.py --cooldown {name} --steps {steps} --at {ck['step']}"}
    f = OUT / "cooldown.csv"
    new = not f.exists()
    with open(f, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new: w.writeheader()
        w.writerow(row)
    print(row, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=["stream-128x2", "stream-128x4"], choices=sorted(RUNS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--score", nargs="*", help="score finished runs (or 'shipped') on the standard benchmark")
    ap.add_argument("--tags", nargs="*", help="accuracy per question type of runs' latest checkpoints (tags.json)")
    ap.add_argument("--cooldown", help="branch a linear lr decay off this run's latest checkpoint (cooldown.csv)")
    ap.add_argument("--steps", type=int, default=1000, help="--cooldown: steps of the decay")
    ap.add_argument("--at", type=int, help="--cooldown: the checkpoint step expected")
    a = ap.parse_args(argv)
    if a.cooldown: return cooldown(a.cooldown, a.steps, a.at)
    if a.score: return score(a.score)
    if a.tags:
        for name in a.tags: tags(name)
        return
    if a.list:
        for k, (f, t) in RUNS.items(): print(k, f, t)
        return
    from _pool import run_all, start_table
    start_table(OUT / "curves.csv", FIELDS)
    run_all(one_run, a.runs, a.workers)


if __name__ == "__main__":
    main()
