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
from .base import unwrap

HEAD_LR_MULT = 10.0  # the head starts from scratch beside a trained generator


def scene_head_groups(method: nn.Module, lr: float) -> list[dict]:
    """The generator's optimizer groups: its parameters, and the scene head's (if any) at
    ``HEAD_LR_MULT`` times the rate, so the new head catches up with a warm-started generator."""
    groups = [{"params": list(method.netG.parameters())}]
    if hasattr(method, "netScene"):
        groups.append({"params": list(method.netScene.parameters()), "lr": lr * HEAD_LR_MULT})
    return groups


def add_scene_head(method: nn.Module, lambda_scene: float, n_classes: int) -> None:
    """Give a training method a scene head (``netScene``, trained beside netG) when ``lambda_scene`` > 0."""
    if lambda_scene > 0:
        method.netScene = SceneHead(method.netG, n_classes)
        method.trainable_nets = (*type(method).trainable_nets, "netScene")


def with_scene_loss(method: nn.Module, lambda_scene: float, features: list[torch.Tensor],
                    labels: torch.Tensor, loss_g: torch.Tensor, losses: dict) -> torch.Tensor:
    """``loss_g`` plus the weighted scene loss (logged as ``G_scene``); unchanged when it is off."""
    if lambda_scene <= 0:
        return loss_g
    loss_scene = unwrap(method.netScene).loss(features, labels)
    losses["G_scene"] = loss_scene.detach()
    return loss_g + lambda_scene * loss_scene


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
