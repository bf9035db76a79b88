"The pieces behind the blindness gate: dense targets, the stage's data defaults, the gate's verdict."
import importlib.util, random
from pathlib import Path
import pytest
import torch
from sail_vl_nb.towers import CELL_CLASSES, DENSE_TEXTS, DenseHeads, dense_targets, pretrained_towers
from sail_vl_nb.train import Stage, load_stage
from sail_vl_nb.world import COLORS, SIZES, sample_scene

ROOT = Path(__file__).resolve().parent.parent


def test_dense_targets_match_the_scenes():
    scenes = [sample_scene(random.Random(f"t:{i}")) for i in range(200)]
    y = dense_targets(scenes)
    for s, cell, color, size, text, bv, n in zip(scenes, y["cell"], y["color"], y["size"], y["text"], y["bar_value"], y["count"]):
        assert n.item() == len(s.things) - 1
        if s.kind == "chart":
            assert (cell == -100).all() and [v for v in bv.tolist() if v] == [b.value for b in s.bars]
            continue
        assert (bv == -100).all()
        for o in s.objects:
            k = 3 * o.row + o.col
            assert CELL_CLASSES[cell[k]] == o.shape and list(COLORS)[color[k] - 1] == o.color and SIZES[size[k] - 1] == o.size
        empty = {3 * r + c for r in range(3) for c in range(3)} - {3 * o.row + o.col for o in s.objects}
        for k in empty:
            assert CELL_CLASSES[cell[k]] == ("text" if k // 3 == s.text_row else "empty")
        assert [DENSE_TEXTS[t - 1] if t else "" for t in text.tolist()] == [s.text if r == s.text_row else "" for r in range(3)]


def test_dense_heads_learn_a_fixed_batch():
    torch.manual_seed(0)
    scenes = [sample_scene(random.Random(f"fit:{i}"), kind="shapes") for i in range(16)]
    y = dense_targets(scenes)
    tokens = torch.randn(16, 64, 32)
    heads = DenseHeads(32)
    opt = torch.optim.Adam(heads.parameters(), 1e-2)
    first = None
    for _ in range(150):
        loss = sum(DenseHeads.losses(heads(tokens), y).values())
        first = first if first is not None else loss.item()
        opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < 0.2 * first
    assert DenseHeads.accuracies(heads(tokens), y)["color"] > 0.9


def test_stage_data_defaults():
    s = load_stage("tiny-full")
    assert s.data["task"] == "mixed" and set(s.train) == {"projector", "llm"}
    assert Stage.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown data key"):
        Stage("x", max_steps=1, data={"scenes": 3})


def test_shipped_tiny_vision_recipe_has_dense_heads():
    meta = pretrained_towers("tiny")["meta"]                 # also verifies every file's SHA-256
    assert meta["recipe"]["vision"]["dense_weight"] == 1.0
    assert meta["probe"]["pretrained/mean"]["count"] > meta["probe"]["random/mean"]["count"] + 0.2


def test_gate_verdict():
    spec = importlib.util.spec_from_file_location("gate", ROOT / "benchmarks" / "gate.py")
    gate = importlib.util.module_from_spec(spec); spec.loader.exec_module(gate)
    ev = {"gain": {"general": 0.1, "ocr": 0.3, "math": 0.3, "hallucination": 0.1, "overall": 0.2},
          "scores": {"real": {"hallucination": 0.65}}}
    assert gate.verdict(ev) == {"overall_gain": True, "every_category_gain": True, "hallucination_accuracy": True}
    ev["gain"]["general"] = 0.09; ev["scores"]["real"]["hallucination"] = 0.6
    assert gate.verdict(ev) == {"overall_gain": True, "every_category_gain": False, "hallucination_accuracy": False}
    saved = __import__("json").loads((ROOT / "data_samples" / "gate" / "tiny.json").read_text())
    assert gate.verdict(saved) == saved["passes"]
