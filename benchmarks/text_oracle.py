#!/usr/bin/env python
"""The ceiling of the language side: the tiny LLM tower fine-tuned with *perfect perception* — each picture's
reference caption given as text in place of the picture — on the same questions and budget as the `tiny-full`
stage, then scored on the benchmark with the true caption of each benchmark picture. Whatever this cannot answer,
no vision tower can make the tiny VLM answer within that budget.

    python benchmarks/text_oracle.py                         # 3000 steps, the tiny-full learning rate, bench seed 7
    python benchmarks/text_oracle.py --lr 3e-3 --out data_samples/gate/text_oracle_lr3e-3.json

Prints and writes accuracy per category and per question tag (with item counts).
"""
import argparse, json, os, platform, random, tempfile, time
from collections import defaultdict
from pathlib import Path

for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(v, "1")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000); ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--n-world", type=int, default=2000); ap.add_argument("--bench-seed", type=int, default=7)
    ap.add_argument("--eval", type=int, default=200); ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="data_samples/gate/text_oracle.json")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    from sail_vl_nb.evaluate import make_benchmark, score_predictions
    from sail_vl_nb.text import batch_chat
    from sail_vl_nb.towers import build_model, processor_for
    from sail_vl_nb.train import load_stage, train_stage
    from sail_vl_nb.world import load_scene, make_world, reference_caption
    t0 = time.perf_counter()
    world = make_world(a.n_world, seed=0)
    samples = [{"id": f"{r['id']}/{k}", "images": [], "messages": [{"role": "user", "content": f"{r['caption']}\n{q['question']}"},
                {"role": "assistant", "content": q["answer"]}]} for r in world for k, q in enumerate(r["qa"])]
    stage = load_stage("tiny-full")
    stage.train, stage.max_steps, stage.epochs, stage.save_every = ("llm",), a.steps, None, None
    if a.lr: stage.lr = a.lr
    model, proc = build_model("tiny"), processor_for("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        r = train_stage(model, proc, stage, samples, tmp, progress=False)
    model.eval()
    bench = make_benchmark(a.eval, seed=a.bench_seed)
    caps = [reference_caption(load_scene(sj), random.Random(0)) for sj in bench["scene_json"]]
    qs = [f"{c}\n{q}" for c, q in zip(caps, bench["question"])]
    preds = []
    for i in range(0, len(qs), 50): preds += batch_chat(model, proc, [None] * len(qs[i:i + 50]), qs[i:i + 50], max_new_tokens=8)
    res = score_predictions(preds, bench, return_items=True)
    tags = defaultdict(list)
    for x in res["items"]: tags[(x["category"], x["level"], x["tag"])].append(x["correct"])
    import transformers
    out = {"command": "python benchmarks/text_oracle.py " + " ".join(argv or []), "steps": a.steps, "lr": stage.lr,
           "train_samples": len(samples), "bench": {"n_per_category": a.eval, "seed": a.bench_seed},
           "scores": {c: round(res[c], 4) for c in ("general", "ocr", "math", "hallucination", "overall")},
           "by_tag": [{"category": c, "level": l, "tag": t, "n": len(v), "accuracy": round(sum(v) / len(v), 4)}
                      for (c, l, t), v in sorted(tags.items())],
           "final_loss": round(r.final_loss, 4), "seconds": round(time.perf_counter() - t0, 1), "date": time.strftime("%Y-%m-%d"),
           "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out["scores"]), f"({out['seconds']:.0f} s) -> {a.out}")


if __name__ == "__main__":
    main()
