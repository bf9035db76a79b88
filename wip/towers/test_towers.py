"The shipped pretrained towers: they load offline, match their digests, start the model, and carry learned features."
import json
import random
import pytest
import torch
from transformers import InternVLVisionModel
from sail_vl_nb.config import get_config
from sail_vl_nb.model import count_parameters
from sail_vl_nb.text import default_tokenizer, load_tokenizer
from sail_vl_nb.towers import (build_model, perplexity, pretrained_towers, probe_accuracies, probe_set, towers_dir,
                               LMRecipe, VisionRecipe, lm_corpus, processor_for, RECIPES)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def towers():
    return pretrained_towers("tiny")


def test_files_are_small_and_verified(towers):
    meta = towers["meta"]
    assert meta["scale"] == "tiny"
    assert sum(meta["bytes"].values()) < 4_000_000          # a few MB in the package
    for name in ("vision.safetensors", "llm.safetensors", "tokenizer.json", "meta.json"):
        assert (towers_dir("tiny") / name).exists()


def test_build_model_loads_the_towers_and_a_fresh_projector(towers):
    m = build_model("tiny")
    for k, v in towers["vision_state"].items():
        assert torch.equal(m.vision_model.state_dict()[k], v), k
    for k, v in towers["llm_state"].items():
        assert torch.equal(m.language_model.state_dict()[k], v), k
    r = build_model("tiny", pretrained=False)
    assert count_parameters(r) == count_parameters(m)
    assert not torch.equal(r.vision_model.embeddings.patch_embeddings.projection.weight,
                           m.vision_model.embeddings.patch_embeddings.projection.weight)
    assert torch.equal(r.mlp1[1].weight, m.mlp1[1].weight)            # same seed, same fresh projector
    only_llm = build_model("tiny", towers=("llm",))
    assert torch.equal(only_llm.language_model.lm_head.weight, m.language_model.lm_head.weight)
    assert torch.equal(only_llm.vision_model.encoder.layer[0].mlp.fc1.weight, r.vision_model.encoder.layer[0].mlp.fc1.weight)


def test_shipped_tokenizer_is_the_default(towers):
    tok = default_tokenizer("tiny")
    assert tok.get_vocab() == load_tokenizer(towers["tokenizer_dir"]).get_vocab()
    assert len(tok) == get_config("tiny").text_config.vocab_size


def test_corrupt_file_is_refused(tmp_path):
    src = towers_dir("tiny")
    for f in src.iterdir():
        if f.is_file(): (tmp_path / f.name).write_bytes(f.read_bytes())
    data = bytearray((tmp_path / "llm.safetensors").read_bytes()); data[-1] ^= 1
    (tmp_path / "llm.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        pretrained_towers("tiny", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="build them with"):
        pretrained_towers("tiny", root=tmp_path / "missing")


def test_probe_floor():
    "Frozen pretrained features beat a random tower on colour and count, and clear fixed floors."
    probes = probe_set(450, image_size=64, seed=7)                  # pictures no build or notebook cell used
    pre = probe_accuracies(build_model("tiny").vision_model, probes, "mean")
    torch.manual_seed(1)
    rnd = probe_accuracies(InternVLVisionModel(get_config("tiny").vision_config), probes, "mean")
    assert pre["colour"] >= 0.85 and pre["colour"] > rnd["colour"] + 0.3, (pre, rnd)
    assert pre["count"] >= 0.35 and pre["count"] > rnd["count"] + 0.1, (pre, rnd)


def test_lm_held_out_perplexity():
    """The shipped LM predicts held-out world text far better than chance (vocab 1024) and than a random LM.
    Document i depends only on (seed, i), so the first documents of a 400-scene corpus are held-out documents of the
    build's corpus too."""
    recipe = LMRecipe(**{**json.loads((towers_dir("tiny") / "meta.json").read_text())["recipe"]["lm"], "n_scenes": 400})
    hx, hy = lm_corpus("tiny", recipe, processor_for("tiny"))["held_out"]
    ppl = perplexity(build_model("tiny").language_model, hx, hy)
    ppl_random = perplexity(build_model("tiny", pretrained=False).language_model, hx, hy)
    assert ppl < 4 and ppl_random > 100, (ppl, ppl_random)
