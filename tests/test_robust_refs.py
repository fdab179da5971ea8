"""xc.robust against Captum's ``captum.robust`` on the same small torch CNN (``SmallCNN``, which ends
in a softmax: Captum's default loss ``-log(output[y])`` is then the cross-entropy that ours takes
of the logits ``from_torch`` returns, the softmax cut). Captum runs a batch, ours ``jax.vmap``.

- FGSM and PGD (both balls, targeted or not, bounds, a mask) equal Captum's to 1e-5, without a
  random start, with ours injected into Captum (its ``_random_point`` patched) and with Captum's
  replayed through ``start=``.
- ``MinParamPerturbation`` (linear and binary, FGSM's epsilon and a noise whose draws are
  replayed) finds the same strength and input; its bisection visits the same strengths as our
  :func:`~xai_core.robust.bisection_plan` on grids of awkward floats.
- ``AttackComparator``'s per-example results and summary equal ``compare_attacks`` and ``summary``.
"""

from __future__ import annotations

import math
import warnings

import pytest

torch = pytest.importorskip("torch")
robust = pytest.importorskip("captum.robust")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402
from torch_models import SmallCNN  # noqa: E402
from xai_core.adapters import from_torch  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

TOL = 1e-5
N = 4


@pytest.fixture(scope="module")
def setup():  # noqa: ANN201
    torch.manual_seed(0)
    net = SmallCNN().eval()
    xs = torch.rand((N, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    ts = net(xs).argmax(1)
    return net, from_torch(net, xs[:1]), xs, jnp.asarray(xs.numpy()), ts, jnp.asarray(ts.numpy())


def close(ours: object, theirs: torch.Tensor, what: str) -> None:
    err = float(np.abs(np.asarray(ours, np.float64) - theirs.detach().numpy().astype(np.float64)).max())
    print(f"\n{what}: {err:.1e}")
    assert err <= TOL, what


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_equals_captum(setup, targeted: bool) -> None:  # noqa: ANN001
    net, m, xs, x, ts, t = setup
    if targeted:
        ts, t = (ts + 1) % 5, (t + 1) % 5
    mask = (torch.rand((3, 16, 16), generator=torch.Generator().manual_seed(2)) > 0.3).float()
    for eps, bounds, mk in ((0.03, (0.0, 1.0), None), (0.1, None, mask)):
        kw = {} if bounds is None else {"lower_bound": bounds[0], "upper_bound": bounds[1]}
        theirs = robust.FGSM(net, **kw).perturb(xs, eps, ts, targeted=targeted, mask=mk)
        attack = xc.robust.fgsm(m.logits, eps, targeted=targeted, bounds=bounds,
                                mask=None if mk is None else jnp.asarray(mk.numpy()))
        close(jax.vmap(attack)(x, t), theirs, f"FGSM eps={eps} targeted={targeted}")


CASES = [("Linf", 0.1, 0.02, 8, False), ("L2", 1.0, 0.2, 8, False), ("Linf", 0.05, 0.01, 6, True),
         ("L2", 0.5, 0.1, 6, True)]


@pytest.mark.parametrize("norm, radius, step, steps, targeted", CASES)
def test_pgd_equals_captum(setup, norm, radius, step, steps, targeted) -> None:  # noqa: ANN001
    net, m, xs, x, ts, t = setup
    if targeted:
        ts, t = (ts + 2) % 5, (t + 2) % 5
    captum = robust.PGD(net, lower_bound=0.0, upper_bound=1.0)
    attack = xc.robust.pgd(m.logits, radius, step, steps, norm=norm, targeted=targeted, bounds=(0.0, 1.0),
                           random_start=True)
    what = f"PGD {norm} targeted={targeted}"
    plain = xc.robust.pgd(m.logits, radius, step, steps, norm=norm, targeted=targeted, bounds=(0.0, 1.0))
    close(jax.vmap(plain)(x, t), captum.perturb(xs, radius, step, steps, ts, targeted=targeted, norm=norm), what)

    # our random start, injected into Captum
    keys = jax.random.split(jax.random.key(0), N)
    offsets = jax.vmap(lambda k, v: xc.robust.random_point(k, v, radius, norm=norm))(keys, x)
    size = jnp.abs(offsets).reshape(N, -1).max(1) if norm == "Linf" else jnp.linalg.norm(offsets.reshape(N, -1), axis=1)
    assert bool((size <= radius * (1 + 1e-6)).all())
    captum._random_point = lambda center, r, n, mask: center + torch.from_numpy(np.array(offsets)) * mask
    theirs = captum.perturb(xs, radius, step, steps, ts, targeted=targeted, random_start=True, norm=norm)
    close(jax.vmap(attack)(x, t, keys), theirs, what + ", our random start")
    del captum._random_point

    # Captum's random start (its own draw under a seed), replayed through start=. Captum 0.9's L2
    # draw broadcasts its per-example radius against the input's last axis, so it fails for a
    # batch of several images: one example there.
    n = N if norm == "Linf" else 1
    torch.manual_seed(5)
    drawn = captum._random_point(xs[:n], radius, norm, 1) - xs[:n]
    torch.manual_seed(5)
    theirs = captum.perturb(xs[:n], radius, step, steps, ts[:n], targeted=targeted, random_start=True, norm=norm)
    close(jax.vmap(lambda v, tt, d: attack(v, tt, start=d))(x[:n], t[:n], jnp.asarray(drawn.numpy())), theirs,
          what + ", Captum's random start")
    if norm == "L2":
        with pytest.raises(RuntimeError, match="must match the size"):
            captum._random_point(xs, radius, norm, 1)


@pytest.mark.parametrize("mode", ["linear", "binary"])
def test_min_param_perturbation_of_fgsm_equals_captum(setup, mode: str) -> None:  # noqa: ANN001
    net, m, xs, x, ts, t = setup
    fgsm = robust.FGSM(net, lower_bound=0.0, upper_bound=1.0)
    captum = robust.MinParamPerturbation(net, fgsm, "epsilon", 0.0, 0.3, 0.005, mode=mode)
    make = lambda eps: xc.robust.fgsm(m.logits, eps, bounds=(0.0, 1.0))  # noqa: E731
    ours = jax.vmap(xc.robust.min_perturbation(m.logits, make, 0.0, 0.3, 0.005, mode=mode))(x, t)
    for i in range(N):
        one = slice(i, i + 1)
        perturbed, value = captum.evaluate(xs[one], target=ts[one], attack_kwargs={"target": ts[one]})
        print(f"\n{mode} example {i}: Captum {value}, ours {float(ours.value[i])}")
        assert value is not None and bool(ours.found[i])
        np.testing.assert_allclose(ours.value[i], value, rtol=1e-6)
        close(ours.perturbed[i][None], perturbed, f"MinParamPerturbation {mode}, example {i}")


@pytest.mark.parametrize("mode", ["linear", "binary"])
def test_min_param_perturbation_of_a_noise_equals_captum_on_the_same_draws(setup, mode: str) -> None:  # noqa: ANN001
    """A noise replayed in Captum, with a ``correct_fn`` of our own: the target's probability stays
    below 0.25 (the untrained CNN is unsure everywhere; noise makes it surer of class 0)."""
    net, m, xs, x, ts, t = setup
    attempts, key = 3, jax.random.key(1)
    for i in range(2):
        k = jax.random.fold_in(key, i)
        draws = [np.array(jax.random.normal(a, x[i].shape)) for a in jax.random.split(k, attempts)]
        calls = []

        def noise(inp: torch.Tensor, std: float, calls: list = calls, draws: list = draws) -> torch.Tensor:
            calls.append(std)  # attempt a's draw, at every strength
            return inp + std * torch.from_numpy(draws[(len(calls) - 1) % attempts])[None]

        captum = robust.MinParamPerturbation(net, noise, "std", 0.0, 2.0, 0.02, mode=mode, num_attempts=attempts,
                                             correct_fn=lambda out, target: bool(out[0, target[0]] < 0.25))
        perturbed, value = captum.evaluate(xs[i:i + 1], target=ts[i:i + 1], perturbations_per_eval=attempts)
        ours = xc.robust.min_perturbation(m.logits, lambda s: lambda v, tt, kk: v + s * jax.random.normal(kk, v.shape),
                                          0.0, 2.0, 0.02, mode=mode, attempts=attempts,
                                          correct=lambda out, tt: jax.nn.softmax(out)[tt] < 0.25)(x[i], t[i], k)
        print(f"\nnoise {mode} example {i}: Captum {value}, ours {float(ours.value)}")
        assert value is not None and bool(ours.found)
        np.testing.assert_allclose(ours.value, value, rtol=1e-6)
        close(ours.perturbed[None], perturbed, f"noise {mode}, example {i}")


@pytest.mark.parametrize("start, stop, step", [(0.0, 1.0, 0.1), (0.0, 1.05, 0.1), (0.1, 0.7, 0.03), (2, 50, 3),
                                               (0.0, 0.3, 0.005), (-1.0, 1.0, 0.3)])
def test_bisection_visits_captums_strengths(start: float, stop: float, step: float) -> None:
    """Captum's binary search on a toy whose prediction changes from a threshold on: the same
    probes, in order, and the same answer as our table, for every threshold on the grid."""
    values, on_success, on_failure = xc.robust.bisection_plan(start, stop, step)
    grid = xc.robust.strength_grid(start, stop, step)
    for threshold in [*grid, stop + 1.0]:
        probes: list[float] = []

        def attack(inp: torch.Tensor, v: float, probes: list = probes, threshold: float = threshold) -> torch.Tensor:
            probes.append(v)
            return torch.tensor([[float(v >= threshold)]])

        forward = lambda z: torch.cat([1 - z, z], dim=1)  # noqa: E731 - class 1 from the threshold on
        _, found = robust.MinParamPerturbation(forward, attack, "v", start, stop, step, mode="binary").evaluate(
            torch.zeros(1, 1), target=torch.tensor([0]))
        ours, node, answer = [], 0, None
        while node >= 0:
            ours.append(float(values[node]))
            changed = values[node] >= threshold
            answer = values[node] if changed else answer
            node = on_success[node] if changed else on_failure[node]
        assert ours == probes and (answer is None) == (found is None)
        assert found is None or math.isclose(answer, found, rel_tol=0, abs_tol=0)


def test_attack_comparator_equals_captum(setup) -> None:  # noqa: ANN001
    net, m, xs, x, ts, t = setup
    attempts, key = 3, jax.random.key(2)
    keys = jax.random.split(key, N)
    # attack 2 ("noise") of example i, attempt a: split(fold_in(keys[i], 2), attempts)[a]
    draws = np.stack([np.stack([np.asarray(jax.random.normal(k, x.shape[1:]))
                                for k in jax.random.split(jax.random.fold_in(keys[i], 2), attempts)])
                      for i in range(N)])
    calls = []

    def noise(inp: torch.Tensor) -> torch.Tensor:
        calls.append(None)
        return inp + 0.2 * torch.from_numpy(draws[:, (len(calls) - 1) % attempts])

    def metric(out: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (out.argmax(1) == target).float(), out.gather(1, target[:, None])[:, 0]

    captum = robust.AttackComparator(net, metric)
    captum.add_attack(robust.FGSM(net, lower_bound=0.0, upper_bound=1.0), "FGSM", attack_kwargs={"epsilon": 0.03},
                      additional_attack_arg_names=["target"])
    captum.add_attack(robust.PGD(net, lower_bound=0.0, upper_bound=1.0), "PGD", apply_before_preproc=False,
                      attack_kwargs={"radius": 0.05, "step_size": 0.01, "step_num": 5},
                      additional_attack_arg_names=["target"])
    captum.add_attack(noise, "noise", num_attempts=attempts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum.evaluate(xs, target=ts)

    ours_metric = lambda out, tt: (xc.robust.accuracy(out, tt), jax.nn.softmax(out)[tt])  # noqa: E731
    compare = xc.robust.compare_attacks(m.logits, {
        "FGSM": xc.robust.fgsm(m.logits, 0.03, bounds=(0.0, 1.0)),
        "PGD": xc.robust.pgd(m.logits, 0.05, 0.01, 5, bounds=(0.0, 1.0)),
        "noise": (lambda v, tt, k: v + 0.2 * jax.random.normal(k, v.shape), attempts)}, metric=ours_metric)
    ours = jax.jit(jax.vmap(compare))(x, t, keys)
    assert set(ours) == set(theirs) and set(ours["noise"]) == set(theirs["noise"]) == {"mean", "min", "max"}
    for j in range(2):
        close(ours["Original"][j], theirs["Original"][j], f"Original, metric {j}")
        for name in ("FGSM", "PGD", "noise"):
            for stat in theirs[name]:
                close(ours[name][stat][j], theirs[name][stat][j], f"{name} {stat}, metric {j}")
    mine, summary = xc.robust.summary(ours), captum.summary()
    assert set(mine) == set(summary)
    for name, value in summary.items():
        for j in range(2):
            close(mine[name][j], value["mean"][j], f"summary {name}, metric {j}")
