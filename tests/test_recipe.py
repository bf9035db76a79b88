"""The recipe: its YAMLs, the 2B recipe on the meta device, scale-safe stages, complexity scores, text-only ranks.
Comparisons follow CONTRIBUTING.md, "Numeric tolerances" (sail_vl_nb.numerics)."""
import os, subprocess, sys
from pathlib import Path
import pytest
import torch
from sail_vl_nb.config import get_config
from sail_vl_nb.model import SailVLForConditionalGeneration
from sail_vl_nb.numerics import check_reordered, magnitude, max_diff, step_tol
from sail_vl_nb.recipe.data import complexity_scores, question_scores, text_pool
from sail_vl_nb.recipe.spec import Recipe, SFT_STAGES, builtin_recipes, load_recipe, one_stage, trainable_parameters
from sail_vl_nb.train import Stage


def test_shipped_recipes_round_trip(tmp_path):
    assert {"tiny", "small", "sail-vl-2b", "tiny-onestage"} <= set(builtin_recipes())
    for name in builtin_recipes():
        r = load_recipe(name)
        r.to_yaml(tmp_path / "r.yaml")
        assert Recipe.from_yaml(tmp_path / "r.yaml").to_dict() == r.to_dict()
        assert [s.stage.name for s in r.stages][:2] == ["pretrain-alignment", "pretrain-advance"]


def test_one_stage_keeps_data_and_steps():
    r = load_recipe("tiny")
    flat = one_stage(r)
    assert len(flat.stages) == len(r.stages) - 2
    last = flat.stages[-1]
    assert last.samples == sum(r[n].samples for n in SFT_STAGES)
    assert last.stage.max_steps == sum(r[n].stage.max_steps for n in SFT_STAGES)
    # each source keeps its samples over the three stages (knowledge is replayed in the later two)
    want = sum(r[n].samples * r[n].mixture.get("knowledge", 0) / sum(r[n].mixture.values()) for n in SFT_STAGES)
    assert abs(last.mixture["knowledge"] - want) < 1e-6 and want == 0.9 * 7000 + 0.2 * 7000 + 0.25 * 5000


def test_2b_recipe_on_meta():
    c = trainable_parameters(load_recipe("sail-vl-2b"))
    assert c["pretrain-alignment"] == {"vision": 0, "projector": 8_662_016, "llm": 0, "total": 8_662_016}
    assert c["pretrain-advance"]["vision"] == 304_012_288 and c["pretrain-advance"]["llm"] == 0
    assert c["sft-knowledge"]["total"] == 2_089_762_304


def test_global_batch_sets_accumulation():
    s = Stage("g", max_steps=1, batch_size=4, global_batch=64)
    assert [s.accumulation(n) for n in (1, 2, 4, 16)] == [16, 8, 4, 1]
    with pytest.raises(ValueError, match="not a multiple"): s.accumulation(3)
    with pytest.raises(ValueError, match="not both"): Stage("g", max_steps=1, grad_accum=2, global_batch=64)
    assert Stage("g", max_steps=1, grad_accum=3).accumulation(8) == 3      # without global_batch: per-process accumulation


def test_dummy_image_changes_nothing_but_runs_the_tower():
    torch.manual_seed(0)
    m = SailVLForConditionalGeneration(get_config("tiny"))
    ids = torch.tensor([[71, 386, 363, 394, 267, 371]])           # text tokens (id 5 is <IMG_CONTEXT> at tiny)
    plain = m(input_ids=ids, labels=ids).loss
    dummy = m(input_ids=ids, labels=ids, pixel_values=torch.zeros(1, 3, 64, 64), dummy_image=True).loss
    assert torch.equal(plain, dummy)
    dummy.backward()
    grads = [p.grad for p in m.vision_model.parameters()] + [p.grad for p in m.mlp1.parameters()]
    assert all(g is not None and not g.any() for g in grads)             # in the graph, with zero gradient
    with pytest.raises(ValueError, match="needs pixel_values"): m(input_ids=ids, dummy_image=True)


def test_complexity_scores():
    lvl1 = {"question": "What colour is the star?", "answer": "red", "level": 1, "worked": "red"}
    lvl3 = {"question": "What colour is the shape directly above the red star?", "answer": "blue", "level": 3,
            "worked": "The red star is at the middle left. Directly above it, at the top left, is a blue circle. Answer: blue"}
    a, b = question_scores(lvl1), question_scores(lvl3)
    assert a["difficulty"] == 1 and b["difficulty"] == 3.5 and b["complexity"] > a["complexity"]
    assert a["relevance"] == b["relevance"] == pytest.approx(1 + 4 * (1 - 1 / 7))
    assert complexity_scores(text_pool(1)[0]) == {"difficulty": 1.0, "complexity": 1.0, "relevance": 1.0}
    conv = complexity_scores({"images": [None], "qa": [lvl1, lvl1]})
    assert conv["complexity"] == pytest.approx(a["complexity"] + 0.5)


def run_torchrun(out, nproc):
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(torchrun), "--standalone", f"--nproc_per_node={nproc}", str(Path(__file__).parent / "dist_mixed_script.py"), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return [torch.load(out / f"params-rank{i}.pt") for i in range(nproc)]


