#!/usr/bin/env python
"""The lever search behind the tiny-full stage: one vision tower, one VLM training, real vs blank pictures.

Each run (1 thread) optionally pretrains a vision tower with the dense heads only (`--vision dense`; the package's
`pretrain_vision` with `contrastive_weight=0`), trains the VLM from it and the shipped language tower, and scores
it on `make_benchmark(200, seed=7)` (the tuning benchmark; the gate itself is judged on seed 0) with the real and with
blank pictures. One line of JSON per run is appended to runs/see_levers.jsonl.

    python benchmarks/see_levers.py --vision dense --vsteps 1500 --save runs/dense1500.pt --no-vlm   # a tower
    python benchmarks/see_levers.py --vision runs/dense1500.pt --task vqa --train projector,llm     # a VLM on it
    python benchmarks/see_levers.py --vision dense --tile 96 --patch 16 --task conversations        # 9 image tokens

The rows in data_samples/gate/levers.csv were made by an earlier revision of this runner whose dense heads were its
own copy (same targets and pools, the cell head split differently); rerunning gives the same picture, not the same
digits. Seed-to-seed spread at this size is about ±0.04 in a visual gain (one seed per row).
"""
import argparse, json, os, time
for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(v, "1")
import torch


def vlm_run(vision_state, overrides, train, steps, n_world, task, lr, batch_size, max_length, bench_seed, n_bench, out):
    from sail_vl_nb.data import caption_samples, conversation_samples, vqa_samples
    from sail_vl_nb.evaluate import make_benchmark, visual_gain
    from sail_vl_nb.towers import build_model, processor_for
    from sail_vl_nb.train import load_stage, train_stage
    from sail_vl_nb.world import make_world
    t0 = time.perf_counter()
    st = load_stage("tiny-full")
    st.max_steps, st.epochs, st.batch_size, st.save_every = steps, None, batch_size, None
    if max_length: st.max_length = max_length
    if train: st.train = tuple(train)
    if lr: st.lr = lr
    model = build_model("tiny", towers=("llm",) if vision_state is not None else ("vision", "llm"), **overrides)
    if vision_state is not None: model.vision_model.load_state_dict(vision_state)
    proc = processor_for("tiny", **overrides)
    world = make_world(n_world, seed=0, image_size=model.config.tile_size)
    samples = {"vqa": lambda: vqa_samples(world), "mixed": lambda: vqa_samples(world) + caption_samples(world),
               "conversations": lambda: conversation_samples(world),
               "conversations+caption": lambda: conversation_samples(world, describe=True)}[task]()
    r = train_stage(model, proc, st, samples, out, progress=False)
    res = visual_gain(model.eval(), proc, make_benchmark(n_bench, seed=bench_seed, image_size=model.config.tile_size),
                      batch_size=50, max_new_tokens=8, progress=False, n_boot=500)
    cats = ("general", "ocr", "math", "hallucination", "overall")
    return {"real": {c: round(res["real"][c], 3) for c in cats}, "blank": {c: round(res["ablated"][c], 3) for c in cats},
            "gain": {c: round(res["gain"][c], 3) for c in cats}, "final_loss": round(r.final_loss, 4),
            "total_s": round(time.perf_counter() - t0)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vision", default="shipped", help="shipped | dense | a .pt state dict saved with --save")
    ap.add_argument("--vsteps", type=int, default=1500); ap.add_argument("--vlr", type=float, default=3e-3)
    ap.add_argument("--tile", type=int, default=0); ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3000); ap.add_argument("--n-world", type=int, default=2000)
    ap.add_argument("--task", default="vqa", choices=["vqa", "mixed", "conversations", "conversations+caption"])
    ap.add_argument("--train", default="", help="modules to train, comma-separated (default: the stage's)")
    ap.add_argument("--lr", default=None, help='JSON: one rate or {"projector": .., "llm": ..}')
    ap.add_argument("--bs", type=int, default=32); ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--bench-seed", type=int, default=7); ap.add_argument("--n-bench", type=int, default=200)
    ap.add_argument("--save", default=None); ap.add_argument("--no-vlm", action="store_true")
    ap.add_argument("--tag", default="run"); ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from sail_vl_nb.towers import VisionRecipe, pretrain_vision
    overrides = dict(tile_size=a.tile, vision_config={"patch_size": a.patch}) if a.tile else {}
    if a.vision == "shipped": vs = None
    elif a.vision == "dense":
        vs, _ = pretrain_vision("tiny", VisionRecipe(steps=a.vsteps, lr=a.vlr, contrastive_weight=0.0, dense_weight=1.0),
                                log_every=100, **overrides)
    else: vs = torch.load(a.vision)
    if a.save: torch.save(vs, a.save)
    if a.no_vlm: return
    res = vlm_run(vs, overrides, [m for m in a.train.split(",") if m], a.steps, a.n_world, a.task,
                  json.loads(a.lr) if a.lr else None, a.bs, a.max_length, a.bench_seed, a.n_bench, f"runs/levers-{a.tag}")
    print(json.dumps(res))
    os.makedirs("runs", exist_ok=True)
    with open("runs/see_levers.jsonl", "a") as f: f.write(json.dumps({"args": vars(a), **res}) + "\n")


if __name__ == "__main__":
    main()
