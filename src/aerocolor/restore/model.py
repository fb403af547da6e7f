"""The restoration model file: the damage detector and the inpainting net, stored as float16,
with notes on how they were trained. The bundled one is ``models/restore.pt``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..imageio import atomic_write
from .nets import RestoreNet

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "restore.pt"
FORMAT = "aerocolor-restore-1"


@dataclass
class RestoreModel:
    detector: RestoreNet | None = None
    inpainter: RestoreNet | None = None
    notes: dict = field(default_factory=dict)

    @property
    def inpaint_base(self) -> str:
        """The inpainter's input (``nets.INPAINT_BASES``): ``smooth+seen``, ``telea+seen``,
        ``telea``, or ``zeros`` (zeroed holes; files written before the field existed)."""
        return self.notes.get("inpainter", {}).get("base", "zeros")


def _half_state(net: RestoreNet) -> dict:
    return {"width": net.stem[0][0].out_channels,
            "state": {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}}


def save_restore_model(path: Path, model: RestoreModel) -> Path:
    blob = {"format": FORMAT, "notes": model.notes}
    for name in ("detector", "inpainter"):
        net = getattr(model, name)
        if net is not None:
            blob[name] = _half_state(net)
    return atomic_write(path, lambda tmp: torch.save(blob, tmp))


def load_restore_model(path: Path | None = None, device: torch.device | str = "cpu") -> RestoreModel:
    """A restoration model file (default: the bundled one), its nets in float32 eval mode."""
    path = Path(path) if path is not None else BUNDLED
    if not path.is_file():
        raise CheckpointError(f"{path}: no such restoration model; give a file written by "
                              "scripts/train_restore.py, or leave --restore-model out for the bundled one")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise CheckpointError(f"{path}: not an aerocolor restoration model ({type(e).__name__}); "
                              "give a file written by scripts/train_restore.py") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an aerocolor restoration model (a colorization "
                              "checkpoint?); give a file written by scripts/train_restore.py")
    model = RestoreModel(notes=blob.get("notes", {}))
    for name in ("detector", "inpainter"):
        if name in blob:
            state = blob[name]["state"]
            net = RestoreNet(state["stem.0.0.weight"].shape[1], state["head.weight"].shape[0], blob[name]["width"])
            net.load_state_dict({k: v.float() if v.is_floating_point() else v
                                 for k, v in blob[name]["state"].items()})
            setattr(model, name, net.eval().to(device))
    return model


def export_detector_onnx(net: RestoreNet, path: Path, opset: int = 17) -> Path:
    """The damage detector as ONNX: input ``gray`` (N,1,H,W) in [0, 1], H and W multiples of 8,
    output ``logits`` (N, 1 + types, H, W); height and width are dynamic."""
    net = net.float().eval().cpu()

    def write(tmp: str) -> None:
        torch.onnx.export(net, torch.zeros(1, 1, 64, 64), tmp, input_names=["gray"], output_names=["logits"],
                          dynamic_axes={"gray": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
                          opset_version=opset, dynamo=False)

    return atomic_write(path, write)
