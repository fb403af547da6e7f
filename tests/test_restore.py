"""Restoration: synthetic damage and its labels, the damage detector learning, restoring files
(georeference, nodata, bit depth, masks), frame borders, clean images left alone, ONNX export,
``colorize --restore`` and the one-line errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.transform import Affine
from scipy.ndimage import binary_dilation

from aerocolor.cli import main
from aerocolor.color import gray_from_rgb, to_tensor
from aerocolor.data.damage import DAMAGE_TYPES, LABEL, Damage, draw_damage, type_masks
from aerocolor.imageio import list_images, read_image
from aerocolor.restore.borders import picture_area
from aerocolor.restore.fill import classical_fill, network_fill, smooth_fill
from aerocolor.restore.model import BUNDLED, RestoreModel, load_restore_model, save_restore_model
from aerocolor.restore.nets import RestoreNet, damage_detector, inpainter
from aerocolor.restore.restore import BORDER_LABEL, RestoreOptions, Restorer, grow_holes

ONLY_SCRATCHES = Damage(dust=0, hairs=0, scratches=3, blotches=0, holes=0)


@pytest.fixture(scope="module")
def gray(shared_data) -> np.ndarray:
    """A real 400x400 NEON orthophoto as gray in [0, 1]."""
    rgb = read_image(list_images(shared_data / "color/val/neon")[0])
    return gray_from_rgb(to_tensor(rgb))[0, 0].numpy()


def test_damage_is_deterministic_and_its_mask_is_what_was_drawn(gray):
    d1, l1 = draw_damage(gray, 5)
    d2, l2 = draw_damage(gray, 5)
    assert np.array_equal(d1, d2) and np.array_equal(l1, l2)
    d3, _ = draw_damage(gray, 6)
    assert not np.array_equal(d1, d3)
    changed = d1 != gray
    assert not (changed & (l1 == 0)).any(), "a pixel changed outside the mask"
    assert changed[l1 > 0].mean() > 0.97, "the mask holds pixels that were not drawn"
    seen = set()
    for seed in range(6):
        _, labels = draw_damage(gray, seed)
        seen |= {DAMAGE_TYPES[i] for i, plane in enumerate(type_masks(labels)) if plane.any()}
    assert seen == set(DAMAGE_TYPES)
    _, only = draw_damage(gray, 5, ONLY_SCRATCHES)
    assert set(np.unique(only)) == {0, LABEL["scratches"]}


def scratch_f1(net: torch.nn.Module, gray: np.ndarray) -> float:
    tp = fp = fn = 0
    with torch.no_grad():
        for seed in range(4):
            damaged, labels = draw_damage(gray[:128, :128], [9, seed], ONLY_SCRATCHES)
            pred = net(torch.from_numpy(damaged)[None, None]).argmax(1)[0].numpy() == LABEL["scratches"]
            truth = labels == LABEL["scratches"]
            tp, fp, fn = tp + (truth & pred).sum(), fp + (~truth & pred).sum(), fn + (truth & ~pred).sum()
    return 2 * tp / max(1, 2 * tp + fp + fn)


def test_tiny_detector_learns_to_find_drawn_scratches(gray):
    torch.manual_seed(0)
    net = RestoreNet(1, 1 + len(DAMAGE_TYPES), width=8)
    before = scratch_f1(net.eval(), gray)
    optim = torch.optim.Adam(net.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    net.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: more threads only wait for each other
    for step in range(40):
        crops = [draw_damage(gray[y:y + 64, x:x + 64], [1, step, i], ONLY_SCRATCHES)
                 for i, (y, x) in enumerate(rng.integers(0, gray.shape[0] - 64, (4, 2)))]
        x = torch.from_numpy(np.stack([c[0] for c in crops]))[:, None]
        y = torch.from_numpy(np.stack([c[1] for c in crops])).long()
        loss = F.cross_entropy(net(x), y, weight=torch.tensor([1.0, 6, 6, 6, 3, 1.5]))
        optim.zero_grad()
        loss.backward()
        optim.step()
    torch.set_num_threads(threads)
    after = scratch_f1(net.eval(), gray)
    assert after > before + 0.2 and after > 0.4, (before, after)


@pytest.fixture(scope="module")
def bundled() -> RestoreModel:
    if not BUNDLED.is_file():
        pytest.skip("no bundled restoration model (models/restore.pt)")
    return load_restore_model()


def test_bundled_model_is_small_and_finds_damage(bundled, gray):
    assert BUNDLED.stat().st_size < 4e6
    assert sum(p.numel() for p in bundled.detector.parameters()) < 500_000
    restorer = Restorer(bundled, RestoreOptions(device="cpu", strength=0.5))
    damaged, labels = draw_damage(gray, [3, 0])
    found = restorer.detect(damaged) > 0
    truth = labels > 0
    assert (found & truth).sum() / truth.sum() > 0.5
    restored, codes = restorer.restore(damaged)
    assert np.abs(restored - gray)[truth].mean() < np.abs(damaged - gray)[truth].mean() / 2
    assert not ((restored != damaged) & (codes == 0)).any(), "a pixel outside the mask changed"


def test_restorer_runs_folded_channels_last_copies_with_the_eager_output(bundled, gray):
    fast = Restorer(bundled, RestoreOptions(device="cpu"))
    eager = Restorer(bundled, RestoreOptions(device="cpu"))
    eager.detector, eager.inpainter = bundled.detector.eval(), bundled.inpainter.eval()
    # the copies run without batch norms, in channels_last; the model's own nets are untouched
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.detector.modules())
    assert fast.detector.head.weight.is_contiguous(memory_format=torch.channels_last)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bundled.detector.modules())
    assert bundled.detector.stem[0][0].weight.is_contiguous()
    damaged, _ = draw_damage(gray, [3, 5])
    assert torch.allclose(fast.damage_probabilities(damaged), eager.damage_probabilities(damaged), atol=1e-4)
    (out_fast, codes_fast), (out_eager, codes_eager) = fast.restore(damaged), eager.restore(damaged)
    assert (codes_fast != codes_eager).mean() < 1e-4
    same = codes_fast == codes_eager
    assert np.abs(out_fast - out_eager)[same].max() * 255 < 0.1


def test_network_fill_in_tiles_runs_only_where_damage_is_and_matches_one_pass(bundled, gray):
    from aerocolor.restore.fill import fill_region

    net = Restorer(bundled).inpainter
    calls = []
    hook = net.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape[-2:])))
    try:
        damaged, labels = draw_damage(gray, [3, 5])
        mask = fill_region(labels)[1]
        whole = network_fill(net, damaged, mask, bundled.inpaint_base)
        tiled = network_fill(net, damaged, mask, bundled.inpaint_base, tile=128, halo=32)
        assert np.abs(tiled - whole)[mask].max() * 255 < 0.5  # the halo gives each tile its context
        assert np.array_equal(tiled[~mask], damaged[~mask])
        assert max(max(c) for c in calls[1:]) <= 128  # one pass, then tiles of at most 128 px
        # damage in one corner only: the net runs once, on the one tile that holds it
        calls.clear()
        corner = np.zeros_like(mask)
        corner[10:20, 10:20] = True
        out = network_fill(net, damaged, corner, bundled.inpaint_base, tile=128, halo=32)
        assert len(calls) == 1 and not np.array_equal(out[corner], damaged[corner])
    finally:
        hook.remove()


def test_clean_image_passes_nearly_unchanged(bundled, gray):
    restored, codes = Restorer(bundled, RestoreOptions(device="cpu")).restore(gray)
    assert np.abs(restored - gray).mean() * 255 < 0.5
    assert np.array_equal(restored[codes == 0], gray[codes == 0])
    none = Restorer(bundled, RestoreOptions(device="cpu", strength=0.0)).restore(gray)[0]
    assert np.array_equal(none, gray)


def big_hole(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``gray`` with a large drawn hole (torn corner or missing strip) and the hole's mask."""
    for seed in range(40):
        damaged, labels = draw_damage(gray, [8, seed], Damage(dust=0, hairs=0, scratches=0, blotches=0, holes=2))
        if (labels == LABEL["holes"]).mean() > 0.025:
            return damaged, labels == LABEL["holes"]
    raise AssertionError("no large hole drawn in 40 seeds")


