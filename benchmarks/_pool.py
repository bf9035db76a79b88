"""What the lever runners share: a results table started with its header, and runs spread over worker processes."""
import csv
from pathlib import Path


def start_table(path: Path, fields: list) -> None:
    "Create the CSV at `path` with its header unless it exists (rows are appended one finished run at a time)."
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with open(path, "w", newline="") as fh: csv.DictWriter(fh, fieldnames=fields).writeheader()


def run_all(one_run, names: list, workers: int = 1) -> None:
    "Call `one_run(name)` for each name, in this process or in `workers` spawned processes, printing what each returns."
    if workers == 1:
        for r in names: print(one_run(r), flush=True)
        return
    import concurrent.futures as cf, multiprocessing as mp
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
        for msg in ex.map(one_run, names): print(msg, flush=True)
