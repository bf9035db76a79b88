"""Training engine: exact resume, 2 processes = 1 process, packed = padded, stage YAMLs. Comparisons follow
CONTRIBUTING.md, "Numeric tolerances": bit for bit where the same operations run in the same order, otherwise the
tolerance of sail_vl_nb.numerics (`numeric` tests run again on other CPU kernels in tools/check.sh)."""
import os, subprocess, sys
from pathlib import Path
import pytest
import torch
from sail_vl_nb.config import get_config
from sail_vl_nb.data import EncodedDataset, caption_samples, vqa_samples
from sail_vl_nb.model import SailVLForConditionalGeneration
from sail_vl_nb.numerics import check_reordered, magnitude, max_diff, step_tol
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


@pytest.mark.numeric
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


@pytest.mark.numeric
def test_packed_gradients_equal_padded(proc, samples):
    "One training batch packed vs padded: same loss (same normaliser) and the same gradients, up to summation order."
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
    n = c1                                                     # positions of the padded batch: the longest sum behind a gradient
    check_reordered(l2, l1, n, "loss")
    check_reordered(g2, g1, n, "gradients")                    # scale: the largest gradient entry of the model
    with pytest.raises(AssertionError, match="gradients"):     # one sample fewer in the packed batch is far outside it
        m = fresh(); b = collate_packed(items[1:], 256, proc.pad_id)
        m(**model_inputs(b), use_cache=False, num_items_in_batch=int((b["labels"][:, 1:] != -100).sum())).loss.backward()
        check_reordered([p.grad for p in m.parameters()], g1, n, "gradients")


@pytest.mark.numeric
def test_micro_batches_equal_one_batch(proc):
    "One step on 8 samples: 4 micro-batches of 2 give the gradients of 1 micro-batch of 8, up to summation order."
    from accelerate import Accelerator
    from sail_vl_nb.data import collate_padded
    from sail_vl_nb.train import accumulate_gradients, micro_batches, token_counts
    ds = EncodedDataset(vqa_samples(make_world(4, seed=3)), proc, max_length=128, progress=False)
    acc, grads = Accelerator(cpu=True), {}
    for micro, keep in ((8, 1), (2, 4), (2, 3)):                # the last one loses a micro-batch: must fail
        m = fresh()
        bs = micro_batches(ds, list(range(8)), Stage("s", train=MODULES, max_steps=1, batch_size=micro, global_batch=8), 1, 0,
                           lambda items: collate_padded(items, proc.pad_id))
        accumulate_gradients(m, acc, bs[:keep], torch.tensor(float(token_counts(bs, packed=False)[0])), dummy=None)
        grads[micro, keep] = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    check_reordered(grads[2, 4], grads[8, 1], 8 * 128, "gradients")
    with pytest.raises(AssertionError, match="tolerance"):
        check_reordered(grads[2, 3], grads[8, 1], 8 * 128)


@pytest.mark.numeric
def test_gradient_checkpointing_changes_no_bit(tmp_path, proc):
    "Recomputation runs the same operations in the same order: the same weights after 3 steps, bit for bit."
    samples = vqa_samples(make_world(24, seed=3))
    weights = []
    for ckpt in (False, True):
        m = fresh()
        st = Stage("gc", train=MODULES, lr=3e-3, max_steps=3, batch_size=8, max_length=128, warmup_ratio=0.0,
                   gradient_checkpointing=ckpt)
        train_stage(m, proc, st, samples, tmp_path / str(ckpt), progress=False)
        weights.append(m.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def run_torchrun(out, nproc, batch_size, pack):
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(torchrun), "--standalone", f"--nproc_per_node={nproc}", str(Path(__file__).parent / "dist_train_script.py"),
           str(out), str(batch_size), "pack" if pack else "pad"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return [torch.load(out / f"params-rank{i}.pt") for i in range(nproc)]


def split_tol(stage: dict, n: int, weight_max: float) -> float:
    "step_tol of a dist script's stage: AdamW with eps >= grad_clip >= every (clipped) gradient entry, at most lr per step."
    assert stage["eps"] >= stage["grad_clip"], "AdamW would amplify rounding: the weights could not be compared"
    return step_tol([stage["lr"]] * stage["max_steps"], n, stage["grad_clip"], adam_eps=stage["eps"], weight_max=weight_max)


@pytest.mark.numeric
@pytest.mark.torchrun
@pytest.mark.parametrize("pack", [False, True], ids=["padded", "packed"])
def test_two_processes_equal_one(tmp_path, pack):
    two = run_torchrun(tmp_path / "two", 2, 2, pack)           # 2 processes x batch 2 x accum 2 = 8 per step
    one = run_torchrun(tmp_path / "one", 1, 4, pack)           # 1 process  x batch 4 x accum 2 = 8 per step
    assert two[0]["world"] == 2 and one[0]["world"] == 1
    for k, v in two[0]["state"].items():
        assert torch.equal(v, two[1]["state"][k]), f"ranks differ at {k}"
    n = 8 * 128                                                # tokens of a global batch (max_length 128)
    check_reordered(two[0]["losses"], one[0]["losses"], n, "losses")
    diff, tol = max_diff(two[0]["state"], one[0]["state"]), split_tol(one[0]["stage"], n, magnitude(one[0]["state"]))
    assert diff <= tol, (diff, tol)
    assert max_diff(one[0]["state"], fresh().state_dict()) > 100 * tol   # training moved the weights far beyond it


@pytest.mark.numeric
@pytest.mark.torchrun
def test_fsdp2_equals_one_process(tmp_path):
    "FSDP2 on 2 CPU processes (frozen vision tower) ends with the losses and weights of 1 plain process, up to rounding."
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    runs = {}
    for nproc, mode in ((1, "plain"), (2, "fsdp2")):
        (tmp_path / mode).mkdir()
        r = subprocess.run([str(torchrun), "--standalone", f"--nproc_per_node={nproc}", str(Path(__file__).parent / "dist_fsdp_script.py"),
                            str(tmp_path / mode), mode], capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[mode] = torch.load(tmp_path / mode / "params.pt")
    plain, fsdp = runs["plain"], runs["fsdp2"]
    assert fsdp["world"] == 2 and fsdp["wrap_units"] == 5
    n, st = 8 * 128, plain["stage"]                            # tokens of a global batch
    check_reordered(fsdp["losses"], plain["losses"], n, "losses")
    tol = step_tol([st["lr"]] * st["max_steps"], n, max(fsdp["grad_max"], plain["grad_max"]), adam_eps=st["eps"],
                   weight_max=magnitude(plain["state"]))
    assert max_diff(fsdp["state"], plain["state"]) <= tol
    assert max_diff(plain["state"], fresh().state_dict()) > 100 * tol


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
