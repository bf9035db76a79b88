#!/usr/bin/env python
"""How fast is curation on CPU at the tiny scale? Targets: filters + dedup >= 1000 records/s, judge >= 100 records/s,
re-captioning (batched, KV cache) >= 10 captions/s.

Three measurements, each printed with its target:

* filters + dedup: `curate` without captioner and judge on a world pool (decode, normalise, image and text filters,
  fingerprints, exact/perceptual/MinHash dedup, building the output datasets) — records/s end to end, and per step;
* judge: `FeatureJudge.score` on (image, caption) pairs — a random-init one by default (the cost does not depend on
  the weights), or a trained one with --judge DIR; the oracle judge for comparison;
* re-captioning: `VLMCaptioner` with batched greedy generation and the KV cache. By default a random-init tiny model
  forced to write exactly --tokens tokens per caption (the mean reference caption is ~64 tokens); with
  --captioner DIR a trained one, whose captions stop at their own end token (and whose slowest caption sets the pace
  of its batch).

Usage:
    python benchmarks/curation_throughput.py
    python benchmarks/curation_throughput.py --captioner runs/captioner --judge runs/judge
"""
import argparse, os, time

import torch

from sail_vl_nb.curation import (FeatureJudge, OracleJudge, SceneIndex, VLMCaptioner, _judge_net, curate, decode_image,
                                 make_pool)


def _images(ds):
    raw = ds.cast_column("image", type(ds.features["image"])(decode=False))
    return [decode_image(r["image"])[0] for r in raw]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="pool records for filters + dedup")
    ap.add_argument("--n-judge", type=int, default=2000)
    ap.add_argument("--n-caption", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128, help="captions per generate call")
    ap.add_argument("--tokens", type=int, default=80, help="tokens per caption for the random-init captioner")
    ap.add_argument("--captioner", help="a trained captioner folder (VLMCaptioner.save_pretrained)")
    ap.add_argument("--judge", help="a trained judge folder (FeatureJudge.save)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (and CPU cores pinned, where supported); on a busy machine, more threads than "
                         "free cores is far slower (OpenMP threads wait for each other)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    print(f"curation throughput on CPU: {args.threads} thread(s), torch {torch.__version__}")
    rows = []

    # 1. filters + dedup
    pool = make_pool(args.n, seed=7)
    curate(pool.select(range(200)))                                    # warm up imports and caches
    t0 = time.perf_counter(); res = curate(pool); dt = time.perf_counter() - t0
    rows.append(("filters + dedup", len(pool) / dt, 1000, "records/s"))
    steps = res.ledger.set_index("step")["seconds"].to_dict()
    steps["fingerprints"] = float(res.ledger["fingerprint_seconds"].fillna(0).sum())
    print(f"  curate({len(pool)} records): {dt:.2f} s; per step (s): " +
          ", ".join(f"{k} {v:.2f}" for k, v in steps.items()) + f"; building datasets + checks {dt - sum(steps.values()):.2f}")

    # 2. judge
    jpool = make_pool(args.n_judge, seed=8, dup_rate=0)
    imgs, caps = _images(jpool), list(jpool["alt_text"])
    judge = FeatureJudge.load(args.judge) if args.judge else FeatureJudge(_judge_net())
    judge.score(imgs[:64], caps[:64])
    t0 = time.perf_counter(); judge.score(imgs, caps); dt = time.perf_counter() - t0
    rows.append((f"judge ({'trained' if args.judge else 'random-init'} FeatureJudge)", len(imgs) / dt, 100, "records/s"))
    oracle = OracleJudge(SceneIndex.from_records(jpool))
    t0 = time.perf_counter(); oracle.score(imgs, caps); dt = time.perf_counter() - t0
    rows.append(("judge (oracle, for comparison)", len(imgs) / dt, None, "records/s"))

    # 3. re-captioning
    cpool = make_pool(args.n_caption, seed=9, dup_rate=0)
    cimgs, alts = _images(cpool), list(cpool["alt_text"])
    if args.captioner:
        cap = VLMCaptioner.from_pretrained(args.captioner, device="cpu", max_new_tokens=128, batch_size=args.batch_size)
        what = "trained"
    else:
        from sail_vl_nb.config import get_config
        from sail_vl_nb.model import SailVLForConditionalGeneration
        from sail_vl_nb.text import SailVLProcessor, default_tokenizer
        cfg = get_config("tiny"); torch.manual_seed(0)
        cap = VLMCaptioner(SailVLForConditionalGeneration(cfg), SailVLProcessor.from_config(cfg, default_tokenizer("tiny")),
                           max_new_tokens=args.tokens, batch_size=args.batch_size, min_new_tokens=args.tokens)
        what = f"random-init, {args.tokens} tokens each"
    cap(cimgs[:8], alts[:8])
    t0 = time.perf_counter(); out = cap(cimgs, alts); dt = time.perf_counter() - t0
    ntok = sum(len(cap.processor.tokenizer(o)["input_ids"]) for o in out)
    rows.append((f"re-captioning ({what}, batch {args.batch_size})", len(cimgs) / dt, 10, "captions/s"))
    print(f"  re-captioning: {len(cimgs)} captions, {ntok / len(cimgs):.0f} tokens on average, {ntok / dt:.0f} tokens/s")

    print(f"\n{'measurement':<58}{'rate':>10}  {'target':>8}  ")
    for name, rate, target, unit in rows:
        verdict = "" if target is None else ("PASS" if rate >= target else "FAIL")
        print(f"{name:<58}{rate:>10.1f}  {('>= ' + str(target)) if target else '':>8}  {unit:<11}{verdict}")
    return rows


if __name__ == "__main__":
    main()
