#!/usr/bin/env python
"""The blindness gate, measured as a user runs it: `sail-vl train --stage STAGE --eval N`, timed end to end (world
generation, encoding, training, and — reported apart — the evaluation), then the visual gain per category with its
cluster-bootstrap interval, the per-tag diagnosis, and the verdict against the gate of the tiny stage:
visual gain >= +0.20 overall and >= +0.10 in every category, hallucination accuracy >= 0.65.

    python benchmarks/gate.py                                   # tiny-full, 200 questions per category, bench seed 0
    python benchmarks/gate.py --stage small-full --scale small --out data_samples/gate/small.json

Writes the result (numbers, command, versions, timings) to --out (default data_samples/gate/tiny.json).
"""
import argparse, json, os, platform, shlex, subprocess, sys, tempfile, time
from pathlib import Path

GATE = {"overall": 0.20, "per_category": 0.10, "hallucination_accuracy": 0.65}


def verdict(ev: dict) -> dict:
    "Which parts of the gate a result passes."
    cats = ("general", "ocr", "math", "hallucination")
    return {"overall_gain": ev["gain"]["overall"] >= GATE["overall"],
            "every_category_gain": all(ev["gain"][c] >= GATE["per_category"] for c in cats),
            "hallucination_accuracy": ev["scores"]["real"]["hallucination"] >= GATE["hallucination_accuracy"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default="tiny-full"); ap.add_argument("--scale", default="tiny")
    ap.add_argument("--eval", type=int, default=200); ap.add_argument("--bench-seed", type=int, default=0)
    ap.add_argument("--out", default="data_samples/gate/tiny.json")
    ap.add_argument("--extra", default="", help="more `sail-vl train` flags, quoted")
    a = ap.parse_args(argv)
    run_dir = tempfile.mkdtemp(prefix="gate-")
    cmd = ["sail-vl", "train", "--stage", a.stage, "--scale", a.scale, "--out", run_dir, "--eval", str(a.eval),
           "--bench-seed", str(a.bench_seed), *shlex.split(a.extra)]
    exe = str(Path(sys.executable).with_name("sail-vl"))
    t0 = time.perf_counter()
    subprocess.run([exe, *cmd[1:]], check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    wall = time.perf_counter() - t0
    ev = json.loads((Path(run_dir) / "eval.json").read_text())
    metrics = [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if l.strip()]
    import torch, transformers
    res = {"command": " ".join(cmd[:6] + cmd[8:]), "stage": a.stage, "scale": a.scale,
           "wall_s_total": round(wall, 1), "train_s": round(metrics[-1]["elapsed_s"], 1) if metrics else None,
           "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__},
           "gate": GATE, "passes": None, **ev}
    res["passes"] = verdict(ev)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    g = ev["gain"]
    print(f"\n{a.stage}: {wall:.0f} s end to end (train {res['train_s']} s); visual gain "
          + ", ".join(f"{c} {g[c]:+.3f}" for c in g) + f"; passes {res['passes']}; written to {a.out}")


if __name__ == "__main__":
    main()
