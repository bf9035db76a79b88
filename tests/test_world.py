"""Tests of the procedural world (sail_vl_nb.world) that need more than a notebook cell: an independent answer
checker, properties of every alt-text noise type, determinism across processes, bad inputs, the sample records."""
import os, random, re, subprocess, sys, time
from collections import Counter
from pathlib import Path

import pytest

from sail_vl_nb.world import (ALT_NOISES, CATEGORIES, SHAPES, SIDES, Bar, Obj, Scene, alt_text, applicable_noises,
                              image_digest, load_scene, make_questions, make_record, make_world, objects_in_text,
                              pos_name, read_records, render_scene, sample_scene)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def world():
    return make_world(300, seed=11)


# ---------------------------------------------------------------- determinism and ids
def test_same_seed_same_bytes_other_seed_other_bytes():
    a, b, c = make_world(40, seed=3), make_world(40, seed=3), make_world(40, seed=4)
    assert image_digest(a) == image_digest(b)
    assert a["caption"] == b["caption"] and a["qa"] == b["qa"] and a["alt_text"] == b["alt_text"]
    assert image_digest(a) != image_digest(c)
    assert not set(a["id"]) & set(c["id"])


def test_records_do_not_depend_on_batch_or_start():
    whole = make_world(12, seed=5)
    parts = [make_world(5, seed=5), make_world(7, seed=5, start=5)]
    assert list(parts[0]["scene_json"]) + list(parts[1]["scene_json"]) == list(whole["scene_json"])
    assert make_record(9, seed=5)["caption"] == whole[9]["caption"]


def test_determinism_across_processes():
    code = "from sail_vl_nb.world import make_world, image_digest; print(image_digest(make_world(30, seed=2)))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout.strip() for h in (1, 2)}
    assert len(outs) == 1 and outs == {image_digest(make_world(30, seed=2))}


def test_splits_are_separate_seed_spaces():
    tr, be = make_world(20, seed=0), make_world(20, seed=0, split="bench")
    assert not set(tr["id"]) & set(be["id"])
    assert tr["scene_json"] != be["scene_json"]


def test_dataset_columns_and_stored_truth(world):
    for col in ("id", "image", "kind", "scene", "scene_json", "alt_text", "alt_noise", "caption", "qa"):
        assert col in world.column_names
    assert type(world.features["image"]).__name__ == "Image"
    assert len(set(world["id"])) == len(world)
    for ex in world.select(range(10)):
        sc = load_scene(ex["scene_json"])
        assert load_scene(ex["scene"]) == sc
        assert ex["image"].tobytes() == render_scene(sc, 64).tobytes()


# ---------------------------------------------------------------- questions, checked by an independent solver
def solve(scene: Scene, q: str):
    "Answer a world question from the record alone, with code written separately from the generator."
    objs, bars = scene.objects, scene.bars
    color_of = {b.color: b.value for b in bars}
    def find(ref):
        m = re.fullmatch(r"shape at the (.+)", ref)
        if m: return [o for o in objs if o.pos == m.group(1)]
        words = ref.split()
        return [o for o in objs if o.shape == words[-1] and all(w in (o.size, o.color) for w in words[:-1])]
    if m := re.fullmatch(r"How many shapes are there\?", q): return str(len(objs))
    if m := re.fullmatch(r"How many bars are there\?", q): return str(len(bars))
    if m := re.fullmatch(r"How many (\w+) shapes are there\?", q):
        return str(sum(m.group(1) in (o.color, o.size) for o in objs))
    if m := re.fullmatch(r"How many (\w+) are there\?", q):
        shape = {s + ("es" if s == "cross" else "s"): s for s in SHAPES}[m.group(1)]
        return str(sum(o.shape == shape for o in objs))
    if m := re.fullmatch(r"What shape is at the (.+)\?", q): return next(o.shape for o in objs if o.pos == m.group(1))
    if m := re.fullmatch(r"What colour is the (.+)\?", q):
        if not m.group(1).startswith("shape directly"):
            (o,) = find(m.group(1)); return o.color
    if m := re.fullmatch(r"What is the value of the (\w+) bar\?", q): return str(color_of[m.group(1)])
    if m := re.fullmatch(r"Which bar is labelled (\d)\?", q): return next(b.color for b in bars if b.value == int(m.group(1)))
    if q == "Which bar is the tallest?": return max(bars, key=lambda b: b.value).color
    if q == "Which bar is the shortest?": return min(bars, key=lambda b: b.value).color
    if q == "What is the total of all the bars?": return str(sum(color_of.values()))
    if m := re.fullmatch(r"What is the sum of the (\w+) and (\w+) bars\?", q): return str(color_of[m.group(1)] + color_of[m.group(2)])
    if q in ("What word is written in the image?", "What number is written in the image?"): return scene.text
    if q == "Is the text at the top or the bottom?": return "top" if scene.text_row == 0 else "bottom"
    if m := re.fullmatch(r"Is there an? (\w+) (\w+) in the image\?", q):
        return "yes" if (m.group(1), m.group(2)) in scene.things else "no"
    if m := re.fullmatch(r"Is there an? (\w+) (\w+) at the (.+)\?", q):
        return "yes" if any(o.color == m.group(1) and o.shape == m.group(2) and o.pos == m.group(3) for o in objs) else "no"
    if m := re.fullmatch(r"Is there an? (\w+) (\w+) directly (above|below|to the left of|to the right of) the (.+)\?", q):
        dr, dc = {"above": (-1, 0), "below": (1, 0), "to the left of": (0, -1), "to the right of": (0, 1)}[m.group(3)]
        if m.group(2) == "bar":
            i = [b.color for b in bars].index(m.group(4).split()[0])
            return "yes" if i + 1 < len(bars) and bars[i + 1].color == m.group(1) else "no"
        (p,) = find(m.group(4))
        t = scene.at(p.row + dr, p.col + dc) if 0 <= p.row + dr <= 2 and 0 <= p.col + dc <= 2 else None
        return "yes" if t is not None and (t.color, t.shape) == (m.group(1), m.group(2)) else "no"
    if m := re.fullmatch(r"How many sides does the (.+) have\?", q):
        ref = m.group(1)
        if ref.startswith("shape at"): (o,) = find(ref)
        else:
            words = ref.split()[:-1]
            (o,) = [o for o in objs if all(w in (o.size, o.color) for w in words) and
                    sum(all(w in (x.size, x.color) for w in words) for x in objs) == 1]
        return str(SIDES[o.shape])
    return None


