#!/usr/bin/env python
"""A small real scaling sweep of the tiny model, kept at the item level: the pilot that sizes the claim experiments.

For every (steps, seed) the `tiny-full` stage is trained from the shipped towers for `steps` optimiser steps (its own
warm-up + cosine schedule, batch 32, so samples seen D = 32 * steps) and scored on one fixed benchmark with the real
pictures and with blank ones. Each run writes one file, `OUT/items_steps{S}_seed{K}.csv.gz`, one row per benchmark
item (id, picture, category, level, tag, question, correct with the real picture and with a blank one); runs whose file
exists are skipped, so the sweep can be stopped and resumed. `notebooks 12_power` reads these files.

    python benchmarks/pilot_sweep.py                                  # 5 sizes x 3 seeds, 400 questions/category
    python benchmarks/pilot_sweep.py --steps 100 200 --seeds 0 --workers 2

Written alongside: OUT/runs.csv (one row per finished run: wall time, losses, accuracies, visual gain) and
OUT/README.md (the command, versions and machine).
"""
import argparse, json, os, platform, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1"); os.environ.setdefault("TQDM_DISABLE", "1")


def run_one(steps: int, seed: int, n_per_category: int, bench_seed: int, out: str, threads: int) -> dict:
    "Train tiny-full for `steps` steps with `seed`, score real and blank, write the item file; return the run's row."
    import tempfile, shutil
    import pandas as pd, torch
    torch.set_num_threads(threads)
    from sail_vl_nb.config import get_config
    from sail_vl_nb.data import caption_samples, vqa_samples
    from sail_vl_nb.evaluate import ablate_images, make_benchmark, run_benchmarks
    from sail_vl_nb.text import SailVLProcessor, default_tokenizer
    from sail_vl_nb.towers import build_model
    from sail_vl_nb.train import load_stage, train_stage
    from sail_vl_nb.world import make_world
    t0 = time.perf_counter()
    stage = load_stage("tiny-full")
    stage.max_steps, stage.epochs, stage.seed, stage.log_every = steps, None, seed, max(steps // 10, 1)
    cfg = get_config("tiny")
    proc = SailVLProcessor.from_config(cfg, default_tokenizer("tiny"))
    model = build_model("tiny", seed=seed)
    d = {"n_world": 2000, "world_seed": 0, **stage.data}
    world = make_world(d["n_world"], seed=d["world_seed"], image_size=cfg.tile_size, progress=False)
    samples = vqa_samples(world) + caption_samples(world)
    tmp = tempfile.mkdtemp(prefix="pilot-")
    try: res = train_stage(model, proc, stage, samples, tmp)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    train_s = time.perf_counter() - t0
    bench = make_benchmark(n_per_category=n_per_category, seed=bench_seed, image_size=cfg.tile_size)
    model.eval()
    real = run_benchmarks(model, proc, bench, batch_size=50, max_new_tokens=8, progress=False, return_items=True)
    blank = run_benchmarks(model, proc, ablate_images(bench, "blank"), batch_size=50, max_new_tokens=8, progress=False,
                           return_items=True)
    items = pd.DataFrame(real["items"]).assign(question=bench["question"], answer=bench["answer"],
                                                correct_blank=[x["correct"] for x in blank["items"]])
    name = Path(out) / f"items_steps{steps}_seed{seed}.csv.gz"
    part = name.with_suffix(".part")
    items.to_csv(part, index=False, compression="gzip"); part.replace(name)          # atomic: a file is a finished run
    return {"steps": steps, "seed": seed, "samples_seen": steps * stage.batch_size, "first_loss": res.history[0]["loss"],
            "final_loss": res.final_loss, "train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - t0 - train_s, 1),
            "real": real["overall"], "blank": blank["overall"], "gain": real["overall"] - blank["overall"],
            **{f"real_{c}": real[c] for c in ("general", "ocr", "math", "hallucination")}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 200, 400, 800, 1600])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-per-category", type=int, default=400)
    ap.add_argument("--bench-seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="runs in parallel (each gets cpu_count // workers threads)")
    ap.add_argument("--out", default="data_samples/power/pilot")
    a = ap.parse_args(argv)
    if a.workers < 1: ap.error("--workers must be >= 1")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    todo = [(s, k) for k in a.seeds for s in a.steps if not (out / f"items_steps{s}_seed{k}.csv.gz").exists()]
    print(f"pilot sweep: {len(a.steps) * len(a.seeds)} runs, {len(todo)} to do, {a.workers} worker(s)", flush=True)
    import torch, transformers
    (out / "README.md").write_text(
        "# Pilot sweep of the tiny model (item level)\n\n"
        f"Command: `python benchmarks/pilot_sweep.py {' '.join(sys.argv[1:])}`\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}, torch {torch.__version__},"
        f" transformers {transformers.__version__}; {time.strftime('%Y-%m-%d')}.\n\n"
        "Stage `tiny-full` (projector + LLM trained, vision frozen, mixed world data: 2,000 pictures, world seed 0) trained"
        " for STEPS steps with seed SEED (`stage.seed`: projector init and data order); benchmark"
        f" `make_benchmark(n_per_category={a.n_per_category}, seed={a.bench_seed})`, scored with the real pictures"
        " (`correct`) and blank grey ones (`correct_blank`). One file per run: `items_steps{STEPS}_seed{SEED}.csv.gz`;"
        " `runs.csv` one row per run.\n")
    threads = max(1, (os.cpu_count() or 1) // a.workers)
    runs_csv = out / "runs.csv"
    with ProcessPoolExecutor(a.workers) as ex:
        futs = {ex.submit(run_one, s, k, a.n_per_category, a.bench_seed, str(out), threads): (s, k) for s, k in todo}
        for f in as_completed(futs):
            row = f.result()
            import pandas as pd
            pd.DataFrame([row]).to_csv(runs_csv, mode="a", header=not runs_csv.exists(), index=False)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
