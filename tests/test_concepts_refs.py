"""xc.concepts.tcav against Captum's ``captum.concept.TCAV`` on the same small torch CNN, layers,
concept sets and random sets. The CAVs are shared both ways: ours given Captum's trained weights
(its ``DefaultClassifier``, sklearn's SGDClassifier), and Captum given ours through a custom
``Classifier``; then the scores (``sign_count``, ``magnitude``) agree per experimental set and the
p-values (scipy's ``ttest_ind`` on Captum's scores, as in Captum's TCAV tutorial) to 1e-6.
Captum's CAV "accuracy" for two classes is the share of the first class in the held-out split
(its prediction is the argmax over one column), not an accuracy: shown below."""

from __future__ import annotations

import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import xai_core as xc
from reference_imports import require

pytestmark = pytest.mark.filterwarnings("ignore:Precision loss")  # scipy, on scores that are all equal

LAYERS = ["conv2", "fc1"]
NAMES = ["striped", "round"]
R, N, TARGET = 4, 12, 2


def captum_concept():  # noqa: ANN201 - the module
    return require(lambda: __import__("captum.concept", fromlist=["TCAV"]))


@pytest.fixture(scope="module")
def setup():  # noqa: ANN201
    torch = pytest.importorskip("torch")
    from xai_core.adapters import from_torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.relu1 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()
            self.conv2, self.relu2 = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1), torch.nn.ReLU()
            self.fc1, self.relu3, self.fc2 = torch.nn.Linear(96, 10), torch.nn.ReLU(), torch.nn.Linear(10, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
            return self.fc2(self.relu3(self.fc1(x.flatten(1))))

    torch.manual_seed(0)
    net = Net().eval()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:8, :8]
    stripes = (np.sin(x * 1.5)[None, None] > 0) + 0.3 * rng.uniform(size=(N, 3, 8, 8))
    discs = ((x - 3.5) ** 2 + (y - 3.5) ** 2 < 8)[None, None] + 0.3 * rng.uniform(size=(N, 3, 8, 8))
    concepts = {"striped": stripes.astype(np.float32), "round": discs.astype(np.float32)}
    randoms = [rng.uniform(size=(N + j, 3, 8, 8)).astype(np.float32) for j in range(R)]  # sizes differ: padded
    inputs = rng.uniform(size=(20, 3, 8, 8)).astype(np.float32)
    return torch, net, from_torch(net, torch.ones(1, 3, 8, 8)), concepts, randoms, inputs


