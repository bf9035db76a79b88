#!/usr/bin/env python
"""Size the claim experiments: the power of scaling-sweep designs at the noise a real tiny-model sweep measured.

1. Reads the pilot sweep (`benchmarks/pilot_sweep.py`): its bounded item fit gives the dispersion φ, the run-to-run
   sd beyond item sampling and the accuracy range of the curve (`power.noise_from_items`).
2. Simulates every design of a grid — 4, 6 or 8 sizes over a x32 range of samples seen, 1–5 seeds, 400–6400
   benchmark items — at that noise with a log-law truth (and a few with a linear truth), fits each sweep with the
   run-score method and the bounded item method, and writes the median λ interval width, coverage and the probability
   of excluding the wrong shape with the CPU cost of running the design (`power_table.csv`).
3. Paired arms (`paired.csv`), checkpoint averaging what-ifs, and a calibration table with many simulations
   (`calibration.csv`); figures `power.png` and `pilot.png`; `noise.json`.

    python benchmarks/power_table.py --workers 2                 # ~10 min on 2 cores
    python benchmarks/power_table.py --n-sim 50 --out /tmp/p     # a quick look
"""
import argparse, json, platform, sys, time
from dataclasses import replace
from pathlib import Path
import numpy as np, pandas as pd

# CPU cost of the tiny model on 2 cores, measured by the blindness gate (data_samples/gate/tiny.json): tiny-full
# trains 3000 steps of 32 samples in 358 s; scoring 800 questions with real and blank pictures and the prior takes ~5 s.
STEPS_PER_S, EVAL_S_PER_ITEM, BATCH = 3000 / 358, 5 / 800 / 2, 32


