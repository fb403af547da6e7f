"""A training-only scene-class head on the generator's scene context.

Most of the colour error on aerial scenes is the colour of the scene as a whole (farmland, desert,
forest, water), which the generator's scene context (``model.nets.context``) has to recognise. The
head is a linear classifier on the context's pooled features, trained with cross-entropy on the
scene class in each training file's name (AID, RSSCN7; files without one are ignored), so the
context learns to tell scene types apart. It is not part of the inference model: exports and the
bundled weights hold only the generator.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..nets.generators import SceneContext

HEAD_LR_MULT = 10.0  # the head starts from scratch beside a trained generator


def scene_head_groups(method: nn.Module, lr: float) -> list[dict]:
    """The generator's optimizer groups: its parameters, and the scene head's (if any) at
    ``HEAD_LR_MULT`` times the rate, so the new head catches up with a warm-started generator."""
    groups = [{"params": list(method.netG.parameters())}]
    if hasattr(method, "netScene"):
        groups.append({"params": list(method.netScene.parameters()), "lr": lr * HEAD_LR_MULT})
    return groups


class SceneHead(nn.Module):
    def __init__(self, generator: nn.Module, n_classes: int):
        super().__init__()
        contexts = [m for m in generator.modules() if isinstance(m, SceneContext)]
        if not contexts:
            raise ConfigError("model.options.lambda_scene needs the generator's scene context: "
                              "set model.nets.context: true (a ResNet generator), or lambda_scene: 0")
        self.n_classes = n_classes
        self.classify = nn.Linear(contexts[0].pool.num_features, n_classes)

    def loss(self, features: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the images with a scene class (label >= 0); 0 when none has one.
        ``features`` are the pooled context features captured during the generator's forward."""
        if not features:
            raise RuntimeError("the generator ran no scene context; capture its features with "
                               "nets.generators.capture_scene_features()")
        labels = labels.to(features[0].device).long()
        if int(labels.max()) >= self.n_classes:
            raise ConfigError(f"the training data has scene classes beyond model.options.scene_classes "
                              f"({self.n_classes}): raise it to at least {int(labels.max()) + 1}")
        known = labels >= 0
        if not bool(known.any()):
            return features[0].sum() * 0.0
        logits = self.classify(features[0].float())
        return F.cross_entropy(logits[known], labels[known])

    def accuracy(self, features: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        known = labels >= 0
        if not bool(known.any()):
            return torch.zeros(())
        pred = self.classify(features[0].detach().float()).argmax(1)
        return (pred[known] == labels[known].to(pred.device)).float().mean()
