"""Tests for mrcnn.visualize: every function renders headless to a real PNG,
and the numeric helpers match hand computations / brute-force references."""
import colorsys
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from mrcnn import visualize

CLASS_NAMES = ["BG", "square", "circle", "triangle"]
H = W = 64


@pytest.fixture(autouse=True)
def _no_show_and_no_leaks(monkeypatch):
    """plt.show() must never run under Agg, and figures we save must be closed."""
    assert matplotlib.get_backend().lower() == "agg"

    def _fail(*args, **kwargs):
        raise AssertionError("plt.show() called under a non-interactive backend")

    monkeypatch.setattr(plt, "show", _fail)
    plt.close("all")
    yield
    plt.close("all")


def _scene():
    """A 64x64 gray image with two instances: a square (class 1) and a disk (class 2)."""
    image = np.full((H, W, 3), 100, dtype=np.uint8)
    masks = np.zeros((H, W, 2), dtype=bool)
    masks[10:30, 8:28, 0] = True
    yy, xx = np.mgrid[:H, :W]
    masks[:, :, 1] = (yy - 45) ** 2 + (xx - 44) ** 2 <= 10 ** 2
    boxes = np.array([[10, 8, 30, 28], [35, 34, 56, 55]], dtype=np.int32)
    class_ids = np.array([1, 2], dtype=np.int32)
    return image, boxes, masks, class_ids


def _assert_png(path, min_side=50):
    """The file exists, is non-empty, decodes as a PNG and is not a degenerate size."""
    assert path.exists() and path.stat().st_size > 1000, path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(str(path))
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert min(pixels.shape[:2]) >= min_side, pixels.shape
    # Something was drawn: not a single flat color.
    assert pixels[..., :3].std() > 0.01
    return pixels


# ---------------------------------------------------------------- colors and masks

def test_random_colors_are_distinct_full_saturation_hues_and_seeded():
    colors = visualize.random_colors(6, seed=3)
    assert len(colors) == 6
    hues = sorted(colorsys.rgb_to_hsv(*c)[0] for c in colors)
    np.testing.assert_allclose(hues, np.arange(6) / 6, atol=1e-9)
    for c in colors:
        assert max(c) == pytest.approx(1.0) and min(c) == pytest.approx(0.0)
    dim = visualize.random_colors(6, bright=False, seed=3)
    assert all(max(c) == pytest.approx(0.7) for c in dim)
    assert visualize.random_colors(6, seed=3) == colors
    orders = {tuple(visualize.random_colors(6, seed=s)) for s in range(10)}
    assert len(orders) > 1  # the seed actually shuffles
    assert visualize.random_colors(0) == []


def test_apply_mask_matches_blend_formula():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (8, 9, 3)).astype(np.uint8)
    mask = rng.random((8, 9)) > 0.5
    color = (0.2, 0.5, 1.0)
    original = image.copy()

    unchanged = visualize.apply_mask(image, mask, color, alpha=0.0)
    np.testing.assert_array_equal(unchanged, original)

    solid = visualize.apply_mask(image, mask, color, alpha=1.0)
    np.testing.assert_array_equal(solid[mask], np.tile([51, 128, 255], (mask.sum(), 1)))
    np.testing.assert_array_equal(solid[~mask], original[~mask])

    half = visualize.apply_mask(image, mask, color, alpha=0.3)
    expected = original.astype(float)
    for c in range(3):
        blend = original[..., c] * 0.7 + 0.3 * color[c] * 255
        expected[..., c] = np.where(mask, np.rint(blend), original[..., c])
    np.testing.assert_array_equal(half, expected.astype(np.uint8))
    np.testing.assert_array_equal(image, original)  # input untouched

    with pytest.raises(ValueError, match="mask shape"):
        visualize.apply_mask(image, mask[:4], color)


# ---------------------------------------------------------------- instances

def test_display_instances_png(tmp_path):
    image, boxes, masks, class_ids = _scene()
    path = tmp_path / "instances.png"
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                     scores=np.array([0.9, 0.75]), figsize=(4, 4),
                                     save_path=path)
    _assert_png(path)
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["square 0.900", "circle 0.750"]
    assert plt.get_fignums() == []  # saved figure was closed


