"The shipped pretrained towers: they load offline, match their digests, start the model, and carry learned features."
import json
import pytest
import torch
from transformers import InternVLVisionModel
from sail_vl_nb.config import get_config
from sail_vl_nb.model import count_parameters
from sail_vl_nb.text import default_tokenizer, load_tokenizer
from sail_vl_nb.towers import (LMRecipe, build_model, lm_corpus, perplexity, pretrained_towers, probe_accuracies,
                               probe_set, processor_for, towers_dir)

torch.set_num_threads(1)
SCALES = ("tiny", "small")
MAX_BYTES = {"tiny": 3_000_000, "small": 32_000_000}       # float32 tiny, bfloat16 small


@pytest.fixture(scope="module", params=SCALES)
def shipped(request):
    return request.param, pretrained_towers(request.param)


def test_files_are_verified_and_sized(shipped):
    scale, towers = shipped
    meta = towers["meta"]
    assert meta["scale"] == scale
    assert sum(meta["bytes"].values()) < MAX_BYTES[scale]
    for name in ("vision.safetensors", "llm.safetensors", "tokenizer.json", "meta.json"):
        assert (towers_dir(scale) / name).exists()
    assert meta["seconds"]["total"] < 15 * 60                 # the build that made them fit the rebuild budget


def test_build_model_loads_the_towers_and_a_fresh_projector(shipped):
    scale, towers = shipped
    m = build_model(scale)
    for k, v in towers["vision_state"].items():
        assert torch.equal(m.vision_model.state_dict()[k], v), k
    for k, v in towers["llm_state"].items():
        assert torch.equal(m.language_model.state_dict()[k], v), k
    r = build_model(scale, pretrained=False)
    assert count_parameters(r) == count_parameters(m)
    assert not torch.equal(r.vision_model.embeddings.patch_embeddings.projection.weight,
                           m.vision_model.embeddings.patch_embeddings.projection.weight)
    assert torch.equal(r.mlp1[1].weight, m.mlp1[1].weight)            # same seed, same fresh projector
    only_llm = build_model(scale, towers=("llm",))
    assert torch.equal(only_llm.language_model.lm_head.weight, m.language_model.lm_head.weight)
    assert torch.equal(only_llm.vision_model.encoder.layer[0].mlp.fc1.weight, r.vision_model.encoder.layer[0].mlp.fc1.weight)


def test_shipped_tokenizer_is_the_default(shipped):
    scale, towers = shipped
    tok = default_tokenizer(scale)
    assert tok.get_vocab() == load_tokenizer(towers["tokenizer_dir"]).get_vocab()
    assert len(tok) == get_config(scale).text_config.vocab_size