def test_answers_agree_with_an_independent_solver():
    checked, tags = 0, Counter()
    for i in range(600):
        sc = sample_scene(random.Random(f"t{i}"))
        for qa in make_questions(sc, random.Random(i)):
            want = solve(sc, qa["question"])
            if want is None: continue
            assert qa["answer"] == want, (qa, sc)
            checked += 1; tags[qa["tag"]] += 1
    assert checked > 3000
    for t in ("count_all", "count_color", "count_size", "shape_at", "color_of", "bar_value", "bar_with_label",
              "tallest_bar", "bar_total", "read_word", "read_number", "pope_yes", "pope_adversarial", "pos_wrong_place",
              "neighbour_yes", "neighbour_no", "bar_neighbour_no", "sides"):
        assert tags[t] > 5, (t, tags)


def test_category_level_coverage_and_pope_balance(world):
    qas = [q for qs in world["qa"] for q in qs]
    assert {q["category"] for q in qas} == set(CATEGORIES)
    cl = Counter((q["category"], q["level"]) for q in qas)
    assert all(cl[(c, l)] >= 30 for c in CATEGORIES for l in (1, 2, 3)), cl
    for l in (1, 2, 3):
        yn = Counter(q["answer"] for q in qas if q["category"] == "hallucination" and q["level"] == l)
        assert yn["yes"] == yn["no"] > 0, (l, yn)
    negs = Counter(q["tag"] for q in qas if q["tag"].startswith("pope_") and q["answer"] == "no")
    assert {"pope_random", "pope_near", "pope_adversarial"} <= set(negs), negs


def test_level3_items_carry_worked_answers(world):
    for qs in world["qa"]:
        for q in qs:
            if q["level"] == 3:
                assert q["worked"].endswith(f"Answer: {q['answer']}") and len(q["worked"]) > len(q["answer"]) + 20
            else:
                assert q["worked"] == q["answer"]
            assert 1 <= len(q["answer"].split()) <= 2 and q["answer"] == q["answer"].lower()


def test_reference_captions_cover_everything(world):
    for ex in world:
        sc, cap = load_scene(ex["scene_json"]), ex["caption"]
        ment = objects_in_text(cap)
        assert set(sc.things) <= set(ment)
        assert all(c is None or (c, s) in sc.things for c, s in ment)
        for o in sc.objects: assert o.pos in cap
        if sc.text: assert sc.text.upper() in cap
        for b in sc.bars: assert str(b.value) in cap


# ---------------------------------------------------------------- alt-text noise
def _scene_pool(n=400):
    return [sample_scene(random.Random(f"n{i}")) for i in range(n)]


