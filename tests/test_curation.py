"""Tests of the curation pipeline (sail_vl_nb.curation) that need more than a notebook cell: the broken-record corpus,
accounting that can catch a lost record, dedup against injected duplicates, component failures, the sharded run
(two processes killed mid-way, then resumed, must give byte-identical files), and the command line."""
import argparse, filecmp, glob, io, os, signal, struct, subprocess, sys, time, unicodedata, zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sail_vl_nb.curation import (AltTextCaptioner, CurationConfig, FeatureJudge, OracleJudge, ReferenceCaptioner, SceneIndex,
                                 VLMCaptioner, _judge_net, add_curate_parser, bad_records, balanced_subset, check_accounting,
                                 curate, curate_sharded, decode_image, judge_agreement, judge_examples, load_curated,
                                 make_pool, oracle_scores, phrase_labels, reference_set, text_filter_reason, train_judge)
from sail_vl_nb.world import make_record, make_world, png_bytes

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pool():
    return make_pool(300, seed=3)


@pytest.fixture(scope="module")
def corpus():
    return bad_records()


# ---------------------------------------------------------------- broken input
def test_bad_record_corpus_every_fate_as_expected(corpus):
    assert len(corpus) >= 30
    expected_reasons = [e for _, _, e in corpus if e]
    assert len(set(expected_reasons)) >= 20, "the corpus should exercise many different reasons"
    res = curate([r for _, r, _ in corpus])
    assert len(res.kept) + len(res.rejected) == len(corpus) == res.n_in
    got = {row: reason for row, reason in zip(res.rejected["row"], res.rejected["reason"])}
    kept_rows = set(res.kept["row"])
    wrong = [(name, exp, None if k in kept_rows else got[k]) for k, (name, _, exp) in enumerate(corpus)
             if (None if k in kept_rows else got[k]) != exp]
    assert not wrong, f"records that met the wrong fate (name, expected, got): {wrong}"
    hist = Counter(res.rejected["reason"])
    assert hist == Counter(expected_reasons)
    for row in res.ledger.itertuples():           # the ledger adds up step by step
        assert row.n_in - row.n_out == row.n_rejected == sum(row.reasons.values())
    absent = {"missing_image", "missing_id", "empty_caption"}    # reasons that say it all: something is not there
    for reason, detail in zip(res.rejected["reason"], res.rejected["detail"]):
        assert isinstance(detail, str), f"{reason}: detail {detail!r} is not a string"
        assert detail or reason in absent, f"rejection {reason!r} carries no detail"
    assert all(s in ("normalize", "image_filter", "text_filter", "dedup") for s in res.rejected["step"])


def test_kept_records_are_normalised(corpus):
    res = curate([r for _, r, _ in corpus])
    by_name = {name: k for k, (name, _, _) in enumerate(corpus)}
    kept = {r["row"]: r for r in res.kept}
    for r in kept.values():
        assert r["image"].mode == "RGB" and min(r["image"].size) >= 32
        assert r["caption"] == unicodedata.normalize("NFC", r["caption"]) and "\x00" not in r["caption"]
    assert kept[by_name["int id"]]["id"] == "987654"
    assert kept[by_name["caption None → alt-text used"]]["caption_source"] == "alt_text"
    assert kept[by_name["caption in NFD with control chars"]]["caption"].startswith("Café sign: a small red circle")
    assert kept[by_name["16-bit greyscale PNG"]]["orig_mode"] in ("I;16", "I", "I;16B")
    assert kept[by_name["CMYK JPEG"]]["orig_mode"] == "CMYK"
    # the EXIF-rotated JPEG comes out upright: close to the picture it was made from
    k = by_name["EXIF-rotated JPEG"]
    src = Image.open(io.BytesIO(png_bytes(make_record(11, 123, 64, "broken")["image"]))).convert("RGB")
    got = np.asarray(kept[k]["image"], dtype=float)
    assert got.shape == np.asarray(src).shape and np.abs(got - np.asarray(src, dtype=float)).mean() < 12
    # half-transparent RGBA is composited on white: brighter than the picture itself
    k = by_name["RGBA PNG (half transparent)"]
    src = make_record(6, 123, 64, "broken")["image"]
    assert np.asarray(kept[k]["image"], dtype=float).mean() > np.asarray(src, dtype=float).mean() + 5
    assert kept[by_name["extra columns of odd types"]]["meta"].startswith('{"extra"')


