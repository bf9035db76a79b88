#!/usr/bin/env python
"""How fast does the procedural world generate samples? (target: >= 300 samples/s on one core at 64 px)

Runs `make_world` pinned to one CPU core at several image sizes and prints samples/s, plus where the time goes
(scene + text + questions, drawing, PNG encoding). Usage:

    python benchmarks/world_rate.py                 # 64, 128, 224, 448 px
    python benchmarks/world_rate.py --sizes 64 --n 3000
"""
import argparse, os, random, time

from sail_vl_nb.world import (alt_text, make_questions, make_world, png_bytes, reference_caption, render_scene,
                              sample_noise, sample_scene)


def rate(fn, n):
    t0 = time.perf_counter(); fn(); return n / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224, 448])
    ap.add_argument("--n", type=int, default=1000, help="samples at 64 px (fewer at larger sizes)")
    ap.add_argument("--cores", type=int, default=1, help="pin to this many cores (0: no pinning)")
    args = ap.parse_args(argv)
    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    make_world(20)                                                     # warm up fonts and background caches
    print(f"world generation rate ({cores} core(s))")
    print(f"{'size':>6} {'n':>6} {'make_world/s':>13} {'text+qa/s':>10} {'draw/s':>9} {'png/s':>9}")
    for size in args.sizes:
        n = max(50, int(args.n * (64 / size) ** 1.5))
        scenes = [sample_scene(random.Random(i)) for i in range(n)]
        def texts():
            for i, s in enumerate(scenes):
                rng = random.Random(i)
                alt_text(s, rng, sample_noise(rng, s, 0.5)); reference_caption(s, rng); make_questions(s, rng)
        images = []
        r_text = rate(texts, n)
        r_draw = rate(lambda: images.extend(render_scene(s, size) for s in scenes), n)
        r_png = rate(lambda: [png_bytes(im) for im in images], n)
        r_all = rate(lambda: make_world(n, seed=1, image_size=size), n)
        print(f"{size:>6} {n:>6} {r_all:>13.0f} {r_text:>10.0f} {r_draw:>9.0f} {r_png:>9.0f}")


if __name__ == "__main__":
    main()