@pytest.mark.parametrize("noise", ALT_NOISES)
def test_each_noise_type_does_what_it_says(noise):
    n_applied = 0
    for i, sc in enumerate(_scene_pool()):
        if noise not in applicable_noises(sc): continue
        n_applied += 1
        faithful = set(objects_in_text(alt_text(sc, random.Random(i), "none")))
        alt = alt_text(sc, random.Random(i), noise)
        ment = objects_in_text(alt)
        wrong = [m for m in ment if m[0] and m not in sc.things]
        if noise == "none":
            assert not wrong and set(sc.things) <= set(ment), (alt, sc)
        elif noise in ("wrong_attribute", "hallucinated_object"):
            assert len(wrong) == 1, (noise, alt, sc)
        elif noise == "missing_objects":
            assert not wrong and (len(set(ment)) < len(faithful) or (sc.text and sc.text not in alt)), (alt, sc)
        elif noise in ("empty",):
            assert alt == ""
        elif noise in ("spam", "terse"):
            assert alt and not ment
        elif noise == "unrelated":
            assert alt and not any(m in sc.things for m in ment), (alt, sc)
        elif noise == "repeated_words":
            toks = alt.split()
            assert any(a == b for a, b in zip(toks, toks[1:])) and not wrong
    assert n_applied > 300


def test_noise_rate_knob():
    clean = make_world(80, seed=1, noise_rate=0.0)
    noisy = make_world(80, seed=1, noise_rate=1.0)
    assert set(clean["alt_noise"]) == {"none"}
    assert "none" not in set(noisy["alt_noise"]) and len(set(noisy["alt_noise"])) >= 6
    assert clean["scene_json"] == noisy["scene_json"]          # the knob changes the text, not the pictures


# ---------------------------------------------------------------- parser
@pytest.mark.parametrize("text,want", [
    ("two small red circles and a blue star", [("red", "circle"), ("blue", "star")]),
    ("An orange cross, a yellow hexagon and purple triangles.", [("orange", "cross"), ("yellow", "hexagon"), ("purple", "triangle")]),
    ("bar chart with green and brown bars", [("green", "bar"), ("brown", "bar")]),
    ("There is no red square here, only a square.", [(None, "square")]),
    ("click here | buy now", []),
    ("", []),
])
def test_objects_in_text(text, want):
    assert objects_in_text(text) == want


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("call,msg", [
    (lambda: make_world(-3), "non-negative"),
    (lambda: make_world(2.5), "non-negative"),
    (lambda: make_world(2, split="no spaces"), "split"),
    (lambda: make_world(2, noise_rate=1.5), "noise_rate"),
    (lambda: make_world(2, p_chart=2.0), "p_text"),
    (lambda: make_record(-1), "non-negative"),
    (lambda: render_scene(Scene("shapes", objects=[Obj("circle", "red", "large", 0, 0)]), 10_000), "image_size"),
    (lambda: render_scene({"kind": "shapes", "objects": [{"shape": "blob", "color": "red", "size": "large", "row": 0, "col": 0}]}), "shape"),
    (lambda: load_scene(42), "cannot read"),
    (lambda: load_scene('{"kind": "shapes", "colour": "red"}'), "unknown scene fields"),
    (lambda: Scene("chart", bars=[Bar("red", 12), Bar("blue", 3)]).validate(), "bar value"),
    (lambda: Scene("text", objects=[Obj("star", "red", "small", 1, 1)], text="hello", text_row=0).validate(), "text"),
    (lambda: alt_text(Scene("shapes", objects=[Obj("star", "red", "small", 1, 1)]), 0, "missing_objects"), "does not apply"),
    (lambda: pos_name(1, 5), "outside"),
])
def test_bad_input_raises_value_error(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


# ---------------------------------------------------------------- sample records and speed
def test_sample_records_are_world_records():
    recs = read_records(ROOT / "data_samples" / "records.jsonl")
    assert len(recs) >= 10 and len({r["id"] for r in recs}) == len(recs)
    assert {r["kind"] for r in recs} == {"shapes", "text", "chart"}
    for r in recs:
        assert r["image"].size == (r["image_size"],) * 2
        drawn = render_scene(r["scene"], r["image_size"]).tobytes()
        assert sum(abs(a - b) for a, b in zip(drawn, r["image"].tobytes())) / len(drawn) < 2
        assert {q["category"] for q in r["qa"]} <= set(CATEGORIES)


def test_bad_records_file(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        read_records(tmp_path / "missing.jsonl")
    (tmp_path / "r.jsonl").write_text("{oops\n")
    with pytest.raises(ValueError, match="not JSON"):
        read_records(tmp_path / "r.jsonl")


def test_generation_rate_floor():
    make_world(5)
    t0 = time.perf_counter(); make_world(200, seed=9); dt = time.perf_counter() - t0
    assert 200 / dt > 100, f"{200 / dt:.0f} samples/s at 64 px; benchmarks/world_rate.py measures it properly"