def test_decompression_bomb_is_refused_from_the_header():
    im = Image.new("RGB", (4, 4)); buf = io.BytesIO(); im.save(buf, "PNG"); png = buf.getvalue()
    ihdr = b"IHDR" + struct.pack(">II", 60000, 60000) + png[24:29]
    fake = png[:8] + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]
    t0 = time.perf_counter()
    res = curate([{"id": "bomb", "image": fake, "caption": "three words here"}])
    assert time.perf_counter() - t0 < 5
    assert list(res.rejected["reason"]) == ["decompression_bomb"]
    assert res.rejected[0]["raw_image"] == fake           # the raw bytes are kept for inspection


def test_wrong_column_types_in_a_dataset(tmp_path):
    from datasets import Dataset
    good = png_bytes(make_record(0, 5, 64, "types")["image"])
    p = tmp_path / "img.png"; p.write_bytes(png_bytes(make_record(1, 5, 64, "types")["image"]))
    ds = Dataset.from_dict({"id": [1, 2, 3, 4], "image": [str(p), str(p) + ".missing", "", str(p)],
                            "caption": [7, 8, 9, 10], "alt_text": [0.5, 1.5, 2.5, 3.5]})
    res = curate(ds)
    assert len(res.kept) == 0 and len(res.rejected) == 4
    assert Counter(res.rejected["reason"]) == Counter({"bad_alt_text_type": 4})
    ds2 = Dataset.from_dict({"id": [1, 2, 2], "image": [good, good, b"x"], "caption": ["a red circle here"] * 3})
    res2 = curate(ds2)
    assert list(res2.kept["id"]) == ["1"]
    assert sorted(res2.rejected["reason"]) == ["duplicate_id", "duplicate_image_exact"]


def test_curate_refuses_what_is_not_a_collection():
    with pytest.raises(ValueError, match="iterable of records"): curate("not records")
    with pytest.raises(ValueError, match="iterable of records"): curate(42)
    res = curate([])
    assert len(res.kept) == len(res.rejected) == 0


# ---------------------------------------------------------------- accounting
def test_check_accounting_catches_losses_and_double_counts(pool):
    res = curate(pool.select(range(80)), AltTextCaptioner(), OracleJudge(SceneIndex.from_records(pool)))
    kept, rej, led = list(res.kept), list(res.rejected), res.ledger
    check_accounting(80, kept, rej, led)
    with pytest.raises(AssertionError, match="in 80"): check_accounting(80, kept[1:], rej, led)
    with pytest.raises(AssertionError, match="not unique"):
        check_accounting(81, kept + [dict(kept[0], row=80)], rej, led)
    bad = led.copy(); bad.loc[3, "n_out"] -= 1
    with pytest.raises(AssertionError): check_accounting(80, kept, rej, bad)
    relabel = [dict(r, reason="something_else") if i == 0 else r for i, r in enumerate(rej)]
    with pytest.raises(AssertionError, match="disagree"): check_accounting(80, kept, relabel, led)


# ---------------------------------------------------------------- rules, oracle, dedup
def test_text_filters_keep_every_reference_caption():
    ds = make_world(400, seed=21)
    cfg = CurationConfig()
    assert [c for c in ds["caption"] if text_filter_reason(c, cfg)] == []
    assert text_filter_reason("red red circle circle blue blue square square", cfg)[0] == "caption_repetitive"


def test_oracle_on_references_and_alt_text_noise():
    ds = make_world(300, seed=22)
    for ex in ds:
        s = oracle_scores(ex["caption"], ex["scene_json"])
        assert s == dict(richness=5, alignment=5, verdict=True), (ex["caption"], s)
    by = {}
    for ex in ds: by.setdefault(ex["alt_noise"], []).append(oracle_scores(ex["alt_text"], ex["scene_json"]))
    assert all(s["verdict"] and s["alignment"] == 5 and s["richness"] == 4 for s in by["none"])
    assert all(not s["verdict"] for s in by["hallucinated_object"] + by["wrong_attribute"])
    assert all(s["richness"] == 1 for s in by["spam"] + by["terse"])
    assert np.mean([not s["verdict"] for s in by["unrelated"]]) > 0.9
    assert np.mean([s["richness"] <= 3 for s in by["missing_objects"]]) == 1.0