@pytest.mark.numeric
@pytest.mark.torchrun
def test_text_only_rank_two_processes_equal_one(tmp_path):
    two = run_torchrun(tmp_path / "two", 2)
    one = run_torchrun(tmp_path / "one", 1)
    assert (two[0]["accumulation"], one[0]["accumulation"]) == (1, 2)      # the same global batch of 4
    assert two[0]["split_steps"], "no step had a text-only micro-batch on one rank only: the test tests nothing"
    for k, v in two[0]["state"].items():
        assert torch.equal(v, two[1]["state"][k]), f"ranks differ at {k}"
    st, n = one[0]["stage"], 4 * 128                           # tokens of a global batch (max_length 128)
    check_reordered(two[0]["losses"], one[0]["losses"], n, "losses")
    assert st["eps"] >= st["grad_clip"]                        # AdamW linear in the (clipped) gradient
    diff, tol = max_diff(two[0]["state"], one[0]["state"]), step_tol([st["lr"]] * st["max_steps"], n, st["grad_clip"], adam_eps=st["eps"],
                                                                     weight_max=magnitude(one[0]["state"]))
    assert diff <= tol, (diff, tol)


def test_one_stage_draw_fits_the_world():
    "The one-stage SFT draws with replacement: its knowledge share (8,950) is more than a 2,000-picture world holds."
    from sail_vl_nb.recipe.run import draw_stage
    sizes = {"knowledge": 8594, "instruction": 8800, "preference": 6929, "text": 2000}      # a 2,000-picture world's pools
    sources = {k: [f"{k}-{i}" for i in range(n)] for k, n in sizes.items()}
    tiny = load_recipe("tiny")
    with pytest.raises(ValueError, match="sft-knowledge"):
        draw_stage(tiny["sft-knowledge"], {**sources, "knowledge": sources["knowledge"][:100]})
    flat = one_stage(tiny).stages[-1]
    assert flat.replace and not tiny["sft-knowledge"].replace
    samples, counts = draw_stage(flat, sources)
    assert len(samples) == flat.samples == sum(counts.values())
    assert counts["knowledge"] > sizes["knowledge"]


KILL_SCRIPT = """
import sys
from sail_vl_nb.recipe import load_recipe, run_recipe, shrink
run_recipe(shrink(load_recipe("tiny"), steps=12, eval_items=0), sys.argv[1], resume="--resume" in sys.argv, progress=False)
"""


def test_killed_in_stage_two_and_resumed_gives_the_same_weights(tmp_path):
    "SIGKILL in the middle of the second stage (the first one finished), then --resume: the weights of an unbroken run."
    import signal, time
    script = tmp_path / "run.py"; script.write_text(KILL_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    broken = tmp_path / "broken"
    p = subprocess.Popen([sys.executable, str(script), str(broken)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = broken / "2-pretrain-advance" / "metrics.jsonl"
    t0 = time.time()
    while time.time() - t0 < 300 and p.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3: break
        time.sleep(0.05)
    assert p.poll() is None, f"the run ended before it could be killed: {p.stderr.read()[-2000:]}"
    p.send_signal(signal.SIGKILL); p.wait()
    assert (broken / "1-pretrain-alignment" / "result").exists() and not (broken / "2-pretrain-advance" / "result").exists()
    r = subprocess.run([sys.executable, str(script), str(broken), "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "whole")], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]                 # the unbroken run, with the same threads (same float sums)
    last = "5-sft-preference/final"
    a = SailVLForConditionalGeneration.from_pretrained(tmp_path / "whole" / last).state_dict()
    b = SailVLForConditionalGeneration.from_pretrained(broken / last).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.numeric
@pytest.mark.torchrun
def test_recipe_on_two_processes_equals_one(tmp_path):
    """`sail-vl recipe` under torchrun: 2 processes x micro-batch 16 end every stage with the weights (and the scores)
    of 1 process x micro-batch 16 x accumulation 2 — the global batch of 32 means the same on both. The two add the
    gradients in another order, so the tiny recipe runs here with AdamW's eps = 1 >= every gradient entry (clipped to
    norm 1): its step is linear in the gradient, and the weights must agree within numerics.step_tol."""
    import json
    from safetensors.torch import load_file
    r = load_recipe("tiny")
    for s in r.stages:
        assert s.stage.grad_clip and s.stage.grad_clip <= 1.0
        s.stage.eps = 1.0
    r.to_yaml(tmp_path / "tiny-linear.yaml")
    bin_ = Path(sys.executable).parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    args = ["recipe", "--recipe", str(tmp_path / "tiny-linear.yaml"), "--quick", "--micro-batch", "16", "--out"]
    two = subprocess.run([str(bin_ / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "sail_vl_nb.cli", *args,
                          str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("sail-vl recipe:") == 2, "only the first process reports (a header and a closing line)"
    one = subprocess.run([str(bin_ / "sail-vl"), *args, str(tmp_path / "one")], capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    rows = {k: json.loads((tmp_path / k / "stages.json").read_text())["rows"] for k in ("one", "two")}
    assert len(rows["two"]) == 5
    assert [(r["overall"], r["gain"]) for r in rows["one"]] == [(r["overall"], r["gain"]) for r in rows["two"]]
    lrs = []                                                   # every step's largest learning rate so far (shrink: 4 steps)
    for d, s in zip(sorted((tmp_path / "one").glob("[0-9]-*")), r.stages):
        lrs += [max(s.stage.lrs().values())] * 4
        a, b = load_file(d / "final" / "model.safetensors"), load_file(tmp_path / "two" / d.name / "final" / "model.safetensors")
        n = s.stage.global_batch * s.stage.max_length          # tokens of a global batch
        diff, tol = max_diff(a, b), step_tol(lrs, n, 1.0, adam_eps=1.0, weight_max=magnitude(a))
        assert diff <= tol, (d.name, diff, tol)