def cpu_hours(sizes, seeds, items, evals=2):
    "Training every (size, seed) from scratch for size/BATCH steps, plus `evals` evaluations of `items` each."
    steps = np.asarray(sizes, float) / BATCH
    return float(seeds * (steps.sum() / STEPS_PER_S + len(steps) * evals * items * EVAL_S_PER_ITEM) / 3600)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pilot", default="data_samples/power/pilot"); ap.add_argument("--out", default="data_samples/power")
    ap.add_argument("--n-sim", type=int, default=200); ap.add_argument("--calib-sims", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=1); ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from sail_vl_nb.power import (Design, noise_from_items, paired_power, plot_power, power, power_table, read_pilot)
    from sail_vl_nb.itemfit import predict_items, profile_means
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    items = read_pilot(a.pilot)
    nz = noise_from_items(items)
    fit = nz["fit"]
    runs = items.groupby(["size", "seed"]).correct.mean().rename("score").reset_index()
    fm = profile_means(runs["size"], runs["score"]) if len(runs) >= 5 else None
    from sail_vl_nb.scaling import linearity
    lb = linearity(runs["size"], runs["score"], n_boot=1000) if len(runs) >= 5 else None
    blank = items.groupby(["size", "seed"]).correct_blank.mean().rename("blank").reset_index()
    lo_size = float(items["size"].min())
    c = items["chance"].to_numpy(float)
    acc_at = lambda z: float(np.mean(predict_items(fit, np.full(len(c), z), c)))
    acc32 = (acc_at(lo_size), acc_at(lo_size * 32))
    noise = {k: nz[k] for k in ("phi", "run_sd", "seed_sd", "binomial_sd", "items_per_run", "runs")}
    noise.update(acc_pilot=nz["acc"], acc_x32=acc32, lam_items=[fit.lam, fit.lo, fit.hi], verdict_items=fit.verdict,
                 lam_means=[fm.lam, fm.lo, fm.hi] if fm else None, verdict_means=fm.verdict if fm else None,
                 lam_bootstrap=[lb.lam, lb.lo, lb.hi] if lb else None, verdict_bootstrap=lb.verdict if lb else None,
                 sizes=sorted(map(float, items["size"].unique())), seeds=sorted(map(int, items.seed.unique())))
    print(json.dumps(noise, indent=1))
    base = Design(sizes=tuple(np.geomspace(lo_size, lo_size * 32, 6)), seeds=3, items=800, lam=0.0,
                  acc=acc32, run_sd=max(nz["run_sd"], 1e-6))
    designs = []
    for k in (4, 6, 8):
        for seeds in (1, 2, 3, 5):
            if k * seeds < 5: continue
            for n in (400, 1600, 6400):
                designs.append(replace(base, sizes=tuple(np.geomspace(lo_size, lo_size * 32, k)), seeds=seeds, items=n))
    lin = [replace(d, lam=1.0) for d in designs if d.items == 1600 and d.seeds in (2, 3)]
    what_if = [replace(base, jitter=0.5, avg_last=4), replace(base, run_sd=base.run_sd * 2), replace(base, run_sd=base.run_sd / 2)]
    tab = power_table(designs + lin + what_if, n_sim=a.n_sim, seed=a.seed, workers=a.workers)
    tab["role"] = ["grid"] * (2 * len(designs)) + ["linear truth"] * (2 * len(lin)) + \
                  [r for r in ("checkpoints: half the run sd is jitter, last 4 averaged", "run sd x2", "run sd /2") for _ in range(2)]
    allds = designs + lin + what_if
    tab["cpu_h"] = [cpu_hours(d.sizes, d.seeds, d.items) for d in allds for _ in range(2)]
    tab.to_csv(out / "power_table.csv", index=False)
    paired = pd.concat([paired_power(replace(base, items=1600), rho=r, n_sim=a.n_sim, seed=a.seed) for r in (0.0, 0.5, 0.8, 0.95)])
    paired.to_csv(out / "paired.csv", index=False)
    cal = pd.concat([power(d, n_sim=a.calib_sims, seed=a.seed + 99).assign(design=name) for name, d in
                     (("6 sizes x 3 seeds, 800 items", base), ("4 sizes x 2 seeds, 1600 items, run sd x2",
                       replace(base, sizes=tuple(np.geomspace(lo_size, lo_size * 32, 4)), seeds=2, items=1600, run_sd=base.run_sd * 2)))])
    cal.to_csv(out / "calibration.csv", index=False)
    import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
    fig = plot_power(tab[tab.role == "grid"], title=f"Power to tell log from linear at the pilot's noise (φ = {nz['phi']:.2f},"
                     f" accuracy {acc32[0]:.3f} → {acc32[1]:.3f} over ×32), {a.n_sim} simulations per design")
    fig.savefig(out / "power.png", dpi=110); plt.close(fig)
    fig, ax = plt.subplots(figsize=(7.5, 4))
    grid = np.geomspace(items["size"].min(), items["size"].max(), 60)
    ax.plot(grid, [acc_at(z) for z in grid], color="C0", lw=2, label=f"bounded item fit, λ = {fit.lam:.2f} [{fit.lo:.2f}, {fit.hi:.2f}]")
    ax.scatter(runs["size"], runs["score"], color="C0", s=25, label="real pictures, one point per run")
    ax.scatter(blank["size"], blank["blank"], color="0.5", marker="x", s=25, label="blank pictures")
    ax.set_xscale("log"); ax.set_xlabel("samples seen (log scale)"); ax.set_ylabel("benchmark accuracy"); ax.grid(alpha=0.3)
    ax.set_title("Pilot sweep: tiny-full, one run per (size, seed)"); ax.legend(fontsize=8); fig.tight_layout()
    fig.savefig(out / "pilot.png", dpi=110); plt.close(fig)
    import torch, transformers, scipy
    noise["command"] = "python benchmarks/power_table.py " + " ".join(sys.argv[1:])
    noise["versions"] = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                         "pandas": pd.__version__, "torch": torch.__version__, "transformers": transformers.__version__}
    noise["n_sim"], noise["calib_sims"], noise["seed"], noise["wall_s"] = a.n_sim, a.calib_sims, a.seed, round(time.perf_counter() - t0, 1)
    noise["cost_model"] = {"steps_per_s": STEPS_PER_S, "eval_s_per_item": EVAL_S_PER_ITEM, "batch": BATCH}
    (out / "noise.json").write_text(json.dumps(noise, indent=1, default=float))
    print(tab.round(3).to_string()); print(paired.round(4).to_string()); print(cal.round(3).to_string())
    print(f"written to {out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
