"""Training the restoration networks on synthetic damage drawn over real photos.

Crops come from gray versions of colour photos (lightly aged: tone, grain, blur, JPEG, but no
dust or scratches, whose pixels the labels would not know) and from real old photos, whose own
flaws are real but unlabelled. Damage is drawn with seeds ``[TRAIN_SEED_TAG, step, i]``; held-out
measurements use other tags, so no measured image was seen with its damage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_dilation

from ..color import gray_from_rgb, to_tensor
from ..data.ageing import Ageing, age_image
from ..data.damage import DAMAGE_TYPES, LABEL, Damage, draw_damage
from ..imageio import list_images, read_image
from .fill import fill_region, inpaint_base
from .model import RestoreModel, save_restore_model
from .nets import damage_detector, inpaint, inpainter, sees_damage

log = logging.getLogger("aerocolor")
TRAIN_SEED_TAG = 1
LIGHT_AGEING = Ageing(dust=0, scratches=0, vignette=0.2)
CLEAN_SHARE = 0.15  # crops left undamaged, so the detector learns to leave clean ground alone
# clean ground, dust, hairs, scratches, blotches, holes: thin marks are rare pixels, weigh them up
CLASS_WEIGHTS = (1.0, 6.0, 6.0, 6.0, 5.0, 4.0)


@dataclass
class TrainOptions:
    colour: list[str]
    old: list[str]
    steps: int = 1000
    minutes: float = 0.0  # stop after this wall time (0: no limit)
    crop: int = 128
    batch: int = 8
    lr: float = 2e-3
    width: int = 16
    max_images: int = 600
    old_share: float = 0.25
    seed: int = 0
    init: Path | None = None  # go on from this restoration model file's nets
    inpaint_base: str = "smooth+seen"  # the inpainter's input, see nets.INPAINT_BASES


def load_pool(folders: list[str], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``n`` images spread over the folders, as uint8 (colour HxWx3 or gray HxW)."""
    files = list_images(folders)
    pick = rng.choice(len(files), min(n, len(files)), replace=False)
    return [(read_image(files[i]) * 255 + 0.5).astype(np.uint8) for i in sorted(pick)]


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size or w < size:
        pad = ((0, max(0, size - h)), (0, max(0, size - w))) + ((0, 0),) * (img.ndim - 2)
        img = np.pad(img, pad, mode="reflect")
        h, w = img.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    return img[y:y + size, x:x + size]


def clean_crop(colour: list[np.ndarray], old: list[np.ndarray], opts: TrainOptions,
               rng: np.random.Generator) -> np.ndarray:
    """A gray crop in [0, 1] without synthetic damage."""
    if old and rng.random() < opts.old_share:
        return random_crop(old[rng.integers(len(old))], opts.crop, rng).astype(np.float32) / 255
    img = random_crop(colour[rng.integers(len(colour))], opts.crop, rng).astype(np.float32) / 255
    if rng.random() < 0.5:
        img = np.flip(img, axis=int(rng.integers(2)))
    return age_image(np.ascontiguousarray(img), rng, LIGHT_AGEING)


def damaged_batch(colour, old, opts: TrainOptions, rng: np.random.Generator, step: int,
                  params: Damage = Damage()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean, damaged) gray (B,1,S,S) and labels (B,S,S)."""
    clean, damaged, labels = [], [], []
    for i in range(opts.batch):
        g = clean_crop(colour, old, opts, rng)
        if rng.random() < CLEAN_SHARE:
            d, lab = g.copy(), np.zeros(g.shape, np.uint8)
        else:
            d, lab = draw_damage(g, [TRAIN_SEED_TAG, opts.seed, step, i], params)
        clean.append(g)
        damaged.append(d)
        labels.append(lab)
    return (torch.from_numpy(np.stack(clean))[:, None], torch.from_numpy(np.stack(damaged))[:, None],
            torch.from_numpy(np.stack(labels)).long())


def held_out_grays(files: list[Path], n: int, side: int = 320) -> list[np.ndarray]:
    """``n`` of ``files`` spread evenly over the list, as gray centre crops of at most ``side``
    pixels: the images restoration is measured and calibrated on."""
    out = []
    for i in np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int):
        g = gray_from_rgb(to_tensor(read_image(files[i])))[0, 0].numpy()
        h, w = g.shape
        t, lft = max(0, (h - side) // 2), max(0, (w - side) // 2)
        out.append(np.ascontiguousarray(g[t:t + side, lft:lft + side]))
    return out


def damage_regions(labels: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Per damage type present: its true damage one pixel wider, within the filled ``mask``:
    where a fill of that type is measured."""
    regions = {k: binary_dilation(labels == LABEL[k], iterations=1) & mask for k in DAMAGE_TYPES}
    return {k: r for k, r in regions.items() if r.any()}


def region_error(fill: np.ndarray, clean: np.ndarray, region: np.ndarray) -> tuple[float, int]:
    """A fill's squared error sum against the clean photo inside ``region`` (the fill clipped to
    [0, 1]) and the region's pixel count: one part of a pooled PSNR."""
    return float(((np.clip(fill[region], 0, 1) - clean[region]) ** 2).sum()), int(region.sum())


def pooled_psnr(parts: list[tuple[float, int]]) -> float | None:
    """PSNR (dB, range 1) over all the pixels of ``region_error`` parts; None for no parts."""
    if not parts:
        return None
    return float(10 * np.log10(sum(n for _, n in parts) / max(sum(e for e, _ in parts), 1e-12)))


