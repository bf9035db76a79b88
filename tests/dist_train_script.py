"""Run by tests/test_train.py under torchrun: train a tiny model for a few steps, save parameters per rank. The point is
the split over processes, not the optimiser: AdamW with eps = 1 >= every gradient entry (clipped to norm 1) steps
linearly in the gradient, so the weights of a correct split differ by rounding only (sail_vl_nb.numerics.step_tol)."""
import os, sys
import torch
from accelerate import Accelerator
from sail_vl_nb.config import get_config
from sail_vl_nb.data import vqa_samples
from sail_vl_nb.model import SailVLForConditionalGeneration
from sail_vl_nb.text import SailVLProcessor, default_tokenizer
from sail_vl_nb.train import Stage, train_stage
from sail_vl_nb.world import make_world

out, batch_size, pack = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "pack"
torch.set_num_threads(1)
cfg = get_config("tiny")
proc = SailVLProcessor.from_config(cfg, default_tokenizer("tiny"))
samples = vqa_samples(make_world(24, seed=3))
torch.manual_seed(0)
model = SailVLForConditionalGeneration(cfg)
acc = Accelerator(cpu=True)
stage = Stage("dist", train=("vision", "projector", "llm"), lr=0.1, eps=1.0, grad_clip=1.0, max_steps=4, batch_size=batch_size,
              grad_accum=2, max_length=128, pack=pack, log_every=1, warmup_ratio=0.0)
res = train_stage(model, proc, stage, samples, out, accelerator=acc, progress=False)
state = {k: v.detach().cpu() for k, v in acc.unwrap_model(model).state_dict().items()}
torch.save({"state": state, "losses": [h["loss"] for h in res.history], "world": acc.num_processes,
            "stage": stage.to_dict()},
           os.path.join(out, f"params-rank{acc.process_index}.pt"))
acc.wait_for_everyone()
acc.end_training()
