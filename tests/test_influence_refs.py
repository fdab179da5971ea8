"""xc.influence against Captum's ``captum.influence`` on the same torch models and checkpoints: a small
MLP and a small CNN (float64, ending in their last Linear layer: Captum's ``TracInCPFast`` takes the
gradient at the model's output, which is that layer's output only then), three checkpoints saved
with ``torch.save`` (the state_dict plus its ``"learning_rate"``), read back by Captum through a
``checkpoints_load_func`` and by us through :func:`xai_core.influence.from_state_dict`.

- ``TracInCP`` (per-example losses, and a summed loss with Captum's sample-wise trick),
  ``TracInCPFast`` and ``TracInCPFastRandProj`` (its projection matrices passed to us): influence
  scores equal to 1e-4, self-influence too, the top-k proponents and opponents the same.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("captum.influence")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from captum.influence import TracInCP, TracInCPFast, TracInCPFastRandProj  # noqa: E402
from captum.influence._utils.nearest_neighbors import NearestNeighbors  # noqa: E402
from conftest import jax_flag  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

import xai_core as xc  # noqa: E402
from xai_core.adapters import from_torch  # noqa: E402

TOL = 1e-4
LRS = (0.3, 0.2, 0.1)
N_TRAIN, N_TEST, K = 13, 4, 3
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 4))


SHAPES = {"mlp": (6,), "cnn": (2, 8, 8)}


class Exact(NearestNeighbors):
    """Dot-product neighbours by sorting (Captum's default needs ``annoy``): what its
    ``AnnoyNearestNeighbors`` approximates."""

    def setup(self, data: torch.Tensor) -> None:
        self.data = data.reshape(len(data), -1)

    def get_nearest_neighbors(self, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.topk(query.reshape(len(query), -1) @ self.data.T, k, dim=1)[::-1]


def load(model: nn.Module, path: str) -> float:
    """Captum's ``checkpoints_load_func``: the state_dict into the model, the learning rate out."""
    state = torch.load(path)
    lr = state.pop("learning_rate")
    model.load_state_dict(state)
    return lr


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    torch.manual_seed(0)
    net = (mlp() if request.param == "mlp" else cnn()).double()
    g = torch.Generator().manual_seed(1)
    xs = torch.randn((N_TRAIN, *SHAPES[request.param]), generator=g, dtype=torch.float64)
    ys = torch.randint(0, 4, (N_TRAIN,), generator=g)
    tx = torch.randn((N_TEST, *SHAPES[request.param]), generator=g, dtype=torch.float64)
    ty = torch.randint(0, 4, (N_TEST,), generator=g)
    folder, paths = tmp_path_factory.mktemp(f"checkpoints_{request.param}"), []
    for i, lr in enumerate(LRS):  # a few SGD steps between checkpoints
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xs), ys).backward()
            opt.step()
        torch.save({**net.state_dict(), "learning_rate": lr}, folder / f"checkpoint_{i}.pt")
        paths.append(str(folder / f"checkpoint_{i}.pt"))
    with jax_flag("jax_enable_x64", True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = from_torch(net.eval(), xs[:1])
        checkpoints = [xc.influence.from_state_dict(torch.load(p), like=m.params) for p in paths]

        def loss(params: dict, ex: tuple) -> jax.Array:
            x, y = ex
            return -jax.nn.log_softmax(m.with_params(params).logits(x))[y]

        jx = (jnp.asarray(xs.numpy()), jnp.asarray(ys.numpy()))
        jt = (jnp.asarray(tx.numpy()), jnp.asarray(ty.numpy()))
        yield net, paths, (xs, ys), (tx, ty), loss, checkpoints, jx, jt


def close(ours: object, theirs: torch.Tensor, what: str) -> None:
    theirs = theirs.detach().numpy()
    err = float(np.abs(np.asarray(ours, np.float64) - theirs).max())
    print(f"\n{what}: {err:.1e} (scores up to {np.abs(theirs).max():.2f})")
    assert err <= TOL, what


def same_top_k(ours: xc.influence.Influential, captum: object, test: tuple, what: str) -> None:
    for proponents, idx, scores in ((True, ours.proponents, ours.proponent_scores),
                                    (False, ours.opponents, ours.opponent_scores)):
        theirs = captum.influence(test, k=K, proponents=proponents)
        np.testing.assert_array_equal(np.asarray(idx), theirs.indices.numpy(), err_msg=f"{what} {proponents}")
        close(scores, theirs.influence_scores, f"{what} top-{K} {'proponents' if proponents else 'opponents'}")


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_full_equals_tracincp(case, reduction: str) -> None:  # noqa: ANN001
    net, paths, train, test, loss, checkpoints, jx, jt = case
    captum = TracInCP(net, TensorDataset(*train), paths, checkpoints_load_func=load,
                      loss_fn=nn.CrossEntropyLoss(reduction=reduction), batch_size=5,
                      sample_wise_grads_per_batch=reduction != "none")
    with jax_flag("jax_enable_x64", True):
        close(xc.influence.tracin(loss, checkpoints, jx, jt, batch_size=5), captum.influence(test),
              f"TracInCP ({reduction})")
        close(xc.influence.self_influence(loss, checkpoints, jx, batch_size=5), captum.self_influence(),
              "TracInCP self-influence")
        same_top_k(xc.influence.top_k(loss, checkpoints, jx, jt, k=K, batch_size=5), captum, test, "TracInCP")


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_last_layer_equals_tracincp_fast(case, reduction: str) -> None:  # noqa: ANN001
    net, paths, train, test, loss, checkpoints, jx, jt = case
    captum = TracInCPFast(net, net[-1], TensorDataset(*train), paths, checkpoints_load_func=load,
                          loss_fn=nn.CrossEntropyLoss(reduction=reduction), batch_size=5)
    with jax_flag("jax_enable_x64", True):
        close(xc.influence.tracin(loss, checkpoints, jx, jt, mode="last_layer"), captum.influence(test),
              f"TracInCPFast ({reduction})")
        close(xc.influence.self_influence(loss, checkpoints, jx, mode="last_layer"), captum.self_influence(),
              "TracInCPFast self-influence")
        same_top_k(xc.influence.top_k(loss, checkpoints, jx, jt, k=K, mode="last_layer", batch_size=4), captum,
                   test, "TracInCPFast")


def test_random_projection_equals_tracincp_fast_rand_proj(case) -> None:  # noqa: ANN001
    net, paths, train, test, loss, checkpoints, jx, jt = case
    captum = TracInCPFastRandProj(net, net[-1], TensorDataset(*train), paths, checkpoints_load_func=load,
                                  loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=5,
                                  nearest_neighbors=Exact(), projection_dim=9, seed=3)
    p_g, p_a = (jnp.asarray(p.numpy()) for p in captum.projection_quantities)
    assert p_g.shape == (4, 3) and p_a.shape[1] == 3
    with jax_flag("jax_enable_x64", True):
        options = {"mode": "random_projection", "projection": (p_g, p_a)}
        close(xc.influence.tracin(loss, checkpoints, jx, jt, **options), captum.influence(test, k=None),
              "TracInCPFastRandProj")
        same_top_k(xc.influence.top_k(loss, checkpoints, jx, jt, k=K, **options), captum, test,
                   "TracInCPFastRandProj")
        # Captum raises for its self-influence (use TracInCPFast); ours is the projected |.|^2
        theirs = captum.compute_intermediate_quantities(train)
        close(xc.influence.self_influence(loss, checkpoints, jx, **options), (theirs ** 2).sum(1),
              "TracInCPFastRandProj's intermediate quantities, squared")