def test_dedup_finds_every_injected_duplicate_and_nothing_else(pool):
    idx = SceneIndex.from_records(pool)
    res = curate(pool, ReferenceCaptioner(idx), OracleJudge(idx))
    assert set(res.rejected["step"]) <= {"dedup"}
    n_dup = sum(bool(d) for d in pool["dup_of"])
    assert len(res.rejected) == n_dup
    kept_scenes = list(res.kept["scene_json"])
    assert len(set(kept_scenes)) == len(kept_scenes) == len(set(pool["scene_json"]))
    assert set(res.rejected["reason"]) == {"duplicate_image_exact", "duplicate_image_near"}


def test_near_duplicate_captions_are_dropped():
    recs = [make_record(i, 31, 64, "capdup") for i in range(3)]
    cap = recs[0]["caption"]
    rows = [dict(id=f"r{i}", image=png_bytes(r["image"]), caption=c) for i, (r, c) in
            enumerate(zip(recs, [cap, cap.replace("background.", "background!"), recs[2]["caption"]]))]
    res = curate(rows)
    assert list(res.kept["id"]) == ["r0", "r2"]
    assert list(res.rejected["reason"]) == ["duplicate_caption"]


def test_curate_is_deterministic(pool):
    a, b = curate(pool), curate(pool)
    assert list(a.kept["id"]) == list(b.kept["id"]) and list(a.rejected["detail"]) == list(b.rejected["detail"])


# ---------------------------------------------------------------- components that misbehave
def test_failing_captioner_and_judge_are_recorded_not_fatal(pool):
    sub = pool.select(range(40))
    bad_rows = {0, 7}

    class Flaky:
        name = "flaky"
        def __call__(self, images, alts):
            if any(pixel_sum(im) in bad_sums for im in images): raise RuntimeError("GPU fell over")
            return ["A plain caption with enough words number " + str(pixel_sum(im)) for im in images]

    def pixel_sum(im): return int(np.asarray(im, dtype=np.int64).sum())
    imgs = [decode_image(sub[i]["image"])[0] for i in sorted(bad_rows)]
    bad_sums = {pixel_sum(im) for im in imgs}

    class BadJudge:
        def score(self, images, captions): return [dict(richness=7, alignment=3, verdict="yes") for _ in images]

    res = curate(sub, Flaky(), BadJudge())
    rej = dict(zip(res.rejected["row"], res.rejected["reason"]))
    assert {r for r, why in rej.items() if why == "captioner_error"} == bad_rows
    assert Counter(rej.values())["judge_bad_output"] == 40 - len(bad_rows)
    with pytest.raises(ValueError, match="returned 1 results"):
        curate(sub, lambda images, alts: ["one caption only"])
    with pytest.raises(ValueError, match="judge must have score"):
        curate(sub, None, judge=object())


# ---------------------------------------------------------------- learned parts
def test_balanced_subset_and_reference_set(pool):
    idx = balanced_subset([("a", 1)] * 50 + [("b", 1)] * 5 + [("b", 2)] * 5 + [("c", 9)] * 40, 30)
    g = Counter("a" if i < 50 else "b" if i < 60 else "c" for i in idx)
    assert g == Counter(a=10, b=10, c=10)
    ref = reference_set(pool, 60)
    assert Counter(r["kind"] for r in ref) == Counter(shapes=20, text=20, chart=20)
    assert all(oracle_scores(r["caption"], pool[[x for x in range(len(pool)) if pool[x]["id"] == r["id"]][0]]["scene_json"])
               ["verdict"] for r in ref[:10])


