"""The model-agnostic family against Captum, shap and lime on the same torch weights and the
same draws (issue 26): a small CNN through ``from_torch``, 3x16x16 inputs, a 4x4 grid of
4-pixel cells over all channels (16 features), baseline 0. Captum's permutations and
coalitions are replayed into ours with ``permutations=`` / ``coalitions=``; lime_image's
coalitions are read back from the images it asks the model to score. Differences are relative
to the reference's largest value and must be <= 1e-4 (float32); the exact enumerations (shap's
Kernel at full budget) <= 1e-5.
"""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402
from torch_models import build, inputs  # noqa: E402
from xai_core.adapters import from_torch  # noqa: E402

TARGET, K = 2, 16


@pytest.fixture(scope="module")
def setup():
    net = build("small_cnn")
    x_t = inputs(1, seed=3)
    m = from_torch(net, x_t)
    mask = xc.segments.grid((3, 16, 16), 4, channel_axis=0)  # (1, 16, 16), ids 0..15
    return net, m, x_t, jnp.asarray(x_t.numpy()[0]), mask


def rel(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def per_feature(a, mask) -> np.ndarray:
    """One value per feature from an attribution map that holds each feature's value on its cells."""
    a = np.broadcast_to(np.asarray(a), (3, 16, 16))
    return np.array([a[0][mask[0] == k][0] for k in range(K)])


def coalition_scores(net, x_t, mask):
    """shap-style model: rows of 0/1 features -> the logit of TARGET with the off cells at 0."""
    ids = torch.as_tensor(mask)

    def f(z: np.ndarray) -> np.ndarray:
        on = torch.as_tensor(np.asarray(z) > 0.5)[:, ids[0]]  # (n, 16, 16)
        with torch.no_grad():
            return net.logits(x_t * on[:, None].float())[:, TARGET].double().numpy()

    return f


def test_feature_ablation_equals_captum(setup) -> None:
    net, m, x_t, x, mask = setup
    theirs = captum_attr.FeatureAblation(net.logits).attribute(x_t, target=TARGET, feature_mask=torch.as_tensor(mask)[None])
    for incremental in (True, False):
        assert rel(xc.feature_ablation(m.score(TARGET), feature_mask=mask, incremental=incremental)(x), theirs[0]) <= 1e-4


def test_shapley_sampling_equals_captum_on_the_same_permutations(setup) -> None:
    net, m, x_t, x, mask = setup
    orders = np.stack([np.random.default_rng(s).permutation(K) for s in range(6)])
    svs = captum_attr.ShapleyValueSampling(net.logits)
    svs.permutation_generator = lambda num_features, num_samples: iter(orders.tolist())
    theirs = svs.attribute(x_t, target=TARGET, feature_mask=torch.as_tensor(mask)[None], n_samples=len(orders))
    ours = xc.shapley_sampling(m.score(TARGET), feature_mask=mask, permutations=orders)(x)
    assert rel(ours, theirs[0]) <= 1e-4


def test_kernel_shap_equals_captum_on_the_same_coalitions(setup) -> None:
    net, m, x_t, x, mask = setup
    drawn = []
    ks = captum_attr.KernelShap(net.logits)
    generator = ks.perturb_func

    def recording(*args, **kwargs):
        for z in generator(*args, **kwargs):
            drawn.append(z.numpy()[0].astype(bool))
            yield z

    ks.perturb_func = recording
    torch.manual_seed(0)
    theirs = ks.attribute(x_t, target=TARGET, feature_mask=torch.as_tensor(mask)[None], n_samples=120)
    # Captum weights every draw 1 and its two end points 1e6 (for ours efficiency is exact)
    ours = xc.kernel_shap(m.score(TARGET), feature_mask=mask, coalitions=np.array(drawn), weights=np.ones(len(drawn)))(x)
    assert len(drawn) == 120 and rel(ours, theirs[0]) <= 1e-4


def test_lime_equals_captum_ridge_on_the_same_coalitions(setup) -> None:
    from captum._utils.models.linear_model import SkLearnRidge

    net, m, x_t, x, mask = setup
    z = np.array(jax.random.bernoulli(jax.random.key(1), 0.5, (100, K)))
    rows = iter(z)
    lime = captum_attr.Lime(net.logits, interpretable_model=SkLearnRidge(alpha=1.0),
                            perturb_func=lambda *a, **k: torch.as_tensor(next(rows)[None].astype(np.int64)))
    theirs = lime.attribute(x_t, target=TARGET, feature_mask=torch.as_tensor(mask)[None], n_samples=len(z))
    ours = xc.lime(m.score(TARGET), feature_mask=mask, coalitions=z, distance="input", kernel_width=1.0)(x)
    assert rel(ours, theirs[0]) <= 1e-4


def test_kernel_shap_and_shapley_equal_shap_kernel_explainer_enumerating(setup) -> None:
    shap = pytest.importorskip("shap")
    net, m, x_t, x, mask = setup
    explainer = shap.KernelExplainer(coalition_scores(net, x_t, mask), np.zeros((1, K)))
    theirs = explainer.shap_values(np.ones((1, K)), nsamples=2 ** K, l1_reg=False, silent=True)[0]
    exact = per_feature(xc.shapley(m.score(TARGET), feature_mask=mask)(x), mask)
    kernel = per_feature(xc.kernel_shap(m.score(TARGET), feature_mask=mask, samples=2 ** K)(x), mask)
    print(f"\nshapley {rel(exact, theirs):.1e}, kernel_shap {rel(kernel, theirs):.1e} (float32 against shap's float64)")
    assert rel(exact, theirs) <= 1e-5 and rel(kernel, theirs) <= 1e-5


def test_shapley_sampling_equals_shap_permutation_explainer(setup) -> None:
    """shap's PermutationExplainer walks each shuffled order forwards and backwards: antithetic
    pairs; np.random's shuffles are replayed as ``permutations=``."""
    shap = pytest.importorskip("shap")
    net, m, x_t, x, mask = setup
    explainer = shap.PermutationExplainer(coalition_scores(net, x_t, mask), shap.maskers.Independent(np.zeros((1, K))))
    np.random.seed(5)
    theirs = explainer(np.ones((1, K)), max_evals=3 * (2 * K + 1), silent=True).values[0]
    np.random.seed(5)
    inds, orders = np.arange(K), []
    for _ in range(3):
        np.random.shuffle(inds)
        orders += [inds.copy(), inds[::-1].copy()]
    ours = per_feature(xc.shapley_sampling(m.score(TARGET), feature_mask=mask, permutations=np.array(orders))(x), mask)
    assert rel(ours, theirs) <= 1e-4


def test_lime_equals_lime_image_on_the_same_segments_and_coalitions(setup) -> None:
    lime_image = pytest.importorskip("lime.lime_image")
    net, m, x_t, x, mask = setup
    image = np.transpose(x_t.numpy()[0], (1, 2, 0)).astype(np.float64)  # lime_image works on HxWxC
    seen = []

    def classify(batch: np.ndarray) -> np.ndarray:
        seen.append(np.asarray(batch))
        with torch.no_grad():
            return net.logits(torch.as_tensor(np.transpose(batch, (0, 3, 1, 2))).float()).double().numpy()

    explanation = lime_image.LimeImageExplainer(random_state=0).explain_instance(
        image, classify, labels=(TARGET,), top_labels=None, hide_color=0, num_samples=200, batch_size=50,
        segmentation_fn=lambda _: mask[0])
    theirs = np.zeros(K)
    for k, v in explanation.local_exp[TARGET]:
        theirs[k] = v
    images = np.concatenate(seen)  # feature k is on where its cells are the image's own
    z = np.array([[np.allclose(im[mask[0] == k], image[mask[0] == k]) for k in range(K)] for im in images])
    ours = per_feature(xc.lime(m.score(TARGET), feature_mask=mask, coalitions=z)(x), mask)
    assert z[0].all() and rel(ours, theirs) <= 1e-4


def test_owen_equals_shap_partition_explainer_on_the_same_hierarchy(setup) -> None:
    """shap's PartitionExplainer with our hierarchy of halves as its clustering (scipy linkage
    rows: two children, a distance, a size) and a budget for the whole tree: exact Owen values."""
    shap = pytest.importorskip("shap")
    from xai_core.attribution.features import game
    from xai_core.attribution.owen import halves

    net, m, x_t, x, mask = setup
    order, span, children = halves(game(m.score(TARGET), x, mask, 0.0, None, "auto", "owen"), depth=K)
    rows: list[list[float]] = []

    def linkage(node: int) -> int:
        if children[node, 0] < 0:
            return int(order[span[node, 0]])
        lo, hi = linkage(children[node, 0]), linkage(children[node, 1])
        rows.append([lo, hi, 1.0 + len(rows), span[node, 1] - span[node, 0]])
        return K + len(rows) - 1

    linkage(0)
    masker = shap.maskers.Partition(np.zeros((1, K)), clustering=np.array(rows, np.float64))
    theirs = shap.PartitionExplainer(coalition_scores(net, x_t, mask), masker)(
        np.ones((1, K)), max_evals=10_000, fixed_context=None, silent=True).values[0]
    ours = per_feature(xc.owen(m.score(TARGET), feature_mask=mask, samples=10_000)(x), mask)
    assert rel(ours, theirs) <= 1e-4


def test_every_permutation_replayed_is_exact(setup) -> None:
    """Sanity link between the two halves of the file: all orders of a 4-feature grouping."""
    net, m, x_t, x, _ = setup
    mask = xc.segments.grid((3, 16, 16), 8, channel_axis=0)
    orders = np.array(list(itertools.permutations(range(4))))
    np.testing.assert_allclose(xc.shapley_sampling(m.score(TARGET), feature_mask=mask, permutations=orders)(x),
                               xc.shapley(m.score(TARGET), feature_mask=mask)(x), rtol=1e-4, atol=1e-5)
