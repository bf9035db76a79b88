#!/usr/bin/env python
"""How far the demo's scores move when only the CPU kernels change: the reproducibility band.

On one machine with the same versions, `sail-vl demo` gives every number again bit for bit (tests/test_demo.py checks
it). On another CPU the float32 sums run in another order (AVX2 adds in vectors of 8 lanes, AVX-512 of 16; thread
counts split the work differently), the last bits of the gradients differ, AdamW turns gradient entries that are
rounding noise into steps of order lr, and after 2,300 steps the model is a slightly different one: its scores land
within a band, not on the same digits. This runs the demo (and optionally the gate, `benchmarks/gate.py`) on this
machine under several kernel settings, one process with --threads threads each, and writes every run's scores, gains
and the differences between them to --out.

    python benchmarks/repro_band.py                               # avx512 and avx2 (6-12 min each on 2 cores)
    python benchmarks/repro_band.py --kernels avx512 avx2 --gate  # and the tiny-full gate under each (~6 min each)
    python benchmarks/repro_band.py --reuse --kernels avx512 avx2 avx2-torch-mkl   # band.json from the runs in --work

`--committed` adds the committed report (data_samples/demo, another run of the same command) as one more run.
"""
import argparse, json, os, platform, subprocess, sys, time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Environment of each kernel setting: torch's own kernels (ATEN_CPU_CAPABILITY), MKL's and oneDNN's instruction sets.
KERNELS = {
    "avx512": {},                                                     # this machine's best (the default here)
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx2-torch-mkl": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},   # oneDNN (convolutions) left at its best
    "scalar": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
CATEGORIES = ("general", "ocr", "math", "hallucination", "overall")


def env_for(kernel: str, threads: int) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
            "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **KERNELS[kernel]}


def capability(env: dict) -> str:
    "The kernel set torch picks under `env` (AVX512, AVX2, DEFAULT)."
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                       env=env, capture_output=True, text=True, check=True)
    return r.stdout.strip()


def demo_scores(res: dict) -> dict:
    "The numbers of one demo run: the final model's per-category scores and gains, and each stage's overall and gain."
    f = res["final"]
    return {"real": {c: f["real"][c] for c in CATEGORIES}, "blank": {c: f["blank"][c] for c in CATEGORIES},
            "gain": {c: f["gain"][c] for c in CATEGORIES}, "gain_ci_overall": f["gain_ci_overall"],
            "stages": {r["stage"]: {"overall": r["overall"], "gain": r["gain"], "final_loss": r["final_loss"]}
                       for r in res["recipe"]["rows"]}}


def run_demo(work: Path, kernel: str, threads: int) -> dict:
    out, env = work / f"demo-{kernel}", env_for(kernel, threads)
    cmd = [str(Path(sys.executable).with_name("sail-vl")), "demo", "--out", str(out), "--force"]
    t0 = time.perf_counter()
    with open(work / f"demo-{kernel}.log", "w") as log:
        subprocess.run(cmd, env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    meta = {"kernel": kernel, "env": KERNELS[kernel], "threads": threads, "capability": capability(env),
            "command": " ".join(f"{k}={v}" for k, v in {**KERNELS[kernel], "OMP_NUM_THREADS": threads}.items())
                       + " sail-vl demo --out runs/demo --force", "wall_s": round(time.perf_counter() - t0)}
    (out / "band-meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def run_gate(work: Path, kernel: str, threads: int):
    out = work / f"gate-{kernel}.json"
    with open(work / f"gate-{kernel}.log", "w") as log:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gate.py"), "--out", str(out)], env=env_for(kernel, threads),
                       check=True, stdout=log, stderr=subprocess.STDOUT)


def spread(runs: dict, pick) -> dict:
    "min, max and max − min of one number over the runs, with every pair's difference."
    vals = {k: pick(v) for k, v in runs.items()}
    return {"min": round(min(vals.values()), 4), "max": round(max(vals.values()), 4), "band": round(max(vals.values()) - min(vals.values()), 4),
            "pairs": {f"{a} - {b}": round(vals[a] - vals[b], 4) for a, b in combinations(vals, 2)}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", nargs="+", default=["avx512", "avx2"], choices=sorted(KERNELS))
    ap.add_argument("--threads", type=int, default=1, help="threads per run (default 1)")
    ap.add_argument("--work", default="runs/repro_band", help="where the runs go (their reports and weights)")
    ap.add_argument("--reuse", action="store_true", help="read the runs already in --work instead of running them")
    ap.add_argument("--gate", action="store_true", help="also run benchmarks/gate.py (tiny-full, 200 questions) per kernel")
    ap.add_argument("--committed", default="data_samples/demo", help="a committed report to add as a run ('' for none)")
    ap.add_argument("--out", default="data_samples/repro/band.json")
    a = ap.parse_args(argv)
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    runs, gates = {}, {}
    for k in a.kernels:
        meta_f = work / f"demo-{k}" / "band-meta.json"
        meta = json.loads(meta_f.read_text()) if a.reuse else run_demo(work, k, a.threads)
        res = json.loads((work / f"demo-{k}" / "results.json").read_text())
        runs[f"{k}, {meta['threads']} thread(s)"] = {**meta, "date": res["date"], "machine": res["machine"],
                                                     "versions": res["versions"], **demo_scores(res)}
        if a.gate and not a.reuse: run_gate(work, k, a.threads)
        if (work / f"gate-{k}.json").exists():                # with --reuse: the gates that were run
            g = json.loads((work / f"gate-{k}.json").read_text())
            gates[k] = {"command": g["command"], "capability": runs[f"{k}, {meta['threads']} thread(s)"]["capability"],
                        "gain": g["gain"], "real": g["scores"]["real"], "train_s": g["train_s"]}
    if a.committed:
        res = json.loads((ROOT / a.committed / "results.json").read_text())
        runs["committed report"] = {"kernel": "not recorded", "threads": "default (2 cores)", "capability": "not recorded",
                                    "command": res["command"], "date": res["date"], "machine": res["machine"],
                                    "versions": res["versions"], "source": f"{a.committed}/results.json", **demo_scores(res)}
    band = {"what": "sail-vl demo (the tiny recipe from the pretrained towers, 2,300 steps) on one machine under several "
                    "CPU kernel settings; per-category final scores and visual gains, and each stage's overall score",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": runs,
            "band": {**{f"final real {c}": spread(runs, lambda r, c=c: r["real"][c]) for c in CATEGORIES},
                     **{f"final gain {c}": spread(runs, lambda r, c=c: r["gain"][c]) for c in CATEGORIES},
                     **{f"stage {s} overall": spread(runs, lambda r, s=s: r["stages"][s]["overall"])
                        for s in next(iter(runs.values()))["stages"]}}}
    if gates:
        band["gate"] = {"runs": gates, "band": {f"gain {c}": spread(gates, lambda r, c=c: r["gain"][c]) for c in CATEGORIES}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(band, indent=1) + "\n")
    for name in ("final real overall", "final gain overall"):
        b = band["band"][name]
        print(f"{name}: {b['min']:.4f} .. {b['max']:.4f} (band {b['band']:.4f})")
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