def test_detected_hole_grows_over_its_flat_area_and_texture_does_not(gray):
    damaged, hole = big_hole(gray)
    interior = hole & ~binary_dilation(~hole, iterations=3)
    rim = hole & ~interior  # only the hole's edge, as the detector sees a large one
    seeds = np.where(rim, LABEL["holes"], 0).astype(np.uint8)
    grown = grow_holes(damaged, seeds)
    assert rim.sum() < hole.sum() / 3
    assert np.array_equal(grown == LABEL["holes"], hole)
    ground = np.zeros_like(seeds)
    ground[200:220, 200:220] = LABEL["holes"]  # a false alarm on textured ground stays as it is
    assert np.array_equal(grow_holes(gray, ground), ground)
    calm = gray.copy()
    calm[:150, :150] = 0.3  # a flat mid-tone area (calm water, a rendered map) is not a hole
    seed = np.zeros_like(seeds)
    seed[140:150, 140:150] = LABEL["holes"]
    assert np.array_equal(grow_holes(calm, seed), seed)
    other = np.where(rim, LABEL["dust"], 0).astype(np.uint8)  # other types never grow
    assert np.array_equal(grow_holes(damaged, other), other)


def test_bundled_detector_finds_the_inside_of_a_large_hole(bundled, gray):
    damaged, hole = big_hole(gray)
    found = Restorer(bundled, RestoreOptions(device="cpu")).detect(damaged)
    assert (found[hole] == LABEL["holes"]).mean() > 0.95
    assert (found[~binary_dilation(hole, iterations=2)] == LABEL["holes"]).sum() < 50