def test_corrupt_or_wrong_files_are_refused(tmp_path):
    for f in towers_dir("tiny").iterdir():
        if f.is_file(): (tmp_path / f.name).write_bytes(f.read_bytes())
    data = bytearray((tmp_path / "llm.safetensors").read_bytes()); data[-1] ^= 1
    (tmp_path / "llm.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        pretrained_towers("tiny", root=tmp_path)
    with pytest.raises(ValueError, match="not 'small'"):             # tiny files offered as small
        pretrained_towers("small", root=tmp_path, verify=False)
    with pytest.raises(FileNotFoundError, match="build them with"):
        pretrained_towers("tiny", root=tmp_path / "missing")
    with pytest.raises(ValueError, match="towers must name"):
        build_model("tiny", towers=("eyes",))


# Floors are well under the shipped measurement (meta.json "probe") and well over a random tower.
PROBE_FLOORS = {"tiny": {"colour": 0.9, "count": 0.35}, "small": {"colour": 0.9, "count": 0.4}}


@pytest.mark.parametrize("scale", SCALES)
def test_probe_floor(scale):
    "Frozen pretrained features beat a random tower on colour and count, and clear fixed floors."
    probes = probe_set(300, image_size=get_config(scale).tile_size, seed=7)    # pictures no build or notebook used
    pre = probe_accuracies(build_model(scale).vision_model, probes, "mean")
    torch.manual_seed(1)
    rnd = probe_accuracies(InternVLVisionModel(get_config(scale).vision_config), probes, "mean")
    for name, floor in PROBE_FLOORS[scale].items():
        assert pre[name] >= floor and pre[name] > rnd[name] + 0.1, (name, pre, rnd)


@pytest.mark.parametrize("scale", SCALES)
def test_lm_held_out_perplexity(scale):
    """The shipped LM predicts held-out world text far better than a random LM. Document i depends only on
    (seed, i), so the first documents of a short corpus are held-out documents of the build's corpus too."""
    recipe = LMRecipe(**{**json.loads((towers_dir(scale) / "meta.json").read_text())["recipe"]["lm"], "n_scenes": 300})
    hx, hy = lm_corpus(scale, recipe, processor_for(scale))["held_out"]
    ppl = perplexity(build_model(scale).language_model, hx, hy)
    ppl_random = perplexity(build_model(scale, pretrained=False).language_model, hx, hy)
    assert ppl < 4 and ppl_random > 100, (ppl, ppl_random)


@pytest.mark.numeric
@pytest.mark.parametrize("rows", ["stream", "packed"])
def test_pretrain_lm_resumes_bit_for_bit(tmp_path, rows):
    "A run stopped after step 2 and restarted from its checkpoint ends with the uninterrupted run's weights."
    from dataclasses import replace
    from sail_vl_nb.towers.lm import pretrain_lm
    recipe = LMRecipe(steps=4, batch_size=2, rows=rows, schedule="constant", max_len=96, block=64, n_scenes=40)
    tok = default_tokenizer("tiny")
    straight, s_info = pretrain_lm("tiny", recipe, tok, progress=False)
    ck = tmp_path / "lm.pt"
    half, info = pretrain_lm("tiny", recipe, tok, progress=False, checkpoint=ck, save_every=2, until=2)
    assert info["steps_done"] == 2 and ck.exists()
    resumed, info = pretrain_lm("tiny", recipe, tok, progress=False, checkpoint=ck)
    assert info["steps_done"] == 4 and len(info["history"]) == len(s_info["history"]) and info["history"] == [h | {"elapsed_s": r["elapsed_s"]} for h, r in zip(s_info["history"], info["history"])]
    assert not all(torch.equal(half[k], resumed[k]) for k in half)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    with pytest.raises(ValueError, match="another run"):
        pretrain_lm("tiny", replace(recipe, lr=recipe.lr / 2), tok, progress=False, checkpoint=ck)


def test_reading_stream_levers():
    "Minimal pairs ask shared questions with different answers; dedup asks each question once; the copy turn repeats the caption."
    import random, re
    from sail_vl_nb.towers.lm import reading_document, stream_batches, twin_documents
    proc = processor_for("tiny")
    turn = re.compile(r"<\|im_start\|>user\n(?:<img>(.*?)</img>\n)?(.*?)<\|im_end\|>\n<\|im_start\|>assistant\n(.*?)<\|im_end\|>", re.S)
    turns = lambda ids: turn.findall(proc.tokenizer.decode(ids))
    rng, n_pairs = random.Random(0), []
    for _ in range(30):
        a, b = (dict((q, ans) for _, q, ans in turns(d[0])) for d in twin_documents(rng, proc))
        n_pairs.append(sum(a[q] != b[q] for q in a.keys() & b.keys()))
    assert sum(n_pairs) / len(n_pairs) >= 1 and max(n_pairs) >= 2
    rng = random.Random(1)
    for _ in range(30):
        qs = [q for _, q, _ in turns(reading_document(rng, proc, max_len=10**6, dedup=True)[0])]
        assert len(qs) == len(set(qs))
    ids, labels = reading_document(random.Random(2), proc, p_copy=1.0)
    (cap, q, ans), *_ = turns(ids)
    assert ans == cap and len(cap) > 20
    assert proc.tokenizer.decode([t for t in labels if t != -100]).startswith(cap)
    x, y, att = next(stream_batches(proc, LMRecipe(batch_size=6, rows="stream", p_twin=1.0)))
    assert x.shape[0] == 6 and bool((y[att == 0] == -100).all())