def test_feature_judge_trains_saves_and_loads(tmp_path):
    ims, caps, ys, pls = judge_examples(60, seed=5)
    assert ims.shape[1:] == (64, 64, 3) and ys.shape == (len(caps), 3) and pls.shape[0] == len(caps)
    assert set(np.unique(pls)) <= {-1, 0, 1} and set(ys[:, 2]) == {0, 1}
    judge, hist = train_judge(steps=60, batch_size=64, examples=(ims, caps, ys, pls), device="cpu")
    assert np.mean(hist[-10:]) < np.mean(hist[:10])
    out = judge.score([Image.fromarray(a) for a in ims[:5]], caps[:5])
    assert len(out) == 5 and all(1 <= o["richness"] <= 5 and isinstance(o["verdict"], bool) for o in out)
    judge.save(tmp_path / "j")
    again = FeatureJudge.load(tmp_path / "j")
    assert again.score([Image.fromarray(a) for a in ims[:5]], caps[:5]) == out
    agr = judge_agreement(out, ys[:5])
    assert 0 <= agr["drop_precision"] <= 1 and agr["n"] == 5


def test_phrase_labels_mark_the_false_phrase():
    from sail_vl_nb.world import Obj, Scene
    scene = Scene("shapes", objects=[Obj("circle", "red", "small", 0, 0), Obj("star", "blue", "large", 1, 1)])
    cap = "Two shapes are drawn. A small red circle is at the top left. A big blue star is at the bottom right. It is nice."
    assert list(phrase_labels(cap, scene)[:5]) == [1, 1, 0, -1, -1]
    # 5 claims (a count, two objects, two positions), 1 wrong: alignment 3; no invented object: verdict yes
    assert oracle_scores(cap, scene) == dict(richness=5, alignment=3, verdict=True)


def test_vlm_captioner_interface_and_roundtrip(tmp_path):
    from sail_vl_nb.config import get_config
    from sail_vl_nb.model import SailVLForConditionalGeneration
    from sail_vl_nb.text import SailVLProcessor, default_tokenizer
    cfg = get_config("tiny"); torch.manual_seed(0)
    cap = VLMCaptioner(SailVLForConditionalGeneration(cfg), SailVLProcessor.from_config(cfg, default_tokenizer("tiny")),
                       max_new_tokens=6, batch_size=3)
    recs = [make_record(i, 2, 64, "cap") for i in range(5)]
    alts = [r["alt_text"] for r in recs[:4]] + [""]
    out = cap([r["image"] for r in recs], alts)
    assert len(out) == 5 and all(isinstance(o, str) for o in out)
    assert cap.prompts(["x", ""]) == ["Rewrite this caption so it matches the image: x", "Describe the image in detail."]
    cap.save_pretrained(tmp_path / "c")
    again = VLMCaptioner.from_pretrained(tmp_path / "c", device="cpu")
    assert again([r["image"] for r in recs], alts) == out


# ---------------------------------------------------------------- sharded runs
def test_sharded_run_equals_in_memory_curate(pool, tmp_path):
    src = tmp_path / "pool"; pool.save_to_disk(str(src))
    s = curate_sharded(str(src), tmp_path / "out", shard_size=64, captioner="alt", judge="oracle", progress=False)
    assert s["shards"] == 5 and s["shards_this_run"] == 5 and s["kept"] + s["rejected"] == len(pool)
    mem = curate(pool, AltTextCaptioner(), OracleJudge(SceneIndex.from_records(pool)))
    disk = load_curated(tmp_path / "out")
    assert list(disk.kept["id"]) == list(mem.kept["id"]) and list(disk.kept["caption"]) == list(mem.kept["caption"])
    assert list(disk.rejected["reason"]) == list(mem.rejected["reason"])
    again = curate_sharded(str(src), tmp_path / "out", shard_size=64, captioner="alt", judge="oracle", progress=False)
    assert again["shards_this_run"] == 0
    with pytest.raises(ValueError, match="other settings"):
        curate_sharded(str(src), tmp_path / "out", shard_size=32, captioner="alt", judge="oracle", progress=False)


SCRIPT = """
import argparse, sys
from sail_vl_nb.curation import add_curate_parser
p = argparse.ArgumentParser(prog="sail-vl"); sub = p.add_subparsers(); add_curate_parser(sub)
a = p.parse_args(["curate"] + sys.argv[1:]); a.func(a)
"""