def test_residual_inpainter_on_telea_starts_as_telea_and_learns_from_what_shows_through(gray, tmp_path):
    from aerocolor.restore.nets import inpaint

    torch.manual_seed(0)
    damaged, hole = big_hole(gray)
    net = inpainter(8, zero_head=True, base="telea+seen").eval()
    telea = classical_fill(damaged, hole)
    assert np.allclose(network_fill(net, damaged, hole, "telea+seen"), telea, atol=1e-6)
    # a stripe darkened by a constant: the ground still shows through, which Telea cannot use
    crop = gray[:64, :64]
    mask = np.zeros_like(crop, bool)
    mask[20:28] = True
    seen = np.where(mask, crop * 0.4, crop).astype(np.float32)
    base = torch.from_numpy(classical_fill(seen, mask))[None, None]
    m, s = (torch.from_numpy(a.astype(np.float32))[None, None] for a in (mask, seen))
    target = torch.from_numpy(crop)[None, None]
    net.train()
    optim = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(40):
        loss = ((inpaint(net, base, m, s) - target).abs() * m).sum() / m.sum()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7
    out = inpaint(net.eval(), base, m, s)
    assert torch.equal(out[m == 0], base[m == 0]), "a known pixel changed"
    saved = save_restore_model(tmp_path / "r.pt", RestoreModel(damage_detector(8).eval(), net,
                                                               {"inpainter": {"base": "telea+seen"}}))
    loaded = load_restore_model(saved)
    assert loaded.inpainter.stem[0][0].in_channels == 3
    assert np.allclose(network_fill(loaded.inpainter, seen, mask, loaded.inpaint_base),
                       network_fill(net, seen, mask, "telea+seen"), atol=2e-3)


