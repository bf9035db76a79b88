"""How long do 1000 bootstrap refits take for 10 points, per law and per resampling scheme?

    python benchmarks/bootstrap_speed.py [n_boot]

Prints one line per (law, data) pair; the target for `sail_vl_nb.scaling` is 1000 resamples in under 5 s."""
import sys, time
import numpy as np
from sail_vl_nb.scaling import LAWS, bootstrap_law, compare_laws

n_boot = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
rng = np.random.default_rng(0)
x = np.geomspace(1e6, 1e11, 10)
data = {'log-shaped': 30 + 1.2 * np.log(x) + rng.normal(0, 0.4, 10),
        'saturating': 70 - 400 * x ** -0.2 + rng.normal(0, 0.4, 10)}
print(f"{'law':9s} {'data':11s} {'seconds':>8s} {'per refit':>10s} failed")
for dname, y in data.items():
    for name in LAWS:
        t0 = time.perf_counter()
        bs = bootstrap_law(x, y, name, n_boot=n_boot, seed=0)
        dt = time.perf_counter() - t0
        print(f"{name:9s} {dname:11s} {dt:8.2f} {dt / n_boot * 1e3:8.2f}ms {bs.n_failed:6d}")
xs = np.repeat(x[::2], 3)
ys = 30 + 1.2 * np.log(xs) + rng.normal(0, 0.4, xs.size)
t0 = time.perf_counter()
bs = bootstrap_law(xs, ys, 'log', n_boot=n_boot, seed=0)
print(f"log, 5 sizes x 3 seeds ({bs.method}): {time.perf_counter() - t0:.2f} s")
t0 = time.perf_counter()
compare_laws(x, data['log-shaped'], n_boot=n_boot)
print(f"compare_laws, all {len(LAWS)} laws x {n_boot} resamples (+ fits and held-out refits): {time.perf_counter() - t0:.2f} s")
