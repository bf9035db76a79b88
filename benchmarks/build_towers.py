"""Rebuild the pretrained towers shipped in sail_vl_nb/assets/towers/ and re-measure what the notebook 09_towers shows.

    python benchmarks/build_towers.py --scale tiny                 # pretrain both towers, write them into the package
    python benchmarks/build_towers.py --scale tiny --out DIR --check   # rebuild into DIR, compare digests with the shipped files
    python benchmarks/build_towers.py --scale tiny --probe --align # (re)measure probes and the alignment comparison only
    python benchmarks/build_towers.py --scale tiny --resume        # keep each training's state in runs/build/; a killed
                                                                   # build started again goes on where it stopped

Deterministic on one machine: fixed seeds, one thread per process, a fixed data order (two builds give identical
files). Not promised bit-identical across machines or torch versions. The build runs the vision and the language
tower in two processes, one core each.
"""
import argparse, json, os, time
from pathlib import Path

for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(v, "1")


def _align_job(scale, towers, train, steps, lr, root):
    "Worker: one alignment run on one thread (the samples and the benchmark are rebuilt here: both are deterministic)."
    import torch
    torch.set_num_threads(1)
    from sail_vl_nb.config import get_config
    from sail_vl_nb.evaluate import make_benchmark
    from sail_vl_nb.towers import alignment_run, alignment_samples
    samples, _ = alignment_samples(scale)
    return alignment_run(scale, towers, train, steps, lr, samples=samples, bench=make_benchmark(100, image_size=get_config(scale).tile_size),
                         root=root)