def test_smooth_fill_beats_telea_deep_inside_holes_and_keeps_thin_damage_telea(shared_data):
    from aerocolor.data.splits import val_half

    grays = [gray_from_rgb(to_tensor(read_image(f)))[0, 0].numpy()
             for f in val_half(shared_data / "color/val", "selection")[::40][:8]]
    errors = {"telea": 0.0, "smooth": 0.0}
    for g in grays:
        damaged, hole = big_hole(g)
        telea, smooth = classical_fill(damaged, hole), smooth_fill(damaged, hole)
        assert np.array_equal(smooth[~hole], damaged[~hole])
        rim = hole & binary_dilation(~hole)  # the edge: still almost all Telea's
        assert np.abs(smooth[rim] - telea[rim]).mean() < 0.02
        errors["telea"] += float(((telea - g)[hole] ** 2).mean())
        errors["smooth"] += float(((smooth - g)[hole] ** 2).mean())
    assert errors["smooth"] < errors["telea"] * 0.9, errors
    g = grays[0]
    thin = np.zeros_like(g, bool)
    thin[:, 100:102] = True
    assert np.abs(smooth_fill(g, thin) - classical_fill(g, thin))[thin].max() < 0.02
    # a net on this base starts exactly at it (a zero residual head)
    damaged, hole = big_hole(g)
    net = inpainter(8, zero_head=True, base="smooth+seen").eval()
    assert np.allclose(network_fill(net, damaged, hole, "smooth+seen"), smooth_fill(damaged, hole), atol=1e-6)


def test_pooled_psnr_weighs_every_pixel_and_fills_are_clipped(gray):
    from aerocolor.restore.train import pooled_psnr, region_error

    small, large = np.zeros_like(gray, bool), np.zeros_like(gray, bool)
    small[:4, :4] = True
    large[100:200, 100:200] = True
    off = np.clip(gray + 0.1, 0, 1)
    off[small] = gray[small] + 0.5
    parts = [region_error(off, gray, small), region_error(off, gray, large)]
    both = small | large
    expected = 10 * np.log10(1 / ((np.clip(off, 0, 1)[both] - gray[both]) ** 2).mean())
    assert pooled_psnr(parts) == pytest.approx(expected, abs=1e-6)
    # pooling is over pixels, not a mean of the per-region PSNRs (the 16 px region barely counts)
    assert abs(pooled_psnr(parts) - np.mean([pooled_psnr([p]) for p in parts])) > 1
    assert pooled_psnr([]) is None
    # a fill is scored as written: clipped to [0, 1]
    assert region_error(gray + 5.0, gray, large)[0] <= float(((1 - gray[large]) ** 2).sum()) + 1e-6


def test_per_type_thresholds_from_the_model_notes(bundled, gray):
    damaged, _ = draw_damage(gray, [3, 1])
    default = Restorer(bundled, RestoreOptions(device="cpu"))
    probs = default.damage_probabilities(damaged)
    notes = {**bundled.notes, "damage_p": {**bundled.notes.get("damage_p", {}), "dust": 0.6}}
    eager = Restorer(RestoreModel(bundled.detector, bundled.inpainter, notes), RestoreOptions(device="cpu"))
    base, more = default.labels(probs, damaged), eager.labels(probs, damaged)
    assert (more == LABEL["dust"]).sum() > (base == LABEL["dust"]).sum()
    others = (base != LABEL["dust"]) & (more != LABEL["dust"])
    assert np.array_equal(base[others], more[others]), "another type's threshold moved"
    assert (eager.labels(probs, damaged, strength=0.1) > 0).sum() < (more > 0).sum()  # strength still rules


