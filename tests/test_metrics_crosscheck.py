"""Cross-checks of :mod:`xai_core.metrics` against Quantus 0.6.0 and Captum's ``infidelity`` /
``sensitivity_max``: the same maps, the same torch weights (converted with ``from_torch``) and the
same perturbations on both sides (fixed noise and subsets handed to the peer, or the peer's own
draws recorded and handed to us). Differences must be <= 1e-4; ``pytest -s`` prints each.

Layout: ``from_torch`` models take ONE example in torch's own layout, ``(C, H, W)``, so our
flattening of a map of x's shape (``channel_axis=None``) is Quantus's flattening of ``(C, H, W)``:
feature indices need no conversion. Quantus wraps x in ``torch.Tensor`` (float32) to predict, so the
metrics that call the model run in float32 on both sides; the others run in float64 (``x64``).
Quantus's ``normalise`` / ``abs`` are off unless a test is about them, and ``softmax=False`` (logits).

Differences by design, each tested: our curves keep the unperturbed point ``f(x)`` and our AUCs span
[0, 1] (Quantus: unit spacing, without it); sensitivity is Yeh et al.'s plain change by default
(Quantus / Captum: relative); relevance mass keeps the positive part (Arras et al.; Quantus: signed);
the pointing game takes a tolerance (Zhang et al.; Quantus: none); IROF is 1 - auc over k = 0..n
(Quantus: n - trapz over k = 1..n). Quantus problems met: ``np.trapz`` is gone in numpy 2.4 (its
AUCs fail: patched to ``np.trapezoid``); IROF's default perturb_func fails on multi-channel inputs.
"""

from __future__ import annotations

import functools

import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

import xai_core as xc  # noqa: E402
from conftest import jax_flag  # noqa: E402
from lrp_refs import import_zennit  # noqa: E402
from reference_imports import require  # noqa: E402
from xai_core import metrics as xm  # noqa: E402
from xai_core.adapters import from_torch  # noqa: E402
from xai_core.metrics import similarity as xs  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning")]

TOL = 1e-4
N_CLASSES = 5
SHAPE = (3, 12, 12)
Y = np.array([1, 3])  # one target per example
LAYERS = ["5", "2", "0"]  # the Linear, the second and the first Conv2d: output side first


# ---------------------------------------------------------------------------------------
# references


def _import_quantus():
    import_zennit()  # quantus imports zennit, which needs torchvision: stubbed for the import only
    import quantus

    return quantus


def require_quantus():
    """``quantus``, or a skip when it (or zennit) is missing; an error in CI."""
    return require(_import_quantus)


def _import_captum_metrics():
    import captum.attr
    import captum.metrics

    return captum


def require_captum():
    return require(_import_captum_metrics)


def compare(what: str, ours: object, theirs: object, *, tol: float = TOL) -> None:
    """``ours`` == ``theirs`` to ``tol`` (absolute, or relative to the peer's largest magnitude
    when that exceeds 1); prints the largest absolute and relative differences."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    diff = np.abs(ours - theirs)
    scale = max(1.0, float(np.abs(theirs).max()))
    abs_err = float(diff.max())
    rel_err = float((diff / np.maximum(np.abs(theirs), 1e-300)).max())
    print(f"\n{what}: max abs diff {abs_err:.1e}, max rel diff {rel_err:.1e}")
    assert abs_err <= tol * scale, f"{what}: ours {ours} vs peer {theirs}"


# ---------------------------------------------------------------------------------------
# one small torch CNN, its inputs and maps


def make_net(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, N_CLASSES))
    return net.to(dtype).eval()


def inputs(dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(len(Y), *SHAPE)).astype(dtype)


def random_maps(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    """Continuous random attributions: no ties, so every ordering is unique."""
    return np.random.default_rng(seed).normal(size=shape)


def torch_gradient(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **kwargs: object) -> np.ndarray:
    """Quantus's ``explain_func``: the plain gradient of the target logit, in the model's dtype."""
    dtype = next(model.parameters()).dtype
    with torch.enable_grad():
        x = torch.tensor(np.asarray(inputs), dtype=dtype, requires_grad=True)
        out = model(x)
        out[torch.arange(len(x)), torch.as_tensor(np.asarray(targets)).long()].sum().backward()
    return x.grad.detach().numpy()


class FixedNoise:
    """A Quantus ``perturb_func`` adding ``noise[step]`` (``(steps, N, *SHAPE)``): Quantus's robustness
    metrics call it once per sample step with the whole batch flattened to ``(N, F)``, in order."""

    def __init__(self, noise: np.ndarray) -> None:
        self.noise, self.calls = noise, 0

    def __call__(self, arr: np.ndarray, indices: object = None, **kwargs: object) -> np.ndarray:
        out = arr + self.noise[self.calls].reshape(arr.shape)
        self.calls += 1
        return out


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The peers' thousands of tiny torch calls run fastest on one thread (no pool hand-offs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return make_net()


@pytest.fixture(scope="module")
def model(net: nn.Module):
    m = from_torch(net, torch.zeros(1, *SHAPE))
    assert m.logits(jnp.zeros(SHAPE)).shape == (N_CLASSES,)  # ONE example, (C, H, W) as torch
    return m


@functools.lru_cache(maxsize=None)
def _float64_pair():
    net64 = make_net(torch.float64)
    with jax_flag("jax_enable_x64", True):
        return net64, from_torch(net64, torch.zeros(1, *SHAPE, dtype=torch.float64))


@pytest.fixture
def float64_model(x64):
    """The same weights in float64 (torch module, xai-core model); used only under ``x64``."""
    return _float64_pair()


def np_trapz_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quantus's AUC helpers call ``np.trapz``, which numpy 2.4 removed (``np.trapezoid`` stays):
    check that, then put ``np.trapezoid`` under the old name for Quantus's code path."""
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