def captum_run(setup, tmp_path: Path, classifier=None):  # noqa: ANN001, ANN201
    """Captum's TCAV over Captum's tutorial's experimental sets: each concept against each
    random set, then random set 0 against each other one."""
    torch, net, _, concepts, randoms, inputs = setup
    cc = captum_concept()
    loader = lambda a: torch.utils.data.DataLoader(torch.from_numpy(a), batch_size=5)  # noqa: E731
    cs = [cc.Concept(i, name, loader(concepts[name])) for i, name in enumerate(NAMES)]
    rs = [cc.Concept(len(NAMES) + j, f"random_{j}", loader(r)) for j, r in enumerate(randoms)]
    sets = [[c, r] for c in cs for r in rs] + [[rs[0], r] for r in rs[1:]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tcav = cc.TCAV(net, LAYERS, classifier=classifier, save_path=str(tmp_path / "cav"))
        scores = tcav.interpret(torch.from_numpy(inputs), sets, target=TARGET)
    return tcav, sets, scores


def by_pair(sets, scores, layer: str, score: str) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Captum's scores as ours are laid out: ``(C, R)`` for the concepts, ``(R - 1,)`` the baseline."""
    values = [float(scores["-".join(str(c.id) for c in s)][layer][score][0]) for s in sets]
    return np.array(values[:len(NAMES) * R]).reshape(len(NAMES), R), np.array(values[len(NAMES) * R:])


def compare(ours: xc.concepts.TCAVResult, sets, scores) -> None:  # noqa: ANN001
    stats = pytest.importorskip("scipy.stats")
    for i, layer in enumerate(LAYERS):
        for score in ("sign_count", "magnitude"):
            theirs, base = by_pair(sets, scores, layer, score)
            np.testing.assert_allclose(ours.scores[score][i], theirs, rtol=1e-5, atol=1e-6, err_msg=f"{layer} {score}")
            np.testing.assert_allclose(ours.random_scores[score][i], base, rtol=1e-5, atol=1e-6)
            p = [stats.ttest_ind(theirs[c], base).pvalue for c in range(len(NAMES))]
            np.testing.assert_allclose(ours.p_values[score][i], p, rtol=0, atol=1e-6, err_msg=f"{layer} {score}")


def test_ours_with_captums_cavs_equals_captums_tcav(setup, tmp_path: Path) -> None:
    _, _, m, concepts, randoms, inputs = setup
    tcav, sets, scores = captum_run(setup, tmp_path)
    weights, random = {}, {}
    for layer in LAYERS:
        rows = []
        for s in sets:  # Captum's two rows are [-coef, coef] in the order of its sorted classes
            stats = tcav.cavs["-".join(str(c.id) for c in s)][layer].stats
            rows.append(stats["weights"][list(stats["classes"]).index(s[0].id)].numpy())
        weights[layer] = np.stack(rows[:len(NAMES) * R]).reshape(len(NAMES), R, -1)
        random[layer] = np.stack(rows[len(NAMES) * R:])
    cavs = xc.concepts.CAVs(tuple(NAMES), weights, random)
    ours = xc.concepts.tcav(m, LAYERS, concepts, randoms, classifier=cavs)(inputs, TARGET)
    compare(ours, sets, scores)
    assert (ours.p_values["sign_count"] >= 0).all() and np.isnan(ours.accuracy).all()


def test_captum_with_our_cavs_equals_ours(setup, tmp_path: Path) -> None:
    """Our trained CAVs given to Captum through its ``Classifier`` interface: the labels of each
    training set (the concept ids) say which of our pairs it is."""
    torch, _, m, concepts, randoms, inputs = setup
    cc = captum_concept()
    from captum.concept._utils.classifier import Classifier

    fn = xc.concepts.tcav(m, LAYERS, concepts, randoms, key=jax.random.key(0))
    layer_order = iter([])

    class Ours(Classifier):
        def __init__(self) -> None:
            self.ids: list[int] = []

        def train_and_eval(self, dataloader, **kwargs):  # noqa: ANN001, ANN003, ANN201
            self.ids = sorted({int(t) for _, labels in dataloader for t in labels})
            self.layer = next(layer_order)
            return {"accs": torch.tensor(float("nan"))}

        def weights(self) -> torch.Tensor:
            first, other = self.ids
            c = len(NAMES)
            w = fn.cavs.weights[self.layer][first, other - c] if first < c else fn.cavs.random[self.layer][other - c - 1]
            w = torch.from_numpy(np.asarray(w))
            return torch.stack([w, -w])  # rows in the order of classes(): the concept's first

        def classes(self) -> list[int]:
            return self.ids

    n_sets = len(NAMES) * R + R - 1
    layer_order = iter([layer for _ in range(n_sets) for layer in LAYERS])  # Captum trains set by set, layer by layer
    _, sets, scores = captum_run(setup, tmp_path, classifier=Ours())
    assert cc is not None
    compare(fn(inputs, TARGET), sets, scores)


def test_captums_two_class_accuracy_is_the_share_of_the_first_class() -> None:
    torch = pytest.importorskip("torch")
    captum_concept()
    from captum.concept._utils.classifier import DefaultClassifier

    torch.manual_seed(0)
    x = torch.cat([torch.randn(30, 5) + 10, torch.randn(30, 5) - 10])  # separable by far
    y = torch.cat([torch.zeros(30), torch.ones(30)]).long()
    loader = torch.utils.data.DataLoader(list(zip(x, y)), batch_size=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = DefaultClassifier()
        accs = float(c.train_and_eval(loader)["accs"])
    assert c.lm(x[:3]).shape == (3, 1)  # one column: argmax is always class 0
    assert accs < 1.0
    acts = np.stack([x[:30].numpy(), x[30:].numpy()])
    _, ours = xc.concepts.cavs.fit(jax.numpy.asarray(acts), np.ones((2, 30), bool), np.array([[0, 1]]), jax.random.key(0))
    assert ours.tolist() == [1.0]
