"""GPU training throughput (not a test; prints one table and appends it to a CSV):

for each scale (`small`, `sail-vl-2b`; random init, bf16 autocast, AdamW, the full model trained), attention
implementation (`sdpa`; `flash_attention_2` when flash-attn is installed), batching (`packed` rows of --max-length
tokens with position ids restarting per sample, or `padded` micro-batches) and gradient checkpointing (off/on):
useful tokens/s (padding not counted), model FLOPs utilisation (`sail_vl_nb.launch.step_flops` over the step time and
the GPU's bf16 dense peak), and peak memory. Samples follow a realistic 2B mix: 1-6 tiles of `num_image_token` tokens
plus 32-640 text tokens. A packed batch's loss is checked against the same samples unpacked.

Targets (issue: scale-out): MFU >= 40 % for the 2B full stage; packed >= 1.8x the useful tokens/s of padded.

Usage (GPU):   python benchmarks/gpu_throughput.py --out benchmarks/results/gpu_throughput.csv
Dry run (CPU): python benchmarks/gpu_throughput.py --dry-run        (tiny scale, 2 steps: checks the script runs)
"""
import argparse, csv, datetime, importlib.util, os, platform, random, statistics, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
import transformers
from sail_vl_nb.config import get_config
from sail_vl_nb.data import Encoded, collate_packed, collate_padded, model_inputs, pack_bins
from sail_vl_nb.launch import mfu, step_flops, use_attention
from sail_vl_nb.model import SailVLForConditionalGeneration
from sail_vl_nb.train import enable_checkpointing, token_counts

BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}     # dense bf16 FLOP/s


def gpu_peak() -> tuple[str, float]:
    if not torch.cuda.is_available(): return "cpu", float("nan")
    name = torch.cuda.get_device_name()
    return name, next((v for k, v in BF16_PEAK.items() if k in name), float("nan"))


def samples(cfg, n: int, seed: int = 0, max_tiles: int = 6, text=(32, 640)) -> list:
    "n fake samples: <img> + tiles x num_image_token image tokens + text; labels on the text only."
    rng, g = random.Random(seed), torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        t, k = rng.randint(1, max_tiles), rng.randint(*text)
        img = [cfg.img_start_token_id] + [cfg.image_token_id] * (cfg.num_image_token * t) + [cfg.img_end_token_id]
        txt = torch.randint(10, cfg.text_config.vocab_size, (k,), generator=g).tolist()
        out.append(Encoded(f"s{i}", img + txt, [-100] * len(img) + txt,
                           torch.randn(t, 3, cfg.tile_size, cfg.tile_size, generator=g)))
    return out


def batches(items, mode: str, max_length: int, micro: int, pad_id: int = 0) -> list[tuple[dict, list | None]]:
    "(batch, segment lengths per row) for every micro-batch of `items`."
    if mode == "padded":
        return [(collate_padded(items[i:i + micro], pad_id), None) for i in range(0, len(items), micro)]
    out = []
    for b in pack_bins([len(x) for x in items], max_length):     # one packed row per micro-batch
        rows = [items[i] for i in b]
        out.append((collate_packed(rows, max_length, pad_id), [[len(x) for x in rows]]))
    return out


def run(scale, attn, mode, ckpt, args, dev):
    cfg = get_config(scale)
    torch.manual_seed(0)
    model = use_attention(SailVLForConditionalGeneration(cfg), attn).to(dev).train()
    if ckpt: enable_checkpointing(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=dev.type == "cuda")
    items = samples(cfg, args.samples, max_tiles=args.max_tiles)
    items = [x for x in items if len(x) <= args.max_length]
    bs = batches(items, mode, args.max_length, args.micro_batch)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def step(b):
        with amp:
            loss = model(**{k: v.to(dev) for k, v in model_inputs(b).items()}, use_cache=False).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        return loss

    step(bs[0][0])                                          # warm-up (kernels, allocator)
    if dev.type == "cuda": torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    times, useful, flops = [], 0, 0.0
    for k in range(args.steps):
        b, seg = bs[(k + 1) % len(bs)]
        t0 = time.perf_counter(); step(b)
        if dev.type == "cuda": torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        useful += token_counts([b], packed=mode == "packed")[1]            # tokens that are not padding
        flops += step_flops(model, b, segment_lengths=seg)
    sec = statistics.median(times)
    mem = torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == "cuda" else float("nan")
    return {"useful_tok_s": useful / args.steps / sec, "mfu": mfu(flops / args.steps, sec, args.peak) if args.peak == args.peak else float("nan"),
            "step_s": sec, "peak_mem_gib": mem}