# ---------------------------------------------------------------------------------------
# 1. faithfulness curves


@pytest.mark.parametrize("features_in_step", [1, 16])
def test_pixel_flipping_matches_quantus_PixelFlipping(net, model, features_in_step, monkeypatch):
    quantus = require_quantus()
    x, a = inputs(), random_maps((len(Y), *SHAPE))
    options = dict(features_in_step=features_in_step, perturb_baseline=0.0, normalise=False, abs=False,
                   disable_warnings=True)
    call = dict(model=net, x_batch=x, y_batch=Y, a_batch=a, channel_first=True, softmax=False)
    theirs = np.asarray(quantus.PixelFlipping(**options)(**call))
    ours = np.stack([xm.pixel_flipping(model.score(int(t)), jnp.asarray(xi), jnp.asarray(ai), baseline=0.0,
                                       features_in_step=features_in_step, channel_axis=None)
                     for xi, ai, t in zip(x, a, Y)])
    n_steps = -(-x[0].size // features_in_step)
    assert ours.shape == (len(Y), n_steps + 1) and theirs.shape == (len(Y), n_steps)
    compare(f"PixelFlipping curve (step {features_in_step})", ours[:, 1:], theirs)
    compare("PixelFlipping first point = f(x)", ours[:, 0], net(torch.tensor(x))[np.arange(len(Y)), Y].detach())

    # Quantus's AUC: np.trapz with unit spacing over its points (the curve without f(x)); ours
    # is over [0, 1] with f(x) included, so Quantus's = auc(curve[1:]) * (number of intervals).
    if not hasattr(np, "trapz"):  # numpy >= 2.4: Quantus's return_auc_per_sample fails as released
        with pytest.raises(AttributeError, match="trapz"):
            quantus.PixelFlipping(**options, return_auc_per_sample=True)(**call)
    np_trapz_patch(monkeypatch)
    theirs_auc = np.asarray(quantus.PixelFlipping(**options, return_auc_per_sample=True)(**call))
    compare(f"PixelFlipping AUC (step {features_in_step})", xm.auc(jnp.asarray(ours[:, 1:])) * (n_steps - 1),
            theirs_auc)


def test_region_perturbation_matches_quantus_RegionPerturbation(net, model):
    quantus = require_quantus()
    x, a = inputs(), random_maps((len(Y), *SHAPE), seed=2)
    theirs = np.asarray(quantus.RegionPerturbation(patch_size=4, regions_evaluation=9, order="morf",
                                                   perturb_baseline=0.0, normalise=False, abs=False,
                                                   disable_warnings=True)(
        model=net, x_batch=x, y_batch=Y, a_batch=a, channel_first=True, softmax=False))
    ours = np.stack([xm.region_perturbation(model.score(int(t)), jnp.asarray(xi), jnp.asarray(ai), patch=4,
                                            baseline=0.0, channel_axis=0) for xi, ai, t in zip(x, a, Y)])
    # Quantus returns the drops f(x) - f(x^(k)), k = 1..regions; ours the scores, k = 0..regions.
    compare("RegionPerturbation drops", ours[:, :1] - ours[:, 1:], theirs)
    compare("aopc = mean drop over the regions + 1 points", xm.aopc(jnp.asarray(ours)),
            theirs.sum(axis=1) / (theirs.shape[1] + 1))


@pytest.mark.parametrize("segmentation", ["slic", "felzenszwalb"])
def test_irof_matches_quantus_IROF(net, segmentation, monkeypatch):
    quantus = require_quantus()
    from quantus.helpers import utils as quantus_utils

    x, a = inputs(), random_maps((len(Y), *SHAPE), seed=3)
    probs = from_torch(net, torch.zeros(1, *SHAPE), output="probs")  # IROF divides by f(x) > 0
    np_trapz_patch(monkeypatch)
    # Quantus's "mean" baseline is the mean of the current perturbed BATCH (all examples, all
    # channels), so both sides get a fixed baseline 0.0. Quantus's own perturb_func
    # (baseline_replacement_by_mask) asserts that its (N, 1, H, W) segment mask has x's shape,
    # so it fails on every multi-channel input: a stand-in broadcasts the mask over the channels.
    def replace_by_mask(arr: np.ndarray, mask: np.ndarray, perturb_baseline: float, **kwargs: object) -> np.ndarray:
        return np.where(mask, perturb_baseline, arr)

    theirs = np.asarray(quantus.IROF(segmentation_method=segmentation, perturb_func=replace_by_mask,
                                     perturb_baseline=0.0, normalise=False, abs=False, return_aggregate=False,
                                     disable_warnings=True)(
        model=net, x_batch=x, y_batch=Y, a_batch=a, channel_first=True, softmax=True))
    for xi, ai, t, q in zip(x, a, Y, theirs):
        segments = quantus_utils.get_superpixel_segments(img=np.moveaxis(xi, 0, -1).astype("double"),
                                                         segmentation_method=segmentation)
        n = len(np.unique(segments))
        score = probs.score(int(t))
        ours = xm.irof(score, jnp.asarray(xi), jnp.asarray(ai), segments, baseline=0.0, channel_axis=0)
        ratios = xm.curve(score, jnp.asarray(xi), jnp.asarray(ai), np.arange(n + 1), baseline=0.0,
                          segments=segments, reduce="mean", channel_axis=0)
        ratios = ratios / ratios[0]
        compare("IROF = 1 - auc(f(x^(k)) / f(x)), k = 0..n", ours, 1 - xm.auc(ratios))
        # Quantus: n - np.trapz(unit spacing) over k = 1..n (no first point, not divided by n).
        compare(f"IROF Quantus ({n} {segmentation} segments)", n - np.trapezoid(np.asarray(ratios[1:])), q)


def test_irof_mean_baseline_is_per_channel_for_channel_first_inputs(model):
    x, a = inputs()[0], random_maps(SHAPE, seed=3)
    segments = np.asarray(xm.grid_segments(SHAPE[1:], 4))
    score = model.score(int(Y[0]))
    chw = xm.irof(score, jnp.asarray(x), jnp.asarray(a), segments, channel_axis=0)
    hwc = xm.irof(lambda xh: score(jnp.moveaxis(xh, -1, 0)), jnp.moveaxis(jnp.asarray(x), 0, -1),
                  jnp.moveaxis(jnp.asarray(a), 0, -1), segments, channel_axis=-1)
    explicit = xm.irof(score, jnp.asarray(x), jnp.asarray(a), segments, channel_axis=0,
                       baseline=jnp.broadcast_to(jnp.asarray(x).mean(axis=(1, 2), keepdims=True), SHAPE))
    print(f"\nirof mean baseline: channel_axis=0 {float(chw):.6f}, channels-last {float(hwc):.6f}, "
          f"explicit per-channel mean {float(explicit):.6f}")
    compare("irof channel-first vs channels-last", chw, hwc, tol=1e-6)


# ---------------------------------------------------------------------------------------
# 2. faithfulness correlation


@pytest.mark.parametrize("similarity", ["pearson", "spearman"])
def test_faithfulness_correlation_matches_quantus_FaithfulnessCorrelation(net, model, similarity, monkeypatch):
    quantus = require_quantus()
    x, a = inputs(), random_maps((len(Y), *SHAPE), seed=4)
    runs, size = 30, 40
    draws: list[np.ndarray] = []
    choice = np.random.choice

    def recording(*args: object, **kwargs: object) -> np.ndarray:
        out = choice(*args, **kwargs)
        draws.append(np.asarray(out))
        return out

    monkeypatch.setattr(np.random, "choice", recording)
    np.random.seed(0)
    peer_similarity = getattr(quantus.similarity_func, f"correlation_{similarity}")
    theirs = np.asarray(quantus.FaithfulnessCorrelation(similarity_func=peer_similarity, nr_runs=runs,
                                                        subset_size=size, perturb_baseline=0.0,
                                                        normalise=False, abs=False, return_aggregate=False,
                                                        disable_warnings=True)(
        model=net, x_batch=x, y_batch=Y, a_batch=a, channel_first=True, softmax=False))
    monkeypatch.undo()
    assert len(draws) == runs * len(Y)  # per run, one draw per example
    np.random.seed(0)  # the same draws again from the same seed (the recording is the replay)
    assert all(np.array_equal(np.random.choice(x[0].size, size, replace=False), d) for d in draws)
    # Quantus's indices flatten (C, H, W); ours flatten our layout, which is the same (C, H, W).
    ours = [xm.faithfulness_correlation(model.score(int(t)), jnp.asarray(xi), jnp.asarray(ai), baseline=0.0,
                                        subsets=np.stack(draws[i::len(Y)]), similarity=similarity,
                                        channel_axis=None)
            for i, (xi, ai, t) in enumerate(zip(x, a, Y))]
    compare(f"FaithfulnessCorrelation ({similarity})", ours, theirs)


# ---------------------------------------------------------------------------------------
# 3. localization


def _localization_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (N, 3, H, W), (N, H, W) signed maps and boxes."""
    h, w = SHAPE[1:]
    a = random_maps((len(Y), h, w), seed=5)
    s = np.zeros((len(Y), h, w), bool)
    s[0, 2:7, 3:9] = True
    s[1, 5:11, 1:6] = True
    a[0][s[0]] += 0.8  # a map that mostly points at the object, with negative values too
    return inputs(np.float64), a, s


@pytest.mark.parametrize("name", ["PointingGame", "RelevanceMassAccuracy", "RelevanceRankAccuracy",
                                  "TopKIntersection", "AUC", "AttributionLocalisation"])
def test_localization_matches_quantus(name, x64):
    quantus = require_quantus()
    x, a, s = _localization_data()
    ours_fn = {
        "PointingGame": xm.pointing_game,
        "RelevanceMassAccuracy": functools.partial(xm.relevance_mass, part="all"),
        "RelevanceRankAccuracy": xm.relevance_rank,
        "TopKIntersection": functools.partial(xm.top_k_intersection, k=20),
        "AUC": xm.mask_auc,
        # ours: the share of the positive mass (Quantus: positive_attributions=True, abs=False, +1e-9)
        "AttributionLocalisation": xm.localization,
    }[name]
    options = {"TopKIntersection": dict(k=20), "AttributionLocalisation": dict(positive_attributions=True)}
    metric = getattr(quantus, name)(normalise=False, abs=False, disable_warnings=True, **options.get(name, {}))
    theirs = np.asarray(metric(model=None, x_batch=x, y_batch=Y, a_batch=a[:, None], s_batch=s[:, None],
                               channel_first=True), np.float64)
    ours = [ours_fn(jnp.asarray(ai), jnp.asarray(si), channel_axis=None) for ai, si in zip(a, s)]
    compare(f"{name}", ours, theirs)


def test_relevance_mass_positive_part_differs_from_quantus_RelevanceMassAccuracy(x64):
    quantus = require_quantus()
    x, a, s = _localization_data()
    theirs = np.asarray(quantus.RelevanceMassAccuracy(normalise=False, abs=False, disable_warnings=True)(
        model=None, x_batch=x, y_batch=Y, a_batch=a[:, None], s_batch=s[:, None], channel_first=True))
    ours = np.array([xm.relevance_mass(jnp.asarray(ai), jnp.asarray(si), channel_axis=None) for ai, si in zip(a, s)])
    positive = np.maximum(a, 0)
    # Arras et al. 2022 (CLEVR-XAI) keep the positive relevance only: R = max(a, 0); Quantus uses signed a.
    compare("relevance_mass(part='positive') = sum_mask R+ / sum R+", ours,
            (positive * s).sum(axis=(1, 2)) / positive.sum(axis=(1, 2)))
    print(f"\nrelevance mass positive {ours} vs Quantus (signed) {theirs}")
    assert np.all(np.abs(ours - theirs) > 1e-2)


def test_pointing_game_tolerance_differs_from_quantus_PointingGame(x64):
    quantus = require_quantus()
    x, a, s = _localization_data()
    a = np.abs(a)
    a[0, 7, 5] = a[1, 4, 3] = 10.0  # each maximum one pixel outside its box
    theirs = np.asarray(quantus.PointingGame(normalise=False, abs=False, disable_warnings=True)(
        model=None, x_batch=x, y_batch=Y, a_batch=a[:, None], s_batch=s[:, None], channel_first=True), np.float64)
    strict = [xm.pointing_game(jnp.asarray(ai), jnp.asarray(si), channel_axis=None) for ai, si in zip(a, s)]
    tolerant = [xm.pointing_game(jnp.asarray(ai), jnp.asarray(si), tolerance=1, channel_axis=None)
                for ai, si in zip(a, s)]
    compare("PointingGame (miss by one pixel)", strict, theirs)
    # Zhang et al. 2018 count a hit within a tolerance (15 px at 224 px); Quantus has none.
    assert np.all(theirs == 0.0) and np.all(np.asarray(tolerant) == 1.0)


# ---------------------------------------------------------------------------------------
# 4. complexity


@pytest.mark.parametrize("name", ["Sparseness", "Complexity"])
def test_complexity_matches_quantus(name, x64):
    quantus = require_quantus()
    x, a = inputs(np.float64), random_maps((len(Y), *SHAPE), seed=6)
    a[:, :, 3:7, 3:7] *= 6.0  # somewhat concentrated
    ours_fn = {"Sparseness": xm.sparseness, "Complexity": xm.complexity}[name]
    metric = getattr(quantus, name)(disable_warnings=True)  # Quantus's defaults: abs=True, normalise=True
    # every element a feature (channel_axis=None) ...
    theirs = np.asarray(metric(model=None, x_batch=x, y_batch=Y, a_batch=a.copy(), channel_first=True))
    compare(f"{name} (every element)", [ours_fn(jnp.asarray(ai), channel_axis=None) for ai in a], theirs)
    # ... or pixels: ours sums over the channel axis (0 in the CHW layout) before |.|
    summed = a.sum(axis=1, keepdims=True)
    theirs = np.asarray(metric(model=None, x_batch=x, y_batch=Y, a_batch=summed.copy(), channel_first=True))
    compare(f"{name} (pixels, channel-summed)", [ours_fn(jnp.asarray(ai), channel_axis=0) for ai in a], theirs)


# ---------------------------------------------------------------------------------------
# 5. robustness


def _uniform_noise(samples: int, radius: float, dtype=np.float64) -> np.ndarray:
    """``(samples, N, *SHAPE)`` perturbations, U[-radius, radius] elementwise."""
    return np.random.default_rng(7).uniform(-radius, radius, size=(samples, len(Y), *SHAPE)).astype(dtype)


@pytest.mark.parametrize("name", ["MaxSensitivity", "AvgSensitivity"])
def test_sensitivity_matches_quantus(name, float64_model):
    quantus = require_quantus()
    net64, m64 = float64_model
    x, samples = inputs(np.float64), 8
    noise = _uniform_noise(samples, 0.2)
    a = torch_gradient(net64, x, Y)
    metric = getattr(quantus, name)(nr_samples=samples, perturb_func=FixedNoise(noise), normalise=False, abs=False,
                                    disable_warnings=True, return_nan_when_prediction_changes=False)
    theirs = np.asarray(metric(model=net64, x_batch=x, y_batch=Y, a_batch=a, explain_func=torch_gradient,
                               channel_first=True, softmax=False))
    assert metric.perturb_func.func.calls == samples
    ours_fn = {"MaxSensitivity": xm.sensitivity_max, "AvgSensitivity": xm.avg_sensitivity}[name]
    relative, plain, norms = [], [], []
    for i, (xi, t) in enumerate(zip(x, Y)):
        explain = xc.gradient(m64.score(int(t)))
        relative.append(ours_fn(explain, jnp.asarray(xi), noise=noise[:, i], relative=True))
        plain.append(ours_fn(explain, jnp.asarray(xi), noise=noise[:, i]))
        norms.append(np.linalg.norm(np.asarray(explain(jnp.asarray(xi)))))
    compare(f"{name} (relative=True)", relative, theirs)
    # Yeh et al. 2019 define the plain change ||Phi(x + d) - Phi(x)|| (our default); Quantus and
    # Captum divide by ||Phi(x)||.
    compare(f"{name} (relative=False) = Quantus * ||a(x)||", plain, theirs * np.array(norms))
    assert not np.allclose(plain, theirs, rtol=1e-2)


def test_sensitivity_max_matches_captum_sensitivity_max(float64_model):
    captum = require_captum()
    net64, m64 = float64_model
    x, samples = inputs(np.float64), 8
    noise = _uniform_noise(samples, 0.2)
    # Captum repeats each example samples times (repeat_interleave): example-major order.
    perturbed = torch.tensor(x[:, None] + noise.transpose(1, 0, 2, 3, 4)).reshape(-1, *SHAPE)
    saliency = captum.attr.Saliency(net64)
    theirs = captum.metrics.sensitivity_max(saliency.attribute, torch.tensor(x),
                                            perturb_func=lambda inputs, radius: perturbed,
                                            n_perturb_samples=samples, target=torch.tensor(Y), abs=False)
    ours = [xm.sensitivity_max(xc.gradient(m64.score(int(t))), jnp.asarray(xi), noise=noise[:, i], relative=True)
            for i, (xi, t) in enumerate(zip(x, Y))]
    compare("captum sensitivity_max", ours, theirs.detach())
    a = saliency.attribute(torch.tensor(x), target=torch.tensor(Y), abs=False).detach().numpy()
    compare("Saliency(abs=False) = xc.gradient", np.stack([xc.gradient(m64.score(int(t)))(jnp.asarray(xi))
                                                           for xi, t in zip(x, Y)]), a)


def test_local_lipschitz_matches_quantus_LocalLipschitzEstimate(float64_model):
    quantus = require_quantus()
    net64, m64 = float64_model
    x, samples = inputs(np.float64), 8
    noise = 0.1 * np.random.default_rng(8).normal(size=(samples, len(Y), *SHAPE))
    metric = quantus.LocalLipschitzEstimate(nr_samples=samples, perturb_func=FixedNoise(noise), normalise=False,
                                            abs=False, disable_warnings=True)
    theirs = np.asarray(metric(model=net64, x_batch=x, y_batch=Y, a_batch=torch_gradient(net64, x, Y),
                               explain_func=torch_gradient, channel_first=True, softmax=False))
    ours = [xm.local_lipschitz(xc.gradient(m64.score(int(t))), jnp.asarray(xi), noise=noise[:, i])
            for i, (xi, t) in enumerate(zip(x, Y))]
    compare("LocalLipschitzEstimate", ours, theirs)


# ---------------------------------------------------------------------------------------
# 6. infidelity


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_matches_captum_infidelity(float64_model, normalize):
    captum = require_captum()
    net64, m64 = float64_model
    x, samples = inputs(np.float64), 16
    noise = 0.1 * np.random.default_rng(9).normal(size=(samples, len(Y), *SHAPE))
    a = torch_gradient(net64, x, Y) * x  # any map; gradient x input
    flat = torch.tensor(noise.transpose(1, 0, 2, 3, 4).reshape(-1, *SHAPE))  # example-major, as Captum expands

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return flat, inputs - flat

    theirs = captum.metrics.infidelity(net64, perturb, torch.tensor(x), torch.tensor(a), target=torch.tensor(Y),
                                       n_perturb_samples=samples, normalize=normalize)
    ours = [xm.infidelity(m64.score(int(t)), jnp.asarray(xi), jnp.asarray(ai), noise=noise[:, i], normalize=normalize)
            for i, (xi, ai, t) in enumerate(zip(x, a, Y))]
    compare(f"captum infidelity (normalize={normalize})", ours, theirs, tol=1e-6)
    compare(f"captum infidelity (normalize={normalize}), relative", np.asarray(ours) / theirs.numpy(),
            np.ones(len(Y)))


# ---------------------------------------------------------------------------------------
# 7. randomization


def test_similarities_match_quantus_similarity_func(x64):
    quantus = require_quantus()
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(10)
    a = rng.normal(size=(3, 12, 12))
    pairs = [(a[0], a[0] + 0.5 * rng.normal(size=(12, 12))), (a[1], a[2]), (a[2], -a[2] + 0.1 * a[1])]
    sf = quantus.similarity_func
    for k, (u, v) in enumerate(pairs):
        fu, fv = u.ravel(), v.ravel()
        compare(f"spearman pair {k}", xs.SIMILARITIES["spearman"](jnp.asarray(u), jnp.asarray(v)),
                sf.correlation_spearman(fu, fv))
        compare(f"spearman_abs pair {k}", xs.spearman_abs(jnp.asarray(u), jnp.asarray(v)),
                sf.correlation_spearman(np.abs(fu), np.abs(fv)))
        # Quantus's ssim takes the maps as they come: flattened, a 1-d SSIM
        compare(f"ssim 1-d pair {k}", xs.ssim(jnp.asarray(fu), jnp.asarray(fv)), sf.ssim(fu, fv))
        span = max(u.max(), v.max()) - min(u.min(), v.min())
        compare(f"ssim 2-d pair {k}", xs.ssim(jnp.asarray(u), jnp.asarray(v)),
                structural_similarity(u, v, data_range=span))


def test_model_randomization_matches_quantus_MPRT(net, model):
    quantus = require_quantus()
    from quantus.helpers.model.pytorch_model import PyTorchModel

    x = inputs()
    theirs = quantus.MPRT(similarity_func=quantus.similarity_func.correlation_spearman, abs=True, normalise=True,
                          layer_order="top_down", seed=42, disable_warnings=True)(
        model=net, x_batch=x, y_batch=Y, a_batch=None, explain_func=torch_gradient, channel_first=True,
        softmax=False)
    # Quantus's randomized weights: its generator resets (reset_parameters, seed 43 before each) the
    # modules that have reset_parameters, reversed; cascading, on one copy of the model.
    names, last = [], None
    for name, randomized_net in PyTorchModel(net, channel_first=True, softmax=False).get_random_layer_generator(
            order="top_down", seed=42):
        names.append(name)
        last = randomized_net
    assert names == LAYERS and list(theirs) == ["original", *LAYERS]
    randomized = from_torch(last, torch.zeros(1, *SHAPE)).params

    def explain_for(t: int):
        return lambda p, xi: xc.gradient(model.with_params(p).score(t))(xi)

    assert xm.param_layers(explain_for(1), model.params, jnp.asarray(x[0])) == LAYERS
    for i, (xi, t) in enumerate(zip(x, Y)):
        # spearman of Quantus's |a| / max|a| (abs=True, normalise=True) = spearman_abs of a
        ours = xm.model_randomization(explain_for(int(t)), model.params, jnp.asarray(xi), randomized=randomized,
                                      order="cascading", similarity="spearman_abs", layers=LAYERS,
                                      channel_axis=None)
        assert list(ours) == LAYERS
        compare(f"MPRT example {i}", [ours[k] for k in LAYERS], [theirs[k][i] for k in LAYERS])


def test_random_logit_matches_quantus_RandomLogit(net, model):
    quantus = require_quantus()
    x = inputs()
    theirs = np.asarray(quantus.RandomLogit(num_classes=N_CLASSES, seed=42, normalise=False, abs=False,
                                            disable_warnings=True)(
        model=net, x_batch=x, y_batch=Y, a_batch=torch_gradient(net, x, Y), explain_func=torch_gradient,
        channel_first=True, softmax=False))
    # Quantus's draw: np.random.seed(seed), an index into the other classes in increasing order.
    # (Ours with key= draws (target + 1 + U{0..K-2}) mod K, as uniform, another mapping.)
    np.random.seed(42)
    index = np.random.randint(0, N_CLASSES - 1, len(Y))
    others = [[c for c in range(N_CLASSES) if c != t][j] for t, j in zip(Y, index)]
    # Quantus's ssim on the flattened (C, H, W) maps: an explain that returns the flat map.
    explain = lambda xi, c: xc.gradient(model.score(c))(xi).ravel()  # noqa: E731
    ours = [xm.random_logit(explain, jnp.asarray(xi), int(t), num_classes=N_CLASSES, other=o, similarity="ssim",
                            channel_axis=None) for xi, t, o in zip(x, Y, others)]
    compare("RandomLogit (ssim, flattened)", ours, theirs)
