"`sail-vl demo --quick` as a user runs it: exit codes, the report's sections with numbers, results.json, refusals."
import json, os, re, shutil, subprocess, sys
from pathlib import Path

from sail_vl_nb.demo import CATEGORIES


def _cli():
    exe = Path(sys.executable).parent / "sail-vl"
    cmd = [str(exe)] if exe.exists() else [shutil.which("sail-vl")]
    assert cmd[0], "the sail-vl console script is not installed"
    return cmd


def test_demo_quick_end_to_end(tmp_path):
    out, env = tmp_path / "demo", {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    r = subprocess.run(_cli() + ["demo", "--quick", "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "visual gain" in r.stdout and "report.html" in r.stdout          # the summary table reached the terminal
    assert "Warning" not in r.stderr, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["DONE", "figures", "recipe", "report.html", "report.md", "results.json"]
    md = (out / "report.md").read_text()
    sections = re.split(r"^## ", md, flags=re.M)[1:]
    assert len(sections) >= 6
    for s in sections:                                     # every section says something measured
        title = s.splitlines()[0]
        if title.startswith("5."): continue                # the closing "what this shows" section is prose
        assert re.search(r"\d\.\d{2,}|\d{2,}", s), f"section {title!r} holds no number"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "src=\"figures/" not in html
    res = json.loads((out / "results.json").read_text())
    assert {"command", "date", "versions", "curation", "recipe", "final", "scaling", "wall_s", "quick"} <= set(res)
    assert res["quick"] is True and [r["stage"] for r in res["recipe"]["rows"]][-1] == "sft-preference"
    for k in ("real", "blank", "prior", "gain"):
        assert set(res["final"][k]) == set(CATEGORIES)
        assert all(0 <= v <= 1 for v in res["final"][k].values()) or k == "gain"
    f = res["final"]
    assert all(abs(f["real"][c] - f["blank"][c] - f["gain"][c]) < 1e-3 for c in CATEGORIES)
    assert res["curation"]["n_pool"] >= 60 and sum(res["curation"]["kept"].values()) > 0
    # a second run into the same folder is refused (rc 2, one line); --force replaces it
    again = subprocess.run(_cli() + ["demo", "--quick", "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
    # same machine, same versions: a second run gives every number again, bit for bit (only times and the date differ)
    forced = subprocess.run(_cli() + ["demo", "--quick", "--out", str(out), "--force"], capture_output=True, text=True, env=env, timeout=600)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert _numbers(json.loads((out / "results.json").read_text())) == _numbers(res)


TIMES = {"date", "command", "train_s", "eval_s", "wall_s"}


def _numbers(x):
    "results.json without what a rerun may change (the date, the command line, wall times), as JSON text (NaN == NaN)."
    def strip(v):
        if isinstance(v, dict): return {k: strip(w) for k, w in v.items() if k not in TIMES and not k.endswith("seconds")}
        return [strip(w) for w in v] if isinstance(v, list) else v
    return json.dumps(strip(x), sort_keys=True)


def test_quoted_band_is_the_measured_one():
    "The band the report quotes (demo.REPRO_BAND) is the one benchmarks/repro_band.py measured and committed."
    from sail_vl_nb.demo import REPRO_BAND, reproduce_text
    band = json.loads((Path(__file__).parent.parent / "data_samples" / "repro" / "band.json").read_text())["band"]
    for k, name in (("overall", "final real overall"), ("gain", "final gain overall")):
        assert tuple(REPRO_BAND[k]) == (band[name]["min"], band[name]["max"]), k
    assert "bit for bit" in reproduce_text() and f"{REPRO_BAND['overall'][0]:.3f}" in reproduce_text()
