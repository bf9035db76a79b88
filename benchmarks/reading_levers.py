#!/usr/bin/env python
"""The language tower's reading levers, measured as curves: each run pretrains a tiny LM with `pretrain_lm` and
scores its reading accuracy (the benchmark answered from each picture's true caption, tuning seed 7, and the same
LM with an empty slot) every `eval_every` steps, so one run gives accuracy at many token budgets (constant learning
rate after the warm-up: every evaluated step is a budget one could have stopped at).

    python benchmarks/reading_levers.py --runs stream-128x2 stream-128x4 --workers 2
    python benchmarks/reading_levers.py --list
    python benchmarks/reading_levers.py --score stream-128x2 shipped      # the standard benchmark: seed 0, 200 a category

Each finished evaluation appends one row to data_samples/towers/reading/curves.csv (run, step, tokens, scores);
a run whose last step is already there is skipped, a run cut short starts again from scratch (its partial rows are dropped first). Each run writes its settings to
runs.json beside it and its final weights to runs/reading/NAME.safetensors. One thread per worker.
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
    "stream-192x3": (STREAM | dict(steps=3000), dict(hidden_size=192, num_hidden_layers=3, num_attention_heads=6,
                                                     num_key_value_heads=3, intermediate_size=384)),
    "packed-256": (dict(schedule="constant", warmup_ratio=0.03, steps=4000, batch_size=8, lr=3e-3, n_scenes=12000,
                        eval_every=500), {}),
}


def done_steps(run: str) -> set:
    f = OUT / "curves.csv"
    if not f.exists(): return set()
    with open(f) as fh: return {int(r["step"]) for r in csv.DictReader(fh) if r["run"] == run}


def drop_partial(runs) -> None:
    "Remove the rows of runs that did not finish, so that their rerun starts a clean curve."
    f = OUT / "curves.csv"
    with open(f) as fh: rows = list(csv.DictReader(fh))
    unfinished = {r for r in runs if final_step(r) not in done_steps(r)}
    with open(f, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS); w.writeheader()
        w.writerows(r for r in rows if r["run"] not in unfinished)


def final_step(name: str) -> int:
    return RUNS[name][0]["steps"]


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

    t0 = time.perf_counter()
    record(name, status="running")
    state, info = pretrain_lm("tiny", recipe, default_tokenizer("tiny"), progress=False, text_config=text_config, on_eval=append)
    from safetensors.torch import save_file
    Path("runs/reading").mkdir(parents=True, exist_ok=True)
    save_file(state, f"runs/reading/{name}.safetensors")          # the weights stay out of the repository
    record(name, status="finished", held_out_ppl=info["held_out_ppl"], tokens_seen=info["tokens_seen"],
           seconds=round(time.perf_counter() - t0, 1))
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=["stream-128x2", "stream-128x4"], choices=sorted(RUNS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--score", nargs="*", help="score finished runs (or 'shipped') on the standard benchmark")
    a = ap.parse_args(argv)
    if a.score: return score(a.score)
    if a.list:
        for k, (f, t) in RUNS.items(): print(k, f, t)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    if not (OUT / "curves.csv").exists():
        with open(OUT / "curves.csv", "w", newline="") as fh: csv.DictWriter(fh, fieldnames=FIELDS).writeheader()
    if a.workers == 1:
        for r in a.runs: print(one_run(r), flush=True)
        return
    import concurrent.futures as cf, multiprocessing as mp
    with cf.ProcessPoolExecutor(max_workers=a.workers, mp_context=mp.get_context("spawn")) as ex:
        for msg in ex.map(one_run, a.runs): print(msg, flush=True)


if __name__ == "__main__":
    main()