def test_display_instances_zero_instances_does_not_raise(tmp_path, capsys):
    image = np.full((H, W, 3), 50, dtype=np.uint8)
    image[20:40, 20:40] = 200
    path = tmp_path / "empty.png"
    visualize.display_instances(image, np.zeros((0, 4)), np.zeros((H, W, 0), bool),
                                np.zeros((0,), np.int32), CLASS_NAMES, figsize=(3, 3),
                                save_path=path)
    assert "No instances" in capsys.readouterr().out
    _assert_png(path)


def test_display_instances_without_save_path_does_not_show_under_agg():
    image, boxes, masks, class_ids = _scene()
    ax = visualize.display_instances(image, boxes, masks, class_ids, CLASS_NAMES, figsize=(3, 3))
    assert plt.fignum_exists(ax.figure.number)  # left open for the caller, not shown


def test_display_instances_rejects_mismatched_lengths():
    image, boxes, masks, class_ids = _scene()
    with pytest.raises(ValueError, match="instance counts disagree"):
        visualize.display_instances(image, boxes, masks[..., :1], class_ids, CLASS_NAMES)
    with pytest.raises(ValueError, match="instance counts disagree"):
        visualize.display_instances(image, boxes, masks, class_ids[:1], CLASS_NAMES)


def test_draw_instances_changes_mask_and_box_pixels_only():
    image, boxes, masks, class_ids = _scene()
    out = visualize.draw_instances(image, boxes, masks, class_ids, CLASS_NAMES,
                                   scores=[0.9, 0.8])
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    colors = visualize.random_colors(2, seed=0)
    for i in range(2):
        m = masks[..., i]
        assert np.all(np.any(out[m] != image[m], axis=-1))
        # Interior pixels (away from the outline) are exactly the 50% blend.
        y1, x1, y2, x2 = boxes[i]
        interior = np.zeros_like(m)
        interior[y1 + 2:y2 - 2, x1 + 2:x2 - 2] = True
        interior &= m
        expected = np.rint(100 * 0.5 + 0.5 * np.array(colors[i]) * 255)
        np.testing.assert_array_equal(out[interior], np.tile(expected, (interior.sum(), 1)))
        # The box's border pixels carry the outline color.
        np.testing.assert_array_equal(out[y1, x1:x2], np.tile(np.rint(np.array(colors[i]) * 255),
                                                             (x2 - x1, 1)))
    covered = masks.any(-1)
    for y1, x1, y2, x2 in boxes:
        covered[y1:y2, x1:x2] = True
    np.testing.assert_array_equal(out[~covered], image[~covered])
    np.testing.assert_array_equal(image, _scene()[0])  # input untouched


def test_draw_instances_accepts_grayscale_and_checks_class_ids():
    _, boxes, masks, class_ids = _scene()
    gray = np.full((H, W), 10, dtype=np.uint8)
    out = visualize.draw_instances(gray, boxes, masks, class_ids, CLASS_NAMES)
    assert out.shape == (H, W, 3)
    with pytest.raises(ValueError, match="out of range"):
        visualize.draw_instances(gray, boxes, masks, np.array([1, 9]), CLASS_NAMES)


def test_draw_box_outlines_exclusive_box_in_place():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    result = visualize.draw_box(image, (2, 3, 7, 9), (255, 0, 0))
    assert result is image
    expected = np.zeros((10, 10), bool)
    expected[2:7, 3:9] = True
    expected[4:5, 5:7] = False  # 2-px outline leaves rows 4, cols 5..6 inside
    np.testing.assert_array_equal(image[..., 0] == 255, expected)
    assert not image[..., 1:].any()


# ---------------------------------------------------------------- GT vs predictions

def test_display_differences_png_and_captions(tmp_path):
    image, boxes, masks, class_ids = _scene()
    # Prediction 0 is the square shifted by 2 rows (IoU 18*20/(22*20) = 0.818);
    # prediction 1 is a wrong-class copy of the disk. Order scrambled on purpose.
    pred_masks = np.zeros_like(masks)
    pred_masks[12:32, 8:28, 0] = True
    pred_masks[..., 1] = masks[..., 1]
    pred_boxes = np.array([[12, 8, 32, 28], boxes[1]])
    pred_scores = np.array([0.8, 0.95])
    path = tmp_path / "diff.png"
    ax = visualize.display_differences(image, boxes, class_ids, masks,
                                       pred_boxes, np.array([1, 3]), pred_scores, pred_masks,
                                       CLASS_NAMES, save_path=path)
    _assert_png(path)
    captions = [t.get_text() for t in ax.texts]
    # GT captions are empty; predictions sorted by score: the disk copy (unmatched,
    # best IoU 1.0), then the shifted square (matched, IoU 0.82).
    assert captions == ["", "", "0.95 / 1.00", "0.80 / 0.82"]