def test_auto_fill_gives_the_net_only_the_types_it_measured_better_on(gray):
    from aerocolor.restore.restore import fill_region

    torch.manual_seed(0)
    damaged, labels = draw_damage(gray, [3, 7])
    codes, mask = fill_region(labels)
    assert {LABEL["dust"], LABEL["blotches"]} <= set(np.unique(codes))
    net = inpainter(8).eval()  # random weights: its fill is far from Telea's
    model = RestoreModel(damage_detector(8).eval(), net, {"fill_network_types": ["blotches"]})
    out = Restorer(model, RestoreOptions(device="cpu")).fill(damaged, mask, codes)
    by_net = codes == LABEL["blotches"]
    telea_rest = classical_fill(damaged, mask & ~by_net)
    assert np.array_equal(out[mask & ~by_net], telea_rest[mask & ~by_net])
    assert np.abs(out[by_net] - telea_rest[by_net]).mean() > 0.01
    assert np.array_equal(out[~mask], damaged[~mask])
    telea_only = Restorer(RestoreModel(model.detector, net), RestoreOptions(device="cpu"))
    assert np.array_equal(telea_only.fill(damaged, mask, codes), classical_fill(damaged, mask))


def test_restoration_model_remembers_the_inpainting_base(tmp_path):
    old = RestoreModel(detector=damage_detector(8).eval(), inpainter=inpainter(8).eval())
    assert load_restore_model(save_restore_model(tmp_path / "old.pt", old)).inpaint_base == "zeros"
    new = RestoreModel(detector=damage_detector(8).eval(), inpainter=inpainter(8).eval(),
                       notes={"inpainter": {"base": "telea"}})
    loaded = load_restore_model(save_restore_model(tmp_path / "new.pt", new))
    assert loaded.inpaint_base == "telea" and Restorer(loaded, RestoreOptions(device="cpu")).inpaint_base == "telea"


def write_tif(path: Path, bands: np.ndarray, **profile) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1],
                       count=bands.shape[0], dtype=bands.dtype, crs="EPSG:32617",
                       transform=Affine(0.5, 0, 404000, 0, -0.5, 3285000), **profile) as dst:
        dst.write(bands)
    return path


def test_restore_cli_keeps_georeference_nodata_and_bit_depth(bundled, gray, tmp_path):
    damaged, labels = draw_damage(gray, [3, 1])
    data = (damaged * 65535).astype(np.uint16)
    data[:40, :40] = 7  # a nodata corner
    src = write_tif(tmp_path / "scan.tif", data[None], nodata=7)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["restore", str(src), "-o", str(out), "--tile", "256", "-q"])
    assert e.value.code in (0, None)
    with rasterio.open(src) as a, rasterio.open(out / "scan.tif") as b, rasterio.open(out / "scan_mask.tif") as m:
        assert (b.dtypes, b.crs, b.transform, b.nodata, b.shape) == (a.dtypes, a.crs, a.transform, a.nodata, a.shape)
        assert m.crs == a.crs and m.transform == a.transform
        before, after, codes = a.read(1), b.read(1), m.read(1)
    assert (after[:40, :40] == 7).all() and (codes[:40, :40] == 0).all()
    assert np.array_equal(after[codes == 0], before[codes == 0]), "a pixel outside the mask changed"
    assert (codes > 0).sum() > 0.5 * (labels[40:] > 0).sum()
    err = lambda x: np.abs(x[40:].astype(np.float64) / 65535 - gray[40:])[labels[40:] > 0].mean()  # noqa: E731
    assert err(after) < err(before) / 2


