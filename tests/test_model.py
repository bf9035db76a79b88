"Model checks beyond the notebook cells: randomized parity with transformers, a negative control, gradients."
import random
import pytest
import torch
from sail_vl_nb.config import get_config
from sail_vl_nb.model import (SailVLForConditionalGeneration, from_hf_internvl, parity_batch, pixel_shuffle,
                              to_hf_internvl)
from sail_vl_nb.numerics import check_reordered


def random_config(seed):
    r = random.Random(seed)
    heads_v, heads_t = r.choice([2, 4]), r.choice([2, 4])
    patch, grid = r.choice([4, 8]), r.choice([4, 6, 8])
    return get_config("tiny", ps_version="v2", tile_size=patch * grid, select_layer=r.choice([-1, -2, 1]),
                      vision_config=dict(hidden_size=16 * heads_v, num_hidden_layers=r.choice([2, 3]),
                                         num_attention_heads=heads_v, intermediate_size=64, patch_size=patch),
                      text_config=dict(hidden_size=16 * heads_t, num_hidden_layers=r.choice([1, 2]),
                                       num_attention_heads=heads_t, num_key_value_heads=r.choice([1, heads_t]),
                                       intermediate_size=48, vocab_size=r.choice([256, 777])))


def widest(cfg) -> int:
    "The longest dot product of a forward pass: the widest layer (logits of another implementation: numerics, case 2)."
    v, t = cfg.vision_config, cfg.text_config
    return max(v.hidden_size, v.intermediate_size, t.hidden_size, t.intermediate_size)


@pytest.mark.numeric
@pytest.mark.parametrize("seed", range(4))
def test_parity_random_configs(seed):
    cfg = random_config(seed)
    torch.manual_seed(seed)
    ours = SailVLForConditionalGeneration(cfg).eval()
    hf = to_hf_internvl(ours)
    batch = parity_batch(cfg, tiles=(2, 1, 3), n_text=(5, 9, 2), seed=seed)
    with torch.no_grad():
        a, b = ours(**batch).logits, hf(**batch).logits
    m = batch["attention_mask"].bool()
    check_reordered(a[m], b[m], widest(cfg), "logits")
    # round trip back to ours keeps every weight
    back = from_hf_internvl(hf)
    for (k1, v1), (k2, v2) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1


def test_parity_check_can_fail():
    "Negative control: one changed projector weight, or v1 instead of v2, must break parity."
    cfg = get_config("tiny", ps_version="v2")
    torch.manual_seed(0)
    ours = SailVLForConditionalGeneration(cfg).eval()
    hf = to_hf_internvl(ours)
    batch = parity_batch(cfg)
    with torch.no_grad():
        hf.model.multi_modal_projector.linear_2.weight[0, 0] += 0.5
        assert (ours(**batch).logits - hf(**batch).logits).abs().max().item() > 1e-3
        hf.model.multi_modal_projector.linear_2.weight[0, 0] -= 0.5
        check_reordered(ours(**batch).logits, hf(**batch).logits, widest(cfg), "logits")
        ours.config.ps_version = "v1"                  # same weights, transposed image-token order
        assert (ours(**batch).logits - hf(**batch).logits).abs().max().item() > 1e-4


@pytest.mark.numeric
def test_attention_kernels_and_packing_agree():
    "SDPA and eager attention, packed rows and padded ones: the same loss up to summation order."
    from sail_vl_nb.data import EncodedDataset, collate_packed, collate_padded, model_inputs, vqa_samples
    from sail_vl_nb.launch import use_attention
    from sail_vl_nb.text import SailVLProcessor, default_tokenizer
    from sail_vl_nb.world import make_world
    cfg = get_config("tiny")
    proc = SailVLProcessor.from_config(cfg, default_tokenizer("tiny"))
    items = list(EncodedDataset(vqa_samples(make_world(2, seed=3))[:6], proc, max_length=128, progress=False))
    torch.manual_seed(0)
    m = SailVLForConditionalGeneration(cfg)
    losses = {}
    for impl in ("sdpa", "eager"):
        use_attention(m, impl)
        with torch.no_grad():
            losses[impl] = [m(**model_inputs(c), use_cache=False).loss.item()
                            for c in (collate_packed(items, 1024, proc.pad_id), collate_padded(items, proc.pad_id))]
    n = sum(len(x.input_ids) for x in items)
    check_reordered(losses["sdpa"], losses["eager"], n, "sdpa vs eager")
    check_reordered(losses["sdpa"][0], losses["sdpa"][1], n, "packed vs padded")


def test_pixel_shuffle_ratio_quarter():
    x = torch.arange(64.).reshape(1, 8, 8, 1)
    y = pixel_shuffle(x, 0.25, "v2")
    assert y.shape == (1, 2, 2, 16)
    assert y[0, 0, 1].tolist() == [4., 5., 6., 7., 12., 13., 14., 15., 20., 21., 22., 23., 28., 29., 30., 31.]


def test_gradients_reach_every_part_and_loss_falls():
    cfg = get_config("tiny")
    torch.manual_seed(0)
    model = SailVLForConditionalGeneration(cfg).train()
    batch = parity_batch(cfg, tiles=(1, 1), n_text=(6, 6))
    batch["labels"] = batch["input_ids"].masked_fill(batch["input_ids"] == cfg.image_token_id, -100)
    out = model(**batch)
    out.loss.backward()
    for part in (model.vision_model, model.mlp1, model.language_model):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = out.loss.item()
    opt.step(); opt.zero_grad()
    for _ in range(30):
        loss = model(**batch).loss; loss.backward(); opt.step(); opt.zero_grad()
    assert loss.item() < 0.5 * first


def test_bf16_forward():
    cfg = get_config("tiny")
    model = SailVLForConditionalGeneration(cfg).to(torch.bfloat16).eval()
    batch = parity_batch(cfg)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