def test_display_differences_drops_padding_and_follows_compute_matches():
    from mrcnn import metrics

    image, boxes, masks, class_ids = _scene()
    pred_masks = np.zeros_like(masks)
    pred_masks[12:32, 8:28, 0] = True
    pred_masks[..., 1] = masks[..., 1]
    pred_boxes = np.array([[12, 8, 32, 28], boxes[1]])
    pred_ids, pred_scores = np.array([1, 2]), np.array([0.6, 0.9])
    # Zero-padded rows at the end, as detections and ground truth come out of the model.
    pad = lambda a, n: np.concatenate([a, np.zeros((n,) + a.shape[1:], a.dtype)])  # noqa: E731
    ax = visualize.display_differences(
        image, pad(boxes, 2), pad(class_ids, 2), np.concatenate([masks, np.zeros_like(masks)], -1),
        pad(pred_boxes, 1), pad(pred_ids, 1), pad(pred_scores, 1),
        np.concatenate([pred_masks, np.zeros_like(pred_masks[..., :1])], -1), CLASS_NAMES)
    _, pred_match, overlaps = metrics.compute_matches(
        boxes, class_ids, masks, pred_boxes, pred_ids, pred_scores, pred_masks)
    captions = [t.get_text() for t in ax.texts]
    expected = [f"{score:.2f} / {overlaps[i, int(pred_match[i])]:.2f}"
                for i, score in enumerate(sorted(pred_scores, reverse=True))]
    assert captions == ["", ""] + expected  # padding drawn nowhere, both predictions matched
    assert expected == ["0.90 / 1.00", "0.60 / 0.82"]  # IoU 18*20 / (22*20)
    plt.close(ax.figure)


def test_debug_plots_stay_reachable_from_visualize():
    from mrcnn import debug_plots

    for name in ("draw_boxes", "draw_rois", "plot_precision_recall", "plot_overlaps",
                 "display_table", "display_weight_stats", "plot_weight_histograms"):
        assert getattr(visualize, name) is getattr(debug_plots, name)
        assert name in dir(visualize)
    with pytest.raises(AttributeError):
        visualize.no_such_plot


# ---------------------------------------------------------------- ROIs, anchors, grids

def test_draw_rois_png(tmp_path, capsys):
    image, boxes, _, _ = _scene()
    rois = np.array([[8, 6, 32, 30], [30, 30, 60, 60], [0, 0, 10, 10]])
    refined = np.array([[10, 8, 30, 28], [35, 34, 56, 55], [0, 0, 10, 10]])
    roi_masks = np.zeros((3, 14, 14), np.float32)
    roi_masks[0, 2:12, 2:12] = 1.0
    roi_masks[1, 3:11, 3:11] = 1.0
    path = tmp_path / "rois.png"
    visualize.draw_rois(image, rois, refined, roi_masks, np.array([1, 2, 0]), CLASS_NAMES,
                        limit=2, save_path=path, seed=0)
    _assert_png(path)
    out = capsys.readouterr().out
    assert "Positive ROIs:  2" in out and "Negative ROIs:  1" in out


def test_display_images_png(tmp_path):
    image, _, masks, _ = _scene()
    path = tmp_path / "grid.png"
    visualize.display_images([image, masks[..., 0].astype(np.uint8), image / 255.0],
                             titles=["rgb", "mask", "float"], cols=3, cmap="Blues_r",
                             save_path=path)
    _assert_png(path)
    with pytest.raises(ValueError, match="titles"):
        visualize.display_images([image], titles=["a", "b"])


def test_display_top_masks_png(tmp_path):
    image, _, masks, class_ids = _scene()
    path = tmp_path / "top.png"
    fig = visualize.display_top_masks(image, masks, class_ids, CLASS_NAMES, limit=3,
                                      save_path=path)
    _assert_png(path)
    # Ranked by mask area: square (400 px) > disk (317 px); the third panel is empty.
    titles = [a.get_title() for a in fig.axes]
    assert titles == ["H x W=64x64", "square", "circle", "-"]