def _descendants(pid: int) -> list[int]:
    "Every process below `pid` (torchrun starts its workers in sessions of their own, so killing its group is not enough)."
    kids = {}
    for st in glob.glob("/proc/[0-9]*/stat"):
        try: fields = Path(st).read_text().rsplit(")", 1)[1].split()
        except OSError: continue
        kids.setdefault(int(fields[1]), []).append(int(st.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []): out.append(c); todo.append(c)
    return out


def _kill_all(p):
    "SIGKILL a launcher and every worker it started (a lost machine, not a polite shutdown)."
    for pid in _descendants(p.pid) + [p.pid]:
        try: os.kill(pid, signal.SIGKILL)
        except ProcessLookupError: pass
    p.wait()


def _torchrun(script, args, **kw):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)] + args
    return cmd, env


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers to kill through /proc")
def test_two_processes_killed_midway_then_resumed_give_identical_files(pool, tmp_path):
    src = tmp_path / "pool"; pool.save_to_disk(str(src))
    ref = tmp_path / "ref"
    curate_sharded(str(src), ref, shard_size=25, captioner="alt", judge="oracle", progress=False)   # 1 process
    script = tmp_path / "run.py"; script.write_text(SCRIPT)
    out = tmp_path / "out"
    args = ["--input", str(src), "--out", str(out), "--shard-size", "25", "--captioner", "alt", "--judge", "oracle",
            "--no-progress"]
    cmd, env = _torchrun(script, args)
    p = subprocess.Popen(cmd + ["--throttle", "0.4"], env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    while not glob.glob(str(out / "shards" / "shard-*" / "DONE")):
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        assert time.time() - t0 < 120, "no shard finished within 2 minutes"
        time.sleep(0.05)
    _kill_all(p)
    done_before = sorted(glob.glob(str(out / "shards" / "shard-*" / "DONE")))
    n_shards = -(-len(pool) // 25)
    assert 1 <= len(done_before) < n_shards and not (out / "final").exists()
    (out / "shards" / ".tmp-shard-00011-999-deadbeef").mkdir()          # debris of a killed writer
    (out / "shards" / ".tmp-shard-00011-999-deadbeef" / "candidates.parquet").write_bytes(b"half a file")
    mtimes = {f: os.path.getmtime(f) for f in done_before}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(os.path.getmtime(f) == m for f, m in mtimes.items()), "finished shards must be skipped"
    assert not glob.glob(str(out / "shards" / ".tmp-*"))
    for f in ("kept.parquet", "rejected.parquet", "ledger.json"):
        assert filecmp.cmp(out / "final" / f, ref / "final" / f, shallow=False), f
    assert "kept" in r.stdout and load_curated(out).n_in == len(pool)


def test_cli_parser_has_every_threshold():
    p = argparse.ArgumentParser(); sub = p.add_subparsers(); add_curate_parser(sub)
    a = p.parse_args(["curate", "--world", "10", "--out", "x", "--min-side", "48", "--require-verdict", "false"])
    assert a.min_side == 48 and a.require_verdict is False and a.judge == "none" and a.func.__name__ == "cli_curate"
    with pytest.raises(SystemExit): p.parse_args(["curate", "--out", "x"])            # no input given


def test_cli_runs_in_process_with_a_judge_folder(tmp_path, capsys):
    judge_dir = FeatureJudge(_judge_net()).save(tmp_path / "judge")
    p = argparse.ArgumentParser(); sub = p.add_subparsers(); add_curate_parser(sub)
    a = p.parse_args(["curate", "--world", "40", "--out", str(tmp_path / "out"), "--captioner", "alt",
                      "--judge", str(judge_dir), "--shard-size", "16", "--no-progress"])
    summary = a.func(a)
    assert summary["n_in"] == 42 and summary["kept"] + summary["rejected"] == 42 and summary["shards"] == 3
    assert "kept" in capsys.readouterr().out
    res = load_curated(tmp_path / "out")
    assert set(res.kept["caption_source"]) <= {"alt_text"} and res.kept["richness"] is not None
    with pytest.raises(ValueError, match="unknown judge"):
        curate_sharded(tmp_path / "out" / "pool" / "data", tmp_path / "o2", judge="nonsense", progress=False)