def packed_loss_check(scale, attn, dev, n=6):
    "Mean token loss of the same samples packed into one row and padded: equal up to bf16 rounding."
    cfg = get_config(scale)
    torch.manual_seed(0)
    model = use_attention(SailVLForConditionalGeneration(cfg), attn).to(dev).eval()
    items = samples(cfg, n, seed=1, max_tiles=2, text=(16, 64))
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")
    with torch.no_grad(), amp:
        # use_cache=False: transformers reads packing from the position ids only when no KV cache is built
        lp = model(**{k: v.to(dev) for k, v in model_inputs(collate_packed(items, sum(map(len, items)), 0)).items()}, use_cache=False).loss
        la = model(**{k: v.to(dev) for k, v in model_inputs(collate_padded(items, 0)).items()}, use_cache=False).loss
    return float(lp), float(la)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", nargs="+", default=["small", "sail-vl-2b"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=8192)
    ap.add_argument("--max-tiles", type=int, default=6)
    ap.add_argument("--out", default=None, help="CSV to append the table to")
    ap.add_argument("--dry-run", action="store_true", help="tiny scale on CPU, 2 steps: the script runs end to end")
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if a.dry_run:
        a.scales, a.steps, a.samples, a.micro_batch, a.max_length, a.max_tiles = ["tiny"], 2, 12, 4, 512, 3
    gpu, a.peak = gpu_peak()
    attns = ["sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") and dev.type == "cuda" else [])
    print(f"{datetime.date.today()} {gpu}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"python {platform.python_version()}; attention: {attns}; peak bf16 {a.peak / 1e12:.0f} TFLOP/s")
    rows = []
    for scale in a.scales:
        for attn in attns:
            lp, la = packed_loss_check(scale, attn, dev)
            print(f"{scale} {attn}: loss packed {lp:.5f} vs unpacked {la:.5f} (diff {abs(lp - la):.1e})")
            for ckpt in (False, True):
                res = {}
                for m in ("padded", "packed"):
                    try: res[m] = run(scale, attn, m, ckpt, a, dev)
                    except torch.cuda.OutOfMemoryError:        # recorded, not fatal: the next setting may fit
                        res[m] = {"useful_tok_s": float("nan"), "mfu": float("nan"), "step_s": float("nan"), "peak_mem_gib": float("inf")}
                    if dev.type == "cuda": torch.cuda.empty_cache()
                for m, r in res.items():
                    rows.append({"date": str(datetime.date.today()), "gpu": gpu, "scale": scale, "attn": attn, "batching": m,
                                 "grad_ckpt": ckpt, **{k: round(v, 4) for k, v in r.items()},
                                 "packed_over_padded": round(res["packed"]["useful_tok_s"] / res["padded"]["useful_tok_s"], 3),
                                 "torch": torch.__version__, "transformers": transformers.__version__})
                    print(f"{scale:>10} {attn:>17} {m:>6} ckpt={ckpt!s:>5}: {r['useful_tok_s']:10.0f} useful tok/s, "
                          f"MFU {r['mfu']:.1%}, {r['step_s'] * 1000:.0f} ms/step, peak {r['peak_mem_gib']:.1f} GiB")
    if a.out:
        new = not os.path.exists(a.out)
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            if new: w.writeheader()
            w.writerows(rows)
