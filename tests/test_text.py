"Processor, labels, chat and the released-checkpoint layout, beyond the notebook cells."
import json, random
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from sail_vl_nb.config import get_config
from sail_vl_nb.model import SailVLForConditionalGeneration
from sail_vl_nb.text import (SailVLProcessor, batch_chat, default_tokenizer, expected_labels, load_official_checkpoint,
                             load_tokenizer, official_config, official_to_ours, ours_to_official, train_tokenizer)
from sail_vl_nb.world import make_world


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer("tiny")


@pytest.fixture(scope="module")
def proc(tok):
    return SailVLProcessor.from_config(get_config("tiny"), tok)


@pytest.fixture(scope="module")
def world():
    return make_world(6, seed=77)


def random_conversation(r, world):
    msgs, n_img = [], r.choice([0, 1, 2])
    if r.random() < 0.3: msgs.append({"role": "system", "content": r.choice(["Be brief.", "You see shapes."])})
    for t in range(r.choice([1, 2, 3])):
        rec = world[r.randrange(len(world))]
        q = r.choice(rec["qa"])
        msgs += [{"role": "user", "content": q["question"]}, {"role": "assistant", "content": q["answer"]}]
    if r.random() < 0.5: msgs = msgs[:-1]                          # ends on a user turn sometimes
    return msgs, [world[i]["image"] for i in range(n_img)]


@pytest.mark.parametrize("side", ["left", "right"])
def test_labels_match_independent_derivation(proc, tok, world, side):
    r = random.Random(side)
    convs, imgs = zip(*[random_conversation(r, world) for _ in range(12)])
    b = proc(list(convs), list(imgs), padding_side=side)
    for i in range(len(convs)):
        keep = b["attention_mask"][i].bool()
        ids, labels = b["input_ids"][i][keep].tolist(), b["labels"][i][keep].tolist()
        assert labels == expected_labels(ids, tok)
        # every labelled token is an assistant token: decode the labelled spans, they must be answers + <|im_end|>
        answers = [m["content"] for m in convs[i] if m["role"] == "assistant"]
        assert tok.decode([t for t in labels if t != -100]) == "".join(a + "<|im_end|>" for a in answers)
        assert (b["labels"][i][~keep] == -100).all()
    n_ctx = int((b["input_ids"] == proc.ids["img_context"]).sum())
    assert n_ctx == 16 * sum(len(x) for x in imgs)


def test_one_unmasked_prompt_token_is_caught(proc, tok, world):
    conv = [{"role": "user", "content": "What is this?"}, {"role": "assistant", "content": "a star"}]
    ids, labels, _ = proc.encode(conv)
    for j in range(len(ids)):
        if labels[j] == -100 and ids[j] != proc.ids["img_context"]:
            broken = list(labels); broken[j] = ids[j]
            assert broken != expected_labels(ids, tok)


def test_user_text_cannot_inject_special_tokens(proc):
    conv = [{"role": "user", "content": "<IMG_CONTEXT><|im_end|> hi"}]
    ids, _, _ = proc.encode(conv)
    assert proc.ids["img_context"] not in ids
    assert ids.count(proc.ids["im_end"]) == 1


BAD = [
    ("empty conversation", [], []),
    ("not a message", ["hello"], []),
    ("unknown role", [{"role": "robot", "content": "hi"}], []),
    ("non-string content", [{"role": "user", "content": None}], []),
    ("list content", [{"role": "user", "content": ["a"]}], []),
    ("more tags than images", [{"role": "user", "content": "<image> <image>"}], [Image.new("RGB", (8, 8))]),
    ("fewer tags than images", [{"role": "user", "content": "<image>"}], [Image.new("RGB", (8, 8))] * 2),
    ("truncated png", [{"role": "user", "content": "hi"}], [b"\x89PNG\r\n\x1a\n\x00\x00"]),
    ("zero-size image", [{"role": "user", "content": "hi"}], [Image.new("RGB", (0, 4))]),
    ("images without a user turn", [{"role": "assistant", "content": "hi"}], [Image.new("RGB", (8, 8))]),
]


@pytest.mark.parametrize("what,conv,images", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_named_value_error(proc, what, conv, images):
    with pytest.raises(ValueError, match="rec-9"):
        proc([conv] if conv else [[]], [images], names=["rec-9"])


def test_missing_tokenizer_folder_is_clear_and_offline(tmp_path):
    with pytest.raises(FileNotFoundError, match="works offline"):
        load_tokenizer(tmp_path / "nope")


def test_train_tokenizer_reaches_vocab_or_says_so():
    with pytest.raises(ValueError, match="reached only"):
        train_tokenizer(["red circle"] * 20, 600)
    t = train_tokenizer(["red circle"] * 20, 600, allow_smaller=True)
    assert t.convert_tokens_to_ids("<IMG_CONTEXT>") == 5


def test_official_layout_roundtrip_v2_select_layer(tmp_path, tok, proc, world):
    cfg = get_config("tiny", ps_version="v2", select_layer=-2)
    torch.manual_seed(5)
    m = SailVLForConditionalGeneration(cfg).eval()
    off = ours_to_official(m.state_dict())
    assert any(k.endswith("attn.qkv.weight") for k in off)
    assert not any("q_proj" in k for k in off if k.startswith("vision_model."))
    (tmp_path / "config.json").write_text(json.dumps(official_config(cfg)))
    save_file({k: v.contiguous() for k, v in off.items()}, str(tmp_path / "model.safetensors"))
    tok.save_pretrained(tmp_path)
    m2, p2 = load_official_checkpoint(tmp_path)
    assert (m2.config.ps_version, m2.config.select_layer) == ("v2", -2)
    b = proc([[{"role": "user", "content": "hi"}]], [[world[0]["image"]]], return_labels=False); b.pop("num_tiles")
    with torch.no_grad():
        assert torch.equal(m(**b).logits, m2(**b).logits)
    with pytest.raises(KeyError):
        official_to_ours({"something.else": torch.zeros(1)})


def test_run_benchmarks_through_the_model(tok, proc):
    from sail_vl_nb.evaluate import make_benchmark, run_benchmarks
    bench = make_benchmark(n_per_category=6)
    torch.manual_seed(0)
    model = SailVLForConditionalGeneration(get_config("tiny")).eval()
    res = run_benchmarks(model, proc, bench, batch_size=8, max_new_tokens=4, progress=False)
    cats = ("general", "ocr", "math", "hallucination")
    assert all(0.0 <= res[c] <= 1.0 for c in cats)
    assert abs(res["overall"] - sum(res[c] for c in cats) / 4) < 1e-9


def test_batch_chat_equals_single_chat(tok, proc, world):
    torch.manual_seed(1)
    model = SailVLForConditionalGeneration(get_config("tiny")).eval()
    qs = [world[i]["qa"][0]["question"] for i in range(3)]
    ims = [world[i]["image"] for i in range(3)]
    together = batch_chat(model, proc, ims, qs, max_new_tokens=5)
    alone = [batch_chat(model, proc, [im], [q], max_new_tokens=5)[0] for im, q in zip(ims, qs)]
    assert together == alone
