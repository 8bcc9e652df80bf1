"""Run under torchrun (or alone): one training step, saving the gradients the optimiser receives.

Used by test_train.py to show that 2-process DDP gives the 1-process gradient of the same global batch.
"""

import sys

import torch

from clipforge.train import TrainConfig, Trainer


class GradProbe(Trainer):
    def _optimizer_step(self) -> float:
        if self.env.is_main and self.step == 0:
            torch.save({n: p.grad.detach().clone() for n, p in self.model.named_parameters()}, sys.argv[2])
        return super()._optimizer_step()


if __name__ == "__main__":
    cfg = TrainConfig.from_json(sys.argv[1])
    GradProbe(cfg, resume=None, progress=False).fit()