def _loop(name: str, opts: TrainOptions, loss_fn, optim, sched, log_every: int = 25) -> int:
    """Optimise ``loss_fn(step)`` for the step budget or the wall-time limit; returns the steps."""
    start = time.monotonic()
    step = 0
    for step in range(1, opts.steps + 1):
        loss = loss_fn(step)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        if step % log_every == 0 or step == 1:
            log.info("%s step %d (%.0f s): loss %.4f", name, step, time.monotonic() - start, loss.item())
        if opts.minutes and time.monotonic() - start > 60 * opts.minutes:
            break
    return step


def _initial(net: torch.nn.Module, opts: TrainOptions, part: str) -> torch.nn.Module:
    """``net`` in training mode, with the weights of ``part`` from ``opts.init`` where given (an
    inpainter only when it was trained on inputs of the same kind: zeroed holes, or a fill with
    the same channels, whose residual the training then adapts to the new fill)."""
    if opts.init is not None:
        from .model import load_restore_model

        init = load_restore_model(opts.init)
        previous = getattr(init, part)
        if previous is None:
            return net.train()
        if part == "inpainter" and init.inpaint_base != opts.inpaint_base:
            same_inputs = ((init.inpaint_base == "zeros") == (opts.inpaint_base == "zeros")
                           and sees_damage(init.inpaint_base) == sees_damage(opts.inpaint_base))
            log.info("inpainter: %s was trained on base %s, not %s; %s", opts.init, init.inpaint_base,
                     opts.inpaint_base, "going on from its weights" if same_inputs else "starting afresh")
            if not same_inputs:
                return net.train()
        net.load_state_dict(previous.state_dict())
    return net.train()


def _setup(opts: TrainOptions, seed: int, net: torch.nn.Module):
    """The random generator, image pools, optimiser and one-cycle schedule of a training run."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    colour = load_pool(opts.colour, opts.max_images, rng)
    old = load_pool(opts.old, opts.max_images // 3, rng) if opts.old else []
    optim = torch.optim.AdamW(net.parameters(), opts.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, opts.lr, total_steps=opts.steps, pct_start=0.05)
    return rng, colour, old, optim, sched


def train_detector(opts: TrainOptions) -> tuple[torch.nn.Module, int]:
    """A damage segmenter trained with class-weighted cross-entropy."""
    net = _initial(damage_detector(opts.width), opts, "detector")
    rng, colour, old, optim, sched = _setup(opts, opts.seed, net)
    weights = torch.tensor(CLASS_WEIGHTS)

    def loss_fn(step: int) -> torch.Tensor:
        _, damaged, labels = damaged_batch(colour, old, opts, rng, step)
        return F.cross_entropy(net(damaged), labels, weight=weights)

    return net.eval(), _loop("detector", opts, loss_fn, optim, sched)


def train_inpainter(opts: TrainOptions) -> tuple[torch.nn.Module, int]:
    """An inpainting net trained with L1 inside the damage masks (blotches and holes, plus
    scratches and hairs for thin gaps). On a Telea base its residual head starts at zero, so
    training starts from Telea's fill and can only learn corrections to it; with ``+seen`` it
    also sees the damaged pixels (a blotch or a scratch still shows the ground through it)."""
    base_kind = opts.inpaint_base
    net = _initial(inpainter(opts.width, zero_head=base_kind != "zeros", base=base_kind), opts, "inpainter")
    rng, colour, old, optim, sched = _setup(opts, opts.seed + 1, net)
    params = Damage(dust=0.3, hairs=0.5, scratches=0.5, blotches=3.0, holes=1.5)

    def loss_fn(step: int) -> torch.Tensor:
        clean, damaged, labels = damaged_batch(colour, old, opts, rng, step, params)
        masks = [fill_region(lab)[1] for lab in labels.numpy()]
        base = torch.from_numpy(np.stack([inpaint_base(d, m, base_kind)
                                          for d, m in zip(damaged[:, 0].numpy(), masks)]))[:, None]
        mask = torch.from_numpy(np.stack(masks))[:, None].float()
        out = inpaint(net, base, mask, damaged if sees_damage(base_kind) else None)
        return (out - clean).abs().mul(mask).sum() / mask.sum().clamp(min=1)  # L1 inside the holes

    return net.eval(), _loop("inpainter", opts, loss_fn, optim, sched)


def train_restore_model(opts: TrainOptions, out: Path, which: str = "both") -> Path:
    """Train the detector and/or the inpainter and save them (float16) into ``out``; a part not
    trained is taken from ``out`` when it already holds one, else from ``opts.init``."""
    from .model import load_restore_model

    source = out if out.is_file() else opts.init if opts.init and Path(opts.init).is_file() else None
    previous = load_restore_model(source) if source else RestoreModel()
    detector, inpaint_net = previous.detector, previous.inpainter
    notes = dict(previous.notes)
    if which in ("both", "detector"):
        detector, steps = train_detector(opts)
        notes["detector"] = {"steps": steps, "batch": opts.batch, "crop": opts.crop, "width": opts.width,
                             "types": list(DAMAGE_TYPES), "labels": LABEL, "seed": opts.seed}
    if which in ("both", "inpainter"):
        inpaint_net, steps = train_inpainter(opts)
        notes["inpainter"] = {"steps": steps, "batch": opts.batch, "crop": opts.crop, "width": opts.width,
                              "seed": opts.seed, "base": opts.inpaint_base}
    return save_restore_model(out, RestoreModel(detector=detector, inpainter=inpaint_net, notes=notes))
