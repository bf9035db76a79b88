#!/usr/bin/env python
"""The vision tower's binding levers: does each image token know its own cell's colour, shape and size?

Each run pretrains a tiny vision tower with `pretrain_vision` (the shipped recipe, or one lever changed: tile and
patch size, width, depth, steps, the weight of the dense heads) and scores the token-level binding probes of
`towers.probes` (`binding_accuracies`: a linear probe per occupied cell on that cell's own pooled patch tokens,
fitted on 1,200 scenes and scored on 600 held-out ones; count from the 9 cell tokens side by side). Targets (issue: a vision tower that
binds): colour, shape and size >= 0.95, count >= 0.90.

    python benchmarks/binding_levers.py --runs shipped 96p16 --workers 2
    python benchmarks/binding_levers.py --list

One row per finished run in data_samples/towers/binding/levers.csv (a run already there is skipped; a run is a few
minutes, so it is not checkpointed); settings, versions and commands in runs.json beside it; the weights in
runs/binding/NAME.safetensors (kept out of the repository). One thread per worker.
"""
import argparse, csv, json, os, platform, time
from pathlib import Path

for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(v, "1")

OUT = Path("data_samples/towers/binding")
PROBE_SCENES = 1800                 # 1,200 fit, 600 scored
FIELDS = ["run", "colour", "shape", "size", "count", "train_acc_cell", "tile", "patch", "llm_tokens", "params", "seconds"]
# name -> (VisionRecipe fields changed from the shipped tiny recipe, get_config overrides)
P16 = dict(tile_size=96, vision_config={"patch_size": 16})
RUNS = {
    "shipped": ({}, {}),                                                   # 64 px tiles, 8-px patches, 64 x 2
    "96p16": ({}, P16),                                                    # one 2x2 patch block = one grid cell
    "64p8-d4": ({}, dict(vision_config={"num_hidden_layers": 4})),
    "64p8-w128": ({}, dict(vision_config={"hidden_size": 128, "intermediate_size": 512})),
    "64p8-dense3": (dict(dense_weight=3.0), {}),
    "64p8-3000": (dict(steps=3000), {}),
    "96p16-w128": ({}, P16 | dict(vision_config={"patch_size": 16, "hidden_size": 128, "intermediate_size": 512})),
    "96p16-3000": (dict(steps=3000), P16),
    "96p16-6000": (dict(steps=6000), P16),
    "96p16-d4": ({}, P16 | dict(vision_config={"patch_size": 16, "num_hidden_layers": 4})),
    "96p16-d4-3000": (dict(steps=3000), P16 | dict(vision_config={"patch_size": 16, "num_hidden_layers": 4})),
}


def done() -> set:
    f = OUT / "levers.csv"
    if not f.exists(): return set()
    with open(f) as fh: return {r["run"] for r in csv.DictReader(fh)}


def one_run(name: str) -> str:
    "Pretrain run `name`'s tower (or load its saved weights), probe it and append its row."
    import torch
    torch.set_num_threads(1)
    from dataclasses import asdict, replace
    from transformers import InternVLVisionModel
    from safetensors.torch import load_file, save_file
    from sail_vl_nb.config import get_config
    from sail_vl_nb.text import default_tokenizer
    from sail_vl_nb.towers import RECIPES, binding_accuracies, binding_probe_set
    from sail_vl_nb.towers.vision import pretrain_vision
    if name in done(): return f"{name}: already done"
    fields, overrides = RUNS[name]
    recipe = replace(RECIPES["tiny"]["vision"], **fields)
    cfg = get_config("tiny", **overrides)
    meta = json.loads((OUT / "runs.json").read_text()) if (OUT / "runs.json").exists() else {}
    weights = Path("runs/binding") / f"{name}.safetensors"
    if weights.exists() and "seconds" in meta.get(name, {}):                      # trained before: probe again only
        state, info = load_file(str(weights)), {"history": [meta[name]["history_last"]], "seconds": meta[name]["seconds"]}
    else:
        state, info = pretrain_vision("tiny", recipe, default_tokenizer("tiny"), progress=False, **overrides)
        weights.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(weights))                                              # kept out of the repository
    vm = InternVLVisionModel(cfg.vision_config); vm.load_state_dict(state)
    acc = binding_accuracies(vm, binding_probe_set(PROBE_SCENES, image_size=cfg.tile_size, seed=0))
    patch = cfg.vision_config.patch_size
    row = {"run": name, **acc, "train_acc_cell": info["history"][-1].get("acc_cell"), "tile": cfg.tile_size,
           "patch": patch[0] if isinstance(patch, (list, tuple)) else patch, "llm_tokens": cfg.num_image_token,
           "params": sum(p.numel() for p in vm.parameters()), "seconds": info["seconds"]}
    with open(OUT / "levers.csv", "a", newline="") as fh: csv.DictWriter(fh, fieldnames=FIELDS).writerow(row)
    import transformers
    meta = json.loads((OUT / "runs.json").read_text()) if (OUT / "runs.json").exists() else {}
    meta[name] = {"command": f"python benchmarks/binding_levers.py --runs {name}", "recipe": asdict(recipe) | {"changes": list(recipe.changes)},
                  "config_overrides": overrides, "probe": f"binding_probe_set({PROBE_SCENES}, seed=0), first 2/3 of scenes fit, rest scored",
                  "date": time.strftime("%Y-%m-%d"), "threads": 1, "history_last": info["history"][-1], "seconds": info["seconds"],
                  "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}}
    (OUT / "runs.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return f"{name}: {json.dumps(row)}"


def probe_sizes(name: str) -> None:
    """The count probe of run `name`'s saved tower read three ways — all patch tokens fitted on 400 scenes (the first
    design), all patch tokens on 1,200, the 9 cell tokens on 1,200 (the design now) — into probe_sizes.json."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    from safetensors.torch import load_file
    from transformers import InternVLVisionModel
    from sail_vl_nb.config import get_config
    from sail_vl_nb.towers import binding_probe_set, linear_probe, vision_features
    cfg = get_config("tiny", **RUNS[name][1])
    vm = InternVLVisionModel(cfg.vision_config); vm.load_state_dict(load_file(f"runs/binding/{name}.safetensors"))
    out = {"run": name, "command": f"python benchmarks/binding_levers.py --probe-sizes {name}", "count": {}}
    for n in (600, 1800):
        pr = binding_probe_set(n, image_size=cfg.tile_size, seed=0)
        tok, d, cut = vision_features(vm, pr["pixels"], "tokens"), cfg.vision_config.hidden_size, int(n * 2 / 3)
        g = int(round((tok.shape[1] // d) ** 0.5))
        cells = F.adaptive_avg_pool2d(tok.view(n, g, g, d).permute(0, 3, 1, 2), 3).flatten(1)
        for what, x in (("all patch tokens", tok), ("9 cell tokens", cells)):
            out["count"][f"{what}, fitted on {cut} scenes"] = round(linear_probe(x[:cut], pr["count"][:cut], x[cut:], pr["count"][cut:]), 3)
    (OUT / "probe_sizes.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=["shipped", "96p16"], choices=sorted(RUNS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--probe-sizes", help="the count probe of this run's saved tower by probe design (probe_sizes.json)")
    a = ap.parse_args(argv)
    if a.probe_sizes: return probe_sizes(a.probe_sizes)
    if a.list:
        for k, v in RUNS.items(): print(k, *v)
        return
    from _pool import run_all, start_table
    start_table(OUT / "levers.csv", FIELDS)
    run_all(one_run, a.runs, a.workers)


if __name__ == "__main__":
    main()
