"""Run under torchrun: FSDP2 (torch's fully_shard, gloo on CPU) on the tiny model with the shipped wrap units (each
vision layer, the projector, each LLM layer, then the root) and a frozen vision tower, 3 AdamW steps of a global
batch of 8 split over the processes, the loss normalised by the label tokens of the whole global batch (as
train_stage does), gradients clipped to norm 1. `argv[2] == "plain"`: the same steps without FSDP (run it on 1
process). The point is the sharding, not the optimiser: AdamW's eps = 1 is at least every clipped gradient entry, so
its step is linear in the gradient and a correct sharding changes the weights by rounding only
(sail_vl_nb.numerics.step_tol). Rank 0 saves the full parameters, the losses and the largest gradient entry.
accelerate enables FSDP only on accelerator devices, so on CPU the sharding is tested here, directly."""
import os, sys
import torch
import torch.distributed as dist
from sail_vl_nb.config import get_config
from sail_vl_nb.data import EncodedDataset, collate_padded, model_inputs, vqa_samples
from sail_vl_nb.launch import ACCELERATE_CONFIGS, accelerate_config
from sail_vl_nb.model import SailVLForConditionalGeneration
from sail_vl_nb.text import SailVLProcessor, default_tokenizer
from sail_vl_nb.train import Stage, apply_stage, enable_checkpointing, lr_lambda
from sail_vl_nb.world import make_world
import yaml

out, mode = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
fsdp = mode == "fsdp2"
if fsdp: dist.init_process_group("gloo")
rank, world = (dist.get_rank(), dist.get_world_size()) if fsdp else (0, 1)
cfg = get_config("tiny")
proc = SailVLProcessor.from_config(cfg, default_tokenizer("tiny"))
ds = EncodedDataset(vqa_samples(make_world(24, seed=3)), proc, max_length=128, progress=False)
torch.manual_seed(0)
model = SailVLForConditionalGeneration(cfg)
stage = Stage("fsdp", train=("projector", "llm"), lr=0.1, eps=1.0, grad_clip=1.0, max_steps=3, batch_size=8 // world,
              global_batch=8, warmup_ratio=0.0, gradient_checkpointing=len(sys.argv) > 3)
groups = apply_stage(model, stage)                      # freeze the vision tower before sharding
if stage.gradient_checkpointing: enable_checkpointing(model)
wrap = yaml.safe_load(accelerate_config("fsdp2").read_text())["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"].split(",")
assert "fsdp2" in ACCELERATE_CONFIGS
units = [m for m in model.modules() if type(m).__name__ in wrap]
if fsdp:
    from torch.distributed.fsdp import fully_shard
    for m in units: fully_shard(m)
    fully_shard(model)
    groups = apply_stage(model, stage)                  # the same groups, now over the sharded (DTensor) parameters
opt = torch.optim.AdamW(groups, eps=stage.eps)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(stage.schedule, 3, 0.0))
losses, grad_max = [], 0.0
for step in range(3):
    idx = list(range(step * 8, step * 8 + 8))           # the global batch; this rank's share
    mine = idx[rank * stage.batch_size:(rank + 1) * stage.batch_size]
    b = collate_padded([ds[i] for i in mine], proc.pad_id)
    n = torch.tensor(float(sum(l != -100 for i in idx for l in ds[i].labels[1:])))   # label tokens, whole global batch
    loss = model(**model_inputs(b), use_cache=False, num_items_in_batch=n).loss
    (loss * world).backward()                            # FSDP averages gradients over processes: undo it
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], stage.grad_clip)
    local = [p.grad.to_local() if fsdp else p.grad for p in model.parameters() if p.grad is not None]
    g = torch.tensor(max((float(t.abs().max()) for t in local if t.numel()), default=0.0))
    if fsdp: dist.all_reduce(g, op=dist.ReduceOp.MAX)
    grad_max = max(grad_max, g.item())
    opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
    total = loss.detach().clone()
    if fsdp: dist.all_reduce(total)
    losses.append(total.item())
if fsdp:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    sharded = sorted({type(m).__name__ for m in model.modules() if "FSDP" in type(m).__name__ and type(m).__name__ != "FSDPModule"})
else:
    state, sharded = model.state_dict(), []
if rank == 0:
    torch.save({"state": {k: v.detach().cpu().clone() for k, v in state.items()}, "losses": losses, "world": world,
                "wrap_units": len(units), "sharded_classes": sharded, "grad_max": grad_max, "stage": stage.to_dict()},
               os.path.join(out, "params.pt"))
if fsdp: dist.destroy_process_group()