def framed_scan(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A picture in a black film border with white fiducial crosses and a data strip of
    instrument dials and digits on the left; and the truth of where the picture is."""
    canvas = np.zeros((520, 560), np.float32)
    canvas[60:460, 100:500] = gray
    for y, x in ((20, 20), (20, 530), (495, 20), (495, 530), (20, 300), (495, 300)):
        canvas[y - 8:y + 9, x - 1:x + 2] = 1.0
        canvas[y - 1:y + 2, x - 8:x + 9] = 1.0
    rng = np.random.default_rng(0)
    for y in range(80, 440, 60):  # dials and digits of the data strip
        canvas[y:y + 40, 30:70] = rng.uniform(0.3, 1.0, (40, 40)) > 0.5
    truth = np.zeros(canvas.shape, bool)
    truth[60:460, 100:500] = True
    return canvas, truth


def test_frame_border_fiducials_and_data_strip_become_nodata(gray, bundled, tmp_path):
    canvas, truth = framed_scan(gray)
    area = picture_area(canvas)
    assert not area[~truth].any(), "border, fiducials or data strip kept"
    assert area[truth].mean() > 0.98
    assert picture_area(gray).all(), "a picture without a frame is kept whole"
    src = write_tif(tmp_path / "frame.tif", (canvas * 255).astype(np.uint8)[None])
    with pytest.raises(SystemExit):
        main(["restore", str(src), "-o", str(tmp_path / "out"), "--mask-borders", "--repair", "dust", "-q"])
    with rasterio.open(tmp_path / "out/frame.tif") as b, rasterio.open(tmp_path / "out/frame_mask.tif") as m:
        valid, codes = b.dataset_mask() > 0, m.read(1)
    assert not valid[~truth].any() and valid[truth].mean() > 0.98
    assert (codes[~truth] == BORDER_LABEL).all()


def test_detector_exports_to_onnx(tmp_path):
    import onnxruntime as ort

    from aerocolor.restore.model import export_detector_onnx

    net = damage_detector(width=8).eval()
    path = export_detector_onnx(net, tmp_path / "detector.onnx")
    x = torch.rand(1, 1, 72, 96)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"gray": x.numpy()})[0]
    with torch.no_grad():
        assert np.allclose(got, net(x).numpy(), atol=1e-4)


def test_model_file_round_trip(tmp_path):
    model = RestoreModel(detector=damage_detector(8).eval(), inpainter=inpainter(8).eval(), notes={"a": 1})
    loaded = load_restore_model(save_restore_model(tmp_path / "r.pt", model))
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.detector(x), model.detector.half().float()(x), atol=1e-3)
    assert loaded.notes == {"a": 1}


def test_training_one_part_into_a_new_file_keeps_the_other_from_init(shared_data, tmp_path):
    from aerocolor.restore.train import TrainOptions, train_restore_model

    torch.manual_seed(0)
    init = save_restore_model(tmp_path / "init.pt", RestoreModel(
        detector=damage_detector(8).eval(), inpainter=inpainter(8).eval(), notes={"inpainter": {"steps": 5}}))
    opts = TrainOptions(colour=[str(shared_data / "color/val/neon")], old=[], steps=2, crop=32, batch=2,
                        width=8, max_images=2, init=init)
    new, old = load_restore_model(train_restore_model(opts, tmp_path / "new.pt", "detector")), load_restore_model(init)
    for (name, a), b in zip(new.inpainter.state_dict().items(), old.inpainter.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, b) for a, b in zip(new.detector.state_dict().values(),
                                                     old.detector.state_dict().values(), strict=True))
    assert new.notes["inpainter"] == {"steps": 5} and new.notes["detector"]["steps"] == 2


def test_colorize_with_restore_writes_colour_and_mask(bundled, gray, tmp_path):
    damaged, _ = draw_damage(gray[:128, :128], [3, 2])
    src = write_tif(tmp_path / "small.tif", (damaged * 255).astype(np.uint8)[None])
    with pytest.raises(SystemExit) as e:
        main(["colorize", str(src), "-o", str(tmp_path / "out"), "--restore", "--tile", "128", "--overlap", "16"])
    assert e.value.code in (0, None)
    with rasterio.open(tmp_path / "out/small_color.tif") as c:
        assert c.count == 3 and c.crs is not None
    assert (tmp_path / "out/small_mask.tif").is_file()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")], "temporary files left"


@pytest.mark.parametrize("args, message", [
    (["--strength", "2"], "--strength 2.0: give a value from 0"),
    (["--repair", "rust"], "--repair 'rust': choose from dust"),
    (["--fill", "magic"], "--fill 'magic': choose auto"),
    (["--restore-model", "{default}"], "not an aerocolor restoration model"),
    (["--restore-model", "{missing}"], "no such restoration model"),
])
def test_bad_options_give_one_line(args, message, tmp_path, capsys, gray):
    from aerocolor.infer import default_model_path

    src = write_tif(tmp_path / "a.tif", (gray * 255).astype(np.uint8)[None])
    args = [a.format(default=default_model_path(), missing=tmp_path / "nope.pt") for a in args]
    with pytest.raises(SystemExit) as e:
        main(["restore", str(src), "-o", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out/a.tif").exists()


def test_bad_input_files_give_one_line(bundled, tmp_path, capsys):
    (tmp_path / "notes.tif").write_text("not an image")
    for bad, message in ((tmp_path / "missing.tif", "missing.tif"), (tmp_path / "notes.tif", "notes.tif")):
        with pytest.raises(SystemExit) as e:
            main(["restore", str(bad), "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and message in err and len(err.splitlines()) == 1, err


def test_web_job_restores_damage_when_asked(web_server, gray, bundled):
    import io

    import httpx
    from PIL import Image

    from aerocolor.imageio import to_uint8

    damaged, labels = draw_damage(gray[:160, :160], [3, 4])
    buf = io.BytesIO()
    Image.fromarray(to_uint8(damaged)).save(buf, format="PNG")
    shown = {}
    for restore in (False, True):
        response = httpx.post(f"{web_server}/api/jobs", files={"image": ("scan.png", buf.getvalue())},
                              data={"model": "tiny.pt", "restore": str(restore).lower()}, timeout=60)
        assert response.status_code == 202, response.text
        for _ in range(600):
            job = httpx.get(f"{web_server}/api/jobs/{response.json()['id']}").json()
            if job["state"] in ("done", "failed"):
                break
            time.sleep(0.1)
        assert job["state"] == "done", job
        shown[restore] = np.asarray(Image.open(io.BytesIO(httpx.get(web_server + job["gray"]).content)))
    assert np.array_equal(shown[False], to_uint8(damaged))
    changed = shown[True] != shown[False]
    near_damage = binary_dilation(labels > 0, iterations=2)
    assert changed.any() and (changed & ~near_damage).mean() < 0.01


def test_strips_and_tiles_agree_with_one_pass(bundled, gray, tmp_path):
    from aerocolor.restore.restore import restore_file

    damaged, _ = draw_damage(gray, [3, 5])
    src = write_tif(tmp_path / "scan.tif", (damaged * 255).astype(np.uint8)[None])
    outputs = {}
    for name, opts in (("one", RestoreOptions(device="cpu", strength=0.8)),
                       ("strips", RestoreOptions(device="cpu", strength=0.8, tile=128, halo=32, strip=96))):
        restore_file(Restorer(bundled, opts), src, tmp_path / name, progress=False)
        with rasterio.open(tmp_path / name / "scan.tif") as r, rasterio.open(tmp_path / name / "scan_mask.tif") as m:
            outputs[name] = r.read(1).astype(int), m.read(1)
    (one, one_codes), (strips, strip_codes) = outputs["one"], outputs["strips"]
    assert (one_codes > 0).sum() > 500
    assert ((one_codes > 0) == (strip_codes > 0)).mean() > 0.995
    assert np.abs(one - strips).mean() < 0.5


def test_source_mask_band_is_kept(bundled, gray, tmp_path):
    data = (gray * 255).astype(np.uint8)
    valid = np.ones(data.shape, bool)
    valid[:, :50] = False
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        src = write_tif(tmp_path / "masked.tif", data[None])
        with rasterio.open(src, "r+") as ds:
            ds.write_mask(valid.astype(np.uint8) * 255)
    with pytest.raises(SystemExit):
        main(["restore", str(src), "-o", str(tmp_path / "out"), "-q"])
    with rasterio.open(tmp_path / "out/masked.tif") as out, rasterio.open(tmp_path / "out/masked_mask.tif") as m:
        assert np.array_equal(out.dataset_mask() > 0, valid)
        assert (m.read(1)[~valid] == 0).all()
