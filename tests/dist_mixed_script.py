"""Run by tests/test_recipe.py under torchrun: a stage with text-only and picture samples, so that at some steps one
rank's micro-batch has no picture while the other's has. AdamW with eps = 1 >= every (clipped) gradient entry steps
linearly in the gradient, so a correct split changes the weights by rounding only (sail_vl_nb.numerics.step_tol)."""
import os, sys
import torch
from accelerate import Accelerator
from sail_vl_nb.config import get_config
from sail_vl_nb.data import EncodedDataset, vqa_samples
from sail_vl_nb.model import SailVLForConditionalGeneration
from sail_vl_nb.recipe.data import text_pool
from sail_vl_nb.text import SailVLProcessor, default_tokenizer
from sail_vl_nb.train import Stage, _plan, train_stage
from sail_vl_nb.world import make_world

out = sys.argv[1]
torch.set_num_threads(1)
cfg = get_config("tiny")
proc = SailVLProcessor.from_config(cfg, default_tokenizer("tiny"))
samples = text_pool(10, seed=1) + vqa_samples(make_world(1, seed=3))[:6]
torch.manual_seed(0)
model = SailVLForConditionalGeneration(cfg)
acc = Accelerator(cpu=True)
stage = Stage("mixed", train=("vision", "projector", "llm"), lr=0.1, eps=1.0, grad_clip=1.0, max_steps=6, batch_size=2, global_batch=4,
              max_length=128, log_every=1, warmup_ratio=0.0)
ds = EncodedDataset(samples, proc, max_length=128, progress=False)
res = train_stage(model, proc, stage, ds, out, accelerator=acc, progress=False)
# steps at which the first two samples of a micro-batch (rank 0 with 2 processes) and the next two (rank 1) differ in
# having a picture: there the vision tower ran on a stand-in tile on one rank only
has_pic = [ds[i].pixel_values is not None for i in range(len(ds))]
split = [s for s in range(stage.max_steps)
         for idx in [_plan(s, len(ds), 4, len(ds) // 4, stage.seed)] if any(has_pic[i] for i in idx[:2]) != any(has_pic[i] for i in idx[2:4])]
state = {k: v.detach().cpu() for k, v in acc.unwrap_model(model).state_dict().items()}
torch.save({"state": state, "losses": [h["loss"] for h in res.history], "world": acc.num_processes,
            "accumulation": stage.accumulation(acc.num_processes), "split_steps": split, "stage": stage.to_dict()},
           os.path.join(out, f"params-rank{acc.process_index}.pt"))
acc.wait_for_everyone()
acc.end_training()