def measure(scale: str, root: Path, probe: bool, align: bool, steps: int, lr: float, full_steps: int) -> None:
    import torch
    torch.set_num_threads(1)
    from transformers import InternVLVisionModel
    from sail_vl_nb.config import get_config
    from sail_vl_nb.evaluate import blind_answerer, constant_answerer, make_benchmark, run_benchmarks
    from sail_vl_nb.towers import (alignment_samples, binding_accuracies, binding_probe_set, build_model, probe_accuracies,
                                   probe_set, reading_accuracy)
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text())
    if probe:
        t0 = time.perf_counter()
        cfg = get_config(scale)
        probes = probe_set(600, image_size=cfg.tile_size, seed=0)
        torch.manual_seed(0)
        rand = InternVLVisionModel(cfg.vision_config)
        model = build_model(scale, root=root)                    # loaded (and digest-checked) once for both towers
        pre = model.vision_model
        meta["probe"] = {f"{who}/{pool}": probe_accuracies(vm, probes, pool)
                         for who, vm in (("pretrained", pre), ("random", rand)) for pool in ("mean", "tokens")}
        bprobes = binding_probe_set(1800, image_size=cfg.tile_size, seed=0)
        meta["binding"] = {who: binding_accuracies(vm, bprobes) for who, vm in (("pretrained", pre), ("random", rand))}
        bench = make_benchmark(100, image_size=cfg.tile_size)
        lm = model.language_model
        meta["reading"] = {"caption": reading_accuracy(lm, scale, bench), "no_caption": reading_accuracy(lm, scale, bench, blind=True)}
        print(json.dumps({"probe": meta["probe"], "binding": meta["binding"], "reading": meta["reading"]}, indent=1), f"({time.perf_counter() - t0:.0f} s)")
        meta_path.write_text(json.dumps(meta, indent=1))
    if align:
        t0 = time.perf_counter()
        samples, world = alignment_samples(scale)
        bench = make_benchmark(100, image_size=get_config(scale).tile_size)
        answers = [q["answer"] for qa in world["qa"] for q in qa]
        top = max(set(answers), key=answers.count)
        rows = {"majority answer": run_benchmarks(constant_answerer(top), None, bench, progress=False),
                "per-question prior": run_benchmarks(blind_answerer(world), None, bench, progress=False)}
        rows = {k: {c: round(v[c], 4) for c in ("general", "ocr", "math", "hallucination", "overall")} | {"kind": "baseline"}
                for k, v in rows.items()}
        runs = [("pretrained vision + pretrained LLM", ("vision", "llm"), ("projector",), steps, lr),
                ("random vision + pretrained LLM", ("llm",), ("projector",), steps, lr),
                ("pretrained vision + random LLM", ("vision",), ("projector",), steps, lr),
                ("random vision + random LLM", (), ("projector",), steps, lr)]
        runs.append(("pretrained towers, vision + projector trained", ("vision", "llm"), ("vision", "projector"), steps,
                     {"vision": 1e-3, "projector": lr}))
        if full_steps: runs.append(("full training from random init", (), ("vision", "projector", "llm"), full_steps, 1e-3))
        import concurrent.futures as cf, multiprocessing as mp
        with cf.ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn")) as ex:   # one run per core
            futs = {ex.submit(_align_job, scale, towers, train, n, l, str(root)): (name, train)     # longest first
                    for name, towers, train, n, l in sorted(runs, key=lambda r: -r[3] * len(r[2]))}
            done = {futs[f][0]: (futs[f][1], f.result()) for f in cf.as_completed(futs)}
        for name, *_ in runs:
            train, r = done[name]
            rows[name] = r | {"kind": "projector only" if train == ("projector",) else " + ".join(train)}
            print(f"{name:40s} overall {r['overall']:.3f}  " + "  ".join(f"{c} {r[c]:.2f}" for c in ("general", "ocr", "math", "hallucination"))
                  + f"  ({r['wall_s']:.0f} s training)", flush=True)
        out = {"scale": scale, "benchmark": "make_benchmark(n_per_category=100)", "train_samples": len(samples),
               "n_world": len(world), "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
        (root / "alignment.json").write_text(json.dumps(out, indent=1))
        print(f"wrote {root / 'alignment.json'} ({out['seconds']:.0f} s)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="tiny", choices=["tiny", "small", "all"])
    p.add_argument("--out", default=None, help="folder to write to (default: the package's assets/towers/{scale})")
    p.add_argument("--check", action="store_true", help="after building, compare SHA-256 digests with the shipped files")
    p.add_argument("--serial", action="store_true", help="one process instead of two")
    p.add_argument("--resume", action="store_true", help="checkpoint the trainings in runs/build/ and go on from there")
    p.add_argument("--probe", action="store_true", help="measure linear probes and LM reading (stored in meta.json)")
    p.add_argument("--align", action="store_true", help="measure the alignment comparison (alignment.json)")
    p.add_argument("--align-steps", type=int, default=2000)
    p.add_argument("--align-lr", type=float, default=3e-3)
    p.add_argument("--full-steps", type=int, default=3000, help="steps of the full-training reference (0 = skip)")
    a = p.parse_args(argv)
    from sail_vl_nb.towers import build_towers, towers_dir
    scales = ["tiny", "small"] if a.scale == "all" else [a.scale]
    roots = {s: Path(a.out) / s if a.out and len(scales) > 1 else Path(a.out) if a.out else towers_dir(s) for s in scales}
    if not (a.probe or a.align) or a.check:
        t0 = time.perf_counter()
        metas = build_towers(scales, Path(a.out) if a.out and len(scales) > 1 else a.out, parallel=not a.serial,
                             checkpoint_dir=Path("runs/build") if a.resume else None)
        print(f"built {' + '.join(scales)} in {time.perf_counter() - t0:.0f} s on {os.cpu_count()} cores", flush=True)
        for s, meta in metas.items():
            print(f"{s}: -> {roots[s]}  {meta['bytes']}  held-out perplexity {meta['lm']['held_out_ppl']}  "
                  f"(vision {meta['seconds']['vision']:.0f} s, lm {meta['seconds']['lm']:.0f} s)")
            if a.check:
                shipped = json.loads((towers_dir(s) / "meta.json").read_text())["sha256"]
                same = {k: shipped.get(k) == v for k, v in meta["sha256"].items()}
                print(f"{s}: identical to the shipped files: {same}")
    for s in scales:
        if a.probe or a.align:
            measure(s, roots[s], a.probe, a.align, a.align_steps, a.align_lr, a.full_steps)


if __name__ == "__main__":
    main()
