"Training engine: exact resume, 2 processes = 1 process, packed = padded, stage YAMLs."
import os, subprocess, sys
from pathlib import Path
import pytest
import torch
from sail_vl_nb.config import get_config
from sail_vl_nb.data import EncodedDataset, caption_samples, vqa_samples
from sail_vl_nb.model import SailVLForConditionalGeneration
from sail_vl_nb.text import SailVLProcessor, default_tokenizer
from sail_vl_nb.train import MODULES, Stage, builtin_stages, load_stage, train_stage
from sail_vl_nb.world import make_world


@pytest.fixture(scope="module")
def proc():
    return SailVLProcessor.from_config(get_config("tiny"), default_tokenizer("tiny"))


@pytest.fixture(scope="module")
def samples():
    w = make_world(24, seed=4)
    return vqa_samples(w) + caption_samples(w)


def fresh(seed=0):
    torch.manual_seed(seed)
    return SailVLForConditionalGeneration(get_config("tiny"))


def test_resume_is_bit_identical(tmp_path, proc, samples):
    ds = EncodedDataset(samples, proc, max_length=200, progress=False)
    stage = Stage("r", train=MODULES, lr=2e-3, max_steps=6, batch_size=8, save_every=2, max_length=200, log_every=1)
    a = fresh(); ra = train_stage(a, proc, stage, ds, tmp_path / "a", progress=False)
    b = fresh(); rb1 = train_stage(b, proc, stage, ds, tmp_path / "b", stop_at=3, progress=False)
    assert rb1.steps == 3 and not (tmp_path / "b" / "final").exists()
    c = fresh(seed=99)                                    # a different model object: weights must come from the checkpoint
    rc = train_stage(c, proc, stage, ds, tmp_path / "b", resume=True, progress=False)
    assert rc.steps == 6
    for (k, v1), (_, v2) in zip(a.state_dict().items(), c.state_dict().items()):
        assert torch.equal(v1, v2), k
    assert [h["loss"] for h in ra.history] == [h["loss"] for h in rc.history]
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 6


def test_packed_gradients_equal_padded(proc, samples):
    "One training batch packed vs padded: same loss (same normaliser) and the same gradients."
    from sail_vl_nb.data import collate_packed, collate_padded, model_inputs
    ds = EncodedDataset(samples, proc, max_length=256, progress=False)
    items = [ds[i] for i in range(8)] + [ds[len(ds) - 1 - i] for i in range(8)]   # short VQA and long captions
    out = []
    for batch in (collate_padded(items, proc.pad_id), collate_packed(items, 256, proc.pad_id)):
        m = fresh()
        n = int((batch["labels"][:, 1:] != -100).sum())
        loss = m(**model_inputs(batch), use_cache=False, num_items_in_batch=n).loss
        loss.backward()
        out.append((loss.item(), [p.grad.clone() for p in m.parameters()], batch["input_ids"].numel()))
    (l1, g1, c1), (l2, g2, c2) = out
    assert c2 < c1                                             # packing did remove padding
    assert abs(l1 - l2) < 1e-5
    scale = max(g.abs().max().item() for g in g1)
    assert max((a - b).abs().max().item() for a, b in zip(g1, g2)) < 1e-5 * max(1.0, scale)


def run_torchrun(out, nproc, batch_size, pack):
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(torchrun), "--standalone", f"--nproc_per_node={nproc}", str(Path(__file__).parent / "dist_train_script.py"),
           str(out), str(batch_size), "pack" if pack else "pad"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return [torch.load(out / f"params-rank{i}.pt") for i in range(nproc)]


@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_two_processes_equal_one(tmp_path, pack):
    two = run_torchrun(tmp_path / "two", 2, 2, pack)           # 2 processes x batch 2 x accum 2 = 8 per step
    one = run_torchrun(tmp_path / "one", 1, 4, pack)           # 1 process  x batch 4 x accum 2 = 8 per step
    assert two[0]["world"] == 2 and one[0]["world"] == 1
    for k, v in two[0]["state"].items():
        assert torch.equal(v, two[1]["state"][k]), f"ranks differ at {k}"
    diff = max((v - one[0]["state"][k]).abs().max().item() for k, v in two[0]["state"].items())
    assert diff < 1e-5, diff
    changed = max((v - fresh().state_dict()[k]).abs().max().item() for k, v in one[0]["state"].items())
    assert changed > 1e-3                                      # training did move the weights
    for l1, l2 in zip(two[0]["losses"], one[0]["losses"]):
        assert abs(l1 - l2) < 1e-5


def test_builtin_stage_yamls_load():
    names = builtin_stages()
    assert {"tiny-align", "tiny-full"} <= set(names)
    for n in names:
        s = load_stage(n)
        assert isinstance(s, Stage) and s.name == n


def test_stage_yaml_errors(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nmax_steps: 3\nlearning_rate: 1e-3\n")
    with pytest.raises(ValueError, match="unknown stage field"):
        load_stage(p)
    p.write_text("name: x\nmax_steps: 3\ntrain: [projector, eyes]\n")
    with pytest.raises(ValueError, match="unknown module"):
        load_stage(p)
    with pytest.raises(FileNotFoundError, match="no stage"):
        load_stage("no-such-stage")