def test_draw_boxes_png(tmp_path):
    image, boxes, masks, _ = _scene()
    anchors = boxes + np.array([-3, -3, 3, 3])
    path = tmp_path / "boxes.png"
    ax = visualize.draw_boxes(image, boxes=anchors, refined_boxes=boxes, masks=masks,
                              captions=["a", "b"], visibilities=[0, 2], title="t",
                              save_path=path)
    _assert_png(path)
    assert [t.get_text() for t in ax.texts] == ["a", "b"]
    with pytest.raises(ValueError, match="give boxes"):
        visualize.draw_boxes(image)


# ---------------------------------------------------------------- evaluation plots

def test_plot_precision_recall_png(tmp_path):
    path = tmp_path / "pr.png"
    fig = visualize.plot_precision_recall(0.75, np.array([1, 1, 0.5, 0.5, 0]),
                                          np.array([0, 0.5, 0.5, 1, 1]), save_path=path)
    _assert_png(path)
    assert fig.axes[0].get_title() == "Precision-Recall Curve. AP@50 = 0.750"


def test_plot_overlaps_png_and_labels(tmp_path):
    overlaps = np.array([[0.9, 0.1], [0.2, 0.7], [0.0, 0.6]])
    path = tmp_path / "overlaps.png"
    fig = visualize.plot_overlaps(np.array([1, 2]), np.array([1, 2, 3]),
                                  np.array([0.9, 0.8, 0.7]), overlaps, CLASS_NAMES,
                                  save_path=path)
    _assert_png(path)
    cell = {t.get_position(): t.get_text() for t in fig.axes[0].texts}
    assert cell[(0, 0)] == "0.900\nmatch"
    assert cell[(1, 1)] == "0.700\nmatch"
    assert cell[(1, 2)] == "0.600\nwrong"
    assert cell[(1, 0)] == "0.100\n"
    with pytest.raises(ValueError, match="overlaps shape"):
        visualize.plot_overlaps([1, 2], [1], [0.5], overlaps, CLASS_NAMES)


def test_display_table_text_and_png(tmp_path, capsys):
    path = tmp_path / "table.png"
    text = visualize.display_table([["NAME", "VALUE"], ["alpha", 1], ["b", 22.5]],
                                   save_path=path)
    assert text.splitlines() == ["NAME   VALUE", "alpha  1", "b      22.5"]
    assert text in capsys.readouterr().out
    _assert_png(path, min_side=20)


# ---------------------------------------------------------------- weights

@pytest.fixture(scope="module")
def tiny_model():
    keras = pytest.importorskip("keras")
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, name="fc")(x)
    model = keras.Model(inputs, outputs)
    conv = model.get_layer("conv")
    conv.set_weights([np.full((3, 3, 1, 2), 0.25, np.float32), np.zeros(2, np.float32)])
    fc = model.get_layer("fc")
    kernel = np.linspace(-1, 1, 32 * 3, dtype=np.float32).reshape(32, 3)
    kernel[0, 0] = 5000.0
    fc.set_weights([kernel, np.array([0.1, 0.2, 0.3], np.float32)])
    return model


def test_display_weight_stats_model_and_rows(tmp_path, tiny_model):
    path = tmp_path / "weights.png"
    text = visualize.display_weight_stats(tiny_model, save_path=path)
    _assert_png(path, min_side=20)
    lines = {l.split()[0]: l for l in text.splitlines()[1:]}
    assert lines["conv/kernel:0"].endswith("dead?")          # constant kernel
    assert not lines["conv/bias:0"].endswith("?")            # a zero bias is normal
    assert lines["fc/kernel:0"].endswith("overflow?")        # 5000 > 1000
    assert "+5000.0000" in lines["fc/kernel:0"]

    text = visualize.display_weight_stats([("w", (2, 2), -2000.0, 1.0, 3.0),
                                           {"name": "z", "shape": (3,), "min": 0.0,
                                            "max": 0.0, "std": 0.0}])
    body = text.splitlines()[1:]
    assert body[0].split()[0] == "w" and body[0].endswith("overflow?")
    assert body[1].endswith("dead?")


def test_plot_weight_histograms_png(tmp_path, tiny_model):
    path = tmp_path / "hist.png"
    fig = visualize.plot_weight_histograms(tiny_model, save_path=path)
    _assert_png(path)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == ["conv/kernel", "conv/bias", "fc/kernel", "fc/bias"]
