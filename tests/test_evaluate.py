"""Tests of the benchmark suite and caption metrics (sail_vl_nb.evaluate)."""
import math, random, sys, types
from collections import Counter

import numpy as np
import pytest

from sail_vl_nb.evaluate import (BENCH_SEED, BLANK_GREY, ablate_images, blind_answerer, caption_metrics,
                                 cluster_bootstrap, cluster_ci, constant_answerer, gain_table, image_overlap,
                                 make_benchmark, normalize_answer, object_scores, oracle_answerer, paired_gain,
                                 random_answerer, run_benchmarks, score_answer, score_predictions, tag_table,
                                 visual_gain)
from sail_vl_nb.world import CATEGORIES, alt_text, image_digest, make_world, reference_caption

N = 60   # items per category in these tests


@pytest.fixture(scope="module")
def bench():
    return make_benchmark(N)


# ---------------------------------------------------------------- the benchmark sets
def test_category_and_level_balance(bench):
    assert Counter(bench["category"]) == {c: N for c in CATEGORIES}
    for c in CATEGORIES:
        assert Counter(l for cc, l in zip(bench["category"], bench["level"]) if cc == c) == {1: N // 3, 2: N // 3, 3: N // 3}


def test_pope_balance_per_level(bench):
    hal = [(l, a) for c, l, a in zip(bench["category"], bench["level"], bench["answer"]) if c == "hallucination"]
    assert Counter(a for _, a in hal) == {"yes": N // 2, "no": N // 2}
    for l in (1, 2, 3):
        yn = Counter(a for ll, a in hal if ll == l)
        assert yn["yes"] == yn["no"] > 0


def test_benchmark_is_fixed(bench):
    again = make_benchmark(N)
    assert again["question"] == bench["question"] and again["answer"] == bench["answer"]
    assert image_digest(again) == image_digest(bench)
    other = make_benchmark(N, seed=BENCH_SEED + 1)
    assert other["source_id"] != bench["source_id"]


def test_benchmark_is_disjoint_from_training_seeds(bench):
    sources = set(bench["source_id"])
    for seed in range(4):
        tr = make_world(150, seed=seed)
        assert not sources & set(tr["id"])
        assert not set(bench["scene_json"]) & set(tr["scene_json"])
    assert image_overlap(bench, make_world(600, seed=0)) < 0.05


def test_items_are_answerable_from_their_scene(bench):
    "Every item's question is one the world generator asks about that exact scene, with that answer."
    from sail_vl_nb.world import make_record
    by_source = {}
    for ex in bench.select(range(0, len(bench), 7)):
        sid = ex["source_id"]
        seed, idx = (int(x) for x in sid.split("-")[1:])
        rec = by_source.setdefault(sid, make_record(idx, seed, split="bench"))
        assert rec["scene_json"] == ex["scene_json"]
        assert {"question": ex["question"], "answer": ex["answer"]} in [{"question": q["question"], "answer": q["answer"]} for q in rec["qa"]]


@pytest.mark.parametrize("n", [7, 4, 0, "100"])
def test_make_benchmark_rejects_bad_sizes(n):
    with pytest.raises(ValueError, match="n_per_category"):
        make_benchmark(n)


def test_make_benchmark_reports_unfillable_quota():
    with pytest.raises(ValueError, match="could not fill"):
        make_benchmark(60, max_scenes=5)


# ---------------------------------------------------------------- answer normalisation and scoring
@pytest.mark.parametrize("raw,norm", [
    ("Yes.", "yes"), ("  RED  ", "red"), ("The blue square!", "blue square"), ("an orange", "orange"),
    ("three", "3"), ("Twenty-one", "21"), ("ninety nine", "99"), ("one hundred and five", "105"), ("one two", "1 2"),
    ("7.0", "7"), ("It is big.", "it is large"), ("centre", "center"), ("step 1, step 2. Answer: Seven", "7"), (12, "12"),
])
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


@pytest.mark.parametrize("pred,gold,score", [
    ("yes", "yes", 1), ("Yes, there is one.", "yes", 1), ("no", "yes", 0), ("not sure, yes", "yes", 0),
    ("four", "4", 1), ("40", "4", 0), ("4 circles", "4", 0), ("Blue", "blue", 1), ("blue.", "Blue", 1),
    ("green", "blue", 0), ("", "blue", 0), ("The sum is 8. Answer: 8", "8", 1),
])
def test_score_answer(pred, gold, score):
    assert score_answer(pred, gold) == score


@pytest.mark.parametrize("pred,gold", [(None, "yes"), ("yes", None), (["yes"], "yes"), ("x", "  ")])
def test_score_answer_bad_input(pred, gold):
    with pytest.raises(ValueError):
        score_answer(pred, gold)


# ---------------------------------------------------------------- run_benchmarks and the baselines
def test_oracle_scores_100(bench):
    r = run_benchmarks(oracle_answerer(bench), None, bench, progress=False)
    assert all(r[c] == 1.0 for c in CATEGORIES) and r["overall"] == 1.0
    assert r["n"] == {c: N for c in CATEGORIES}
    assert all(v == 1.0 for c in CATEGORIES for v in r["by_level"][c].values())


@pytest.mark.parametrize("ans", ["yes", "no"])
def test_constant_answer_is_exactly_chance_on_hallucination(bench, ans):
    r = run_benchmarks(constant_answerer(ans), None, bench, progress=False)
    assert r["hallucination"] == 0.5
    assert r["overall"] == pytest.approx(sum(r[c] for c in CATEGORIES) / 4)


def test_random_answerer_is_at_chance(bench):
    accs = [run_benchmarks(random_answerer(s), None, bench, progress=False) for s in range(3)]
    hal = sum(a["hallucination"] for a in accs) / 3
    assert abs(hal - 0.5) < 4 * math.sqrt(0.25 / (3 * N))
    for c in ("general", "ocr", "math"):
        assert sum(a[c] for a in accs) / 3 < 0.4


def test_scores_count_exactly(bench):
    "An oracle that is wrong on exactly k hallucination items scores exactly 1 - k/N there, 1 elsewhere."
    k = 7
    wrong = set([i for i, c in enumerate(bench["category"]) if c == "hallucination"][:k])
    flip = {"yes": "no", "no": "yes"}
    preds = [flip[a] if i in wrong else a for i, a in enumerate(bench["answer"])]
    r = score_predictions(preds, bench)
    assert r["hallucination"] == pytest.approx(1 - k / N) and r["general"] == 1.0
    assert r["overall"] == pytest.approx((3 + 1 - k / N) / 4)


def test_batching_and_progress(bench, capsys):
    sizes = []
    def answerer(images, questions):
        assert len(images) == len(questions)
        assert all(hasattr(im, "size") for im in images)
        sizes.append(len(questions)); return ["yes"] * len(questions)
    run_benchmarks(answerer, None, bench, batch_size=50, progress=True)
    assert sum(sizes) == len(bench) and max(sizes) == 50 and len(sizes) == math.ceil(len(bench) / 50)
    assert "benchmarks" in capsys.readouterr().err


def test_model_path_uses_batch_chat(bench, monkeypatch):
    "With a processor, questions go through sail_vl_nb.text.batch_chat with greedy decoding."
    calls = []
    oracle = oracle_answerer(bench)
    def batch_chat(model, processor, images, questions, max_new_tokens=None, do_sample=None):
        calls.append((model, processor, len(questions), max_new_tokens, do_sample))
        return oracle(images, questions)
    fake = types.ModuleType("sail_vl_nb.text"); fake.batch_chat = batch_chat
    monkeypatch.setitem(sys.modules, "sail_vl_nb.text", fake)
    r = run_benchmarks("MODEL", "PROC", bench, batch_size=32, max_new_tokens=5, progress=False)
    assert r["overall"] == 1.0
    assert {c[:2] for c in calls} == {("MODEL", "PROC")} and {c[3:] for c in calls} == {(5, False)}
    assert max(c[2] for c in calls) == 32


@pytest.mark.parametrize("kw,msg", [
    (dict(model="not callable", processor=None), "answerer"),
    (dict(model=lambda ims, qs: ["yes"], processor=None), "returned"),
    (dict(model=lambda ims, qs: ["yes"] * len(qs), processor=None, batch_size=0), "batch_size"),
])
def test_run_benchmarks_bad_input(bench, kw, msg):
    with pytest.raises(ValueError, match=msg):
        run_benchmarks(bench=bench, progress=False, **kw)


def test_run_benchmarks_rejects_empty_or_foreign_sets(bench):
    with pytest.raises(ValueError, match="empty"):
        run_benchmarks(constant_answerer(), None, bench.select([]), progress=False)
    with pytest.raises(ValueError, match="lacks columns"):
        run_benchmarks(constant_answerer(), None, bench.remove_columns(["answer"]), progress=False)


# ---------------------------------------------------------------- the blindness gate
def _items(correct, per_picture=4):
    return [dict(id=f"i{k}", source_id=f"p{k // per_picture}", category=CATEGORIES[k % 4], level=1 + k % 3, tag="t",
                 correct=int(c)) for k, c in enumerate(correct)]


def test_items_agree_with_the_scores(bench):
    r = run_benchmarks(random_answerer(1), None, bench, progress=False, return_items=True)
    assert [x["id"] for x in r["items"]] == bench["id"] and [x["source_id"] for x in r["items"]] == bench["source_id"]
    for c in CATEGORIES:
        got = [x["correct"] for x in r["items"] if x["category"] == c]
        assert set(got) <= {0, 1} and sum(got) / len(got) == pytest.approx(r[c])
    assert "items" not in run_benchmarks(random_answerer(1), None, bench, progress=False)


def test_blank_ablation(bench):
    ab = ablate_images(bench, "blank")
    assert ab["id"] == bench["id"] and ab["question"] == bench["question"] and ab.features == bench.features
    for im, ref in zip(ab.select(range(0, len(bench), 9))["image"], bench.select(range(0, len(bench), 9))["image"]):
        assert im.size == ref.size and (np.asarray(im.convert("RGB")) == BLANK_GREY).all()


def test_shuffle_moves_every_picture_and_keeps_the_set(bench):
    from sail_vl_nb.evaluate import _image_key
    ab = ablate_images(bench, "shuffle", seed=3)
    real, moved = [_image_key(im) for im in bench["image"]], [_image_key(im) for im in ab["image"]]
    assert all(a != b for a, b in zip(real, moved))
    per_source = lambda keys: dict(zip(bench["source_id"], keys))
    assert Counter(per_source(real).values()) == Counter(per_source(moved).values())
    assert [_image_key(im) for im in ablate_images(bench, "shuffle", seed=3)["image"]] == moved


def test_ablate_images_bad_input(bench):
    with pytest.raises(ValueError, match="unknown ablation mode"):
        ablate_images(bench, "noise")
    with pytest.raises(ValueError, match="cannot shuffle"):
        ablate_images(bench.select([0]), "shuffle")


def test_bootstrap_known_cases():
    g = paired_gain(_items([1] * 48), _items([0] * 48))
    assert g["estimate"] == {**{c: 1.0 for c in CATEGORIES}, "overall": 1.0}
    assert all(ci == (1.0, 1.0) for ci in g["ci"].values()) and g["clusters"] == 12
    z = paired_gain(_items([1, 0, 1] * 16), _items([1, 0, 1] * 16), by=("category", "level"))
    assert set(z["estimate"].values()) == {0.0} and set(z["ci"].values()) == {(0.0, 0.0)}
    rng = np.random.default_rng(1)
    widths = []
    for n in (80, 800, 8000):
        ci = paired_gain(_items(rng.random(n) < 0.8), _items(rng.random(n) < 0.3), by=None)["ci"]["overall"]
        widths.append(ci[1] - ci[0])
    assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0


def test_bootstrap_is_seeded_and_fast():
    import time
    rng = np.random.default_rng(2)
    a, b = _items(rng.random(800) < 0.6), _items(rng.random(800) < 0.5)
    t = time.perf_counter(); g1 = paired_gain(a, b, seed=5); elapsed = time.perf_counter() - t
    assert g1 == paired_gain(a, b, seed=5) and g1["ci"] != paired_gain(a, b, seed=6)["ci"]
    assert elapsed < 1.0
    lo, hi = cluster_ci(a, by=None)["ci"]["overall"]
    assert lo < sum(x["correct"] for x in a) / 800 < hi


@pytest.mark.parametrize("b,msg", [(_items([0] * 7), "same items"), (_items([0] * 7) + [dict(_items([0])[0], id="x")], "differ")])
def test_paired_gain_bad_input(b, msg):
    with pytest.raises(ValueError, match=msg):
        paired_gain(_items([1] * 8), b)


def test_cluster_bootstrap_bad_input():
    for kw, msg in [(dict(values=[1, 0], clusters=["p"]), "clusters"), (dict(values=[], clusters=[]), "non-empty"),
                    (dict(values=[1, 0], clusters="pq", n_boot=0), "n_boot"), (dict(values=[1, 0], clusters="pq", level=1.5), "level")]:
        with pytest.raises(ValueError, match=msg):
            cluster_bootstrap(**kw)


def test_visual_gain_of_blind_and_oracle(bench):
    blind = blind_answerer(make_world(300, seed=0))
    b = visual_gain(blind, None, bench, prior=blind, n_boot=500, progress=False)
    assert all(b["gain"][c] == 0.0 and b["ci"][c] == (0.0, 0.0) for c in (*CATEGORIES, "overall"))
    o = visual_gain(oracle_answerer(bench), None, bench, n_boot=500, progress=False)
    assert o["gain"]["overall"] == 1.0 and o["ablated"]["overall"] == 0.0 and o["prior"] is None
    s = visual_gain(oracle_answerer(bench), None, bench, "shuffle", n_boot=500, progress=False)
    assert s["gain"]["overall"] > 0.5 and s["ci"]["overall"][0] > 0.5
    assert s["gain"]["overall"] == pytest.approx(s["real"]["overall"] - s["ablated"]["overall"])
    t = gain_table(b)
    assert list(t.index) == [*CATEGORIES, "overall"] and list(t.columns) == ["real", "blank", "prior", "gain", "CI low", "CI high"]
    tt = tag_table(o)
    assert tt["n"].sum() == len(bench) and (tt["gain"] == 1.0).all() and "prior" not in tt.columns


# ---------------------------------------------------------------- caption metrics
@pytest.fixture(scope="module")
def corpus():
    ws = make_world(120, seed=21)
    return list(ws["scene_json"]), list(ws["caption"])


def test_identical_captions(corpus):
    scenes, caps = corpus
    m = caption_metrics(caps, caps, scenes)
    assert m["BLEU-4"] == pytest.approx(1.0) and m["CIDEr"] == pytest.approx(10.0)
    assert m["object_precision"] == m["object_recall"] == m["text_recall"] == 1.0 and m["CHAIR_s"] == m["CHAIR_i"] == 0


def test_metrics_rank_captions_sensibly(corpus):
    scenes, caps = corpus
    reworded = caption_metrics([reference_caption(s, random.Random(5)) for s in scenes], caps, scenes)
    swapped = caption_metrics(caps[3:] + caps[:3], caps, scenes)
    halluc = caption_metrics([alt_text(s, random.Random(i), "hallucinated_object") for i, s in enumerate(scenes)], caps, scenes)
    assert 1.0 < reworded["CIDEr"] < 10 and 0.2 < reworded["BLEU-4"] < 1
    assert swapped["CIDEr"] < 0.5 * reworded["CIDEr"] and swapped["CHAIR_s"] > 0.8
    assert reworded["CHAIR_i"] == 0 and reworded["object_recall"] == 1.0
    assert halluc["CHAIR_s"] == 1.0 and halluc["object_recall"] == 1.0


def test_object_scores_on_a_known_pair():
    scene = {"kind": "text", "text": "42", "text_row": 0, "objects": [
        {"shape": "circle", "color": "red", "size": "large", "row": 1, "col": 0},
        {"shape": "circle", "color": "blue", "size": "small", "row": 1, "col": 1},
        {"shape": "star", "color": "green", "size": "small", "row": 2, "col": 2}]}
    s = object_scores("Two circles, a red one and a yellow star; the number 42.", scene)
    # mentions: (None, circle) ok, (yellow, star) hallucinated; "a red one" names no shape
    assert s == {"mentions": 2, "hallucinated": 1, "kinds": 3, "recalled": 0, "has_text": True, "text_found": True}
    m = caption_metrics(["a red circle, a blue circle and a green star", "a purple cross"], [["x y z"], "q"], [scene, scene])
    assert m["object_precision"] == pytest.approx(3 / 4) and m["CHAIR_i"] == pytest.approx(1 / 4)
    assert m["object_recall"] == pytest.approx(3 / 6) and m["CHAIR_s"] == 0.5 and m["text_recall"] == 0.0


@pytest.mark.parametrize("args,msg", [
    (([], []), "non-empty"), (("a caption", ["a"]), "non-empty"), ((["a", "b"], ["a"]), "reference"),
    ((["a"], [[]]), "reference string"), ((["a"], ["a"], []), "scenes"), (([None], ["a"]), "strings"),
])
def test_caption_metrics_bad_input(args, msg):
    with pytest.raises(ValueError, match=msg):
        caption_metrics(*args)
