"""xai_core.metrics.evaluation (xc.evaluate): methods x metrics on a model, the report's formats, and ``xai-core evaluate``."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core import metrics as xm
from xai_core.adapters import from_flax
from xai_core.metrics.evaluation import METRICS, evaluate
from xai_core.metrics.report import Report


class _Net(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        return nn.Dense(3)(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def setup() -> tuple:
    net = _Net()
    xs = jax.random.uniform(jax.random.key(1), (3, 8, 8, 3))
    model = from_flax(net, net.init(jax.random.key(0), xs[:1]))
    masks = jnp.zeros((3, 8, 8), bool).at[:, 2:5, 2:6].set(True)
    return model, xs, jnp.array([0, 1, 2]), masks


def test_values_equal_the_metrics_called_directly(setup) -> None:
    model, xs, ts, masks = setup
    key = jax.random.key(7)
    names = ["deletion", "localization", "sparseness", "pointing_game"]
    report = evaluate(model, xs, ts, masks=masks, methods=["gradient_x_input"], metrics=names, key=key,
                      baseline=0.5, progress=False)
    maps = jax.vmap(lambda x, t: xc.gradient_x_input(model.score(t))(x))(xs, ts)
    direct = {
        "deletion": [xm.deletion(model.score(t), x, a, steps=32, baseline=0.5) for x, t, a in zip(xs, ts, maps)],
        "localization": [xm.localization(a, m) for a, m in zip(maps, masks)],
        "sparseness": [xm.sparseness(a) for a in maps],
        "pointing_game": [xm.pointing_game(a, m) for a, m in zip(maps, masks)],
    }
    for name in names:
        np.testing.assert_allclose(report.per_image["gradient_x_input"][name], direct[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    assert report.scores["gradient_x_input"]["sparseness"] == pytest.approx(float(np.mean(direct["sparseness"])))


def test_every_metric_runs_on_maps_and_cams(setup) -> None:
    model, xs, ts, masks = setup
    methods = {"gradient": "gradient", "ig": ("integrated_gradients", {"steps": 4}),
               "cam": lambda m, x, t, k: xc.cam.grad_cam(m, "Conv_1")(x, t)}
    report = evaluate(model, xs, ts, masks=masks, methods=methods, metrics=list(METRICS), key=jax.random.key(0),
                      progress=False)
    assert set(report.scores) == set(methods)
    for method, row in report.scores.items():
        assert set(row) == set(METRICS)
        assert all(np.isfinite(v) for v in row.values()), (method, row)
    assert report.layers == ["params/Dense_0", "params/Conv_1", "params/Conv_0"]
    assert list(report.randomization["gradient"]) == report.layers
    assert set(report.best()) == set(METRICS)


def test_report_formats(setup, tmp_path) -> None:
    model, xs, ts, masks = setup
    report = evaluate(model, xs, ts, masks=masks, methods=["gradient", "gradient_x_input"],
                      metrics=["complexity", "mask_auc", "randomization"], key=jax.random.key(0), progress=False)
    table = report.to_markdown()
    assert table.splitlines()[0] == "| method | complexity ↓ | mask_auc ↑ | randomization ↓ |"
    best = report.best()["complexity"]
    assert f"| {best} |" in next(line for line in table.splitlines() if "**" in line) or "**" in table
    rows = report.to_csv().splitlines()
    assert rows[0] == "method,metric,mean,higher_is_better" and len(rows) == 1 + 2 * 3
    data = json.loads(report.to_json())
    assert data["scores"]["gradient"]["mask_auc"] == pytest.approx(report.scores["gradient"]["mask_auc"])
    assert len(data["per_image"]["gradient"]["complexity"]) == 3
    for name in ("t.md", "t.csv", "t.json", "t.png"):
        assert report.save(tmp_path / name).stat().st_size > 0
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=".md, .csv"):
        report.save(tmp_path / "t.txt")


def test_nan_values_are_skipped_in_means() -> None:
    report = Report(higher={"pointing_game": True}, per_image={"a": {"pointing_game": np.array([1.0, np.nan, 0.0])}})
    assert report.scores["a"]["pointing_game"] == 0.5


def test_bad_requests_fail_before_any_work(setup) -> None:
    model, xs, ts, masks = setup
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate(model, xs, ts, metrics=["delition"], key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="need masks"):
        evaluate(model, xs, ts, metrics=["localization"], key=jax.random.key(0), progress=False)
    with pytest.raises(ValueError, match="gradient"):
        evaluate(model, xs, ts, methods=["gradinet"], metrics=["sparseness"], key=jax.random.key(0), progress=False)


def test_cli_evaluate_writes_the_table(tmp_path, capsys) -> None:
    from xai_core.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--images", "2", "--train-images", "32", "--epochs", "1", "--methods",
                 "gradient,grad_cam", "--metrics", "deletion,localization,randomization", "--out-dir", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| method | deletion ↓ | localization ↑ | randomization ↓ |" in printed
    assert {p.name for p in out.iterdir()} == {"table.md", "table.csv", "report.json", "report.png"}
    with pytest.raises(SystemExit) as exit:  # one line, exit status 2 (every flag: tests/test_cli_errors.py)
        main(["evaluate", "--methods", "nope", "--out-dir", str(out)])
    assert exit.value.code == 2 and "--methods nope: unknown 'nope'" in capsys.readouterr().err


def test_channel_first_torch_model() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 3)).eval()
    model = xc.adapters.from_torch(net, torch.zeros(1, 3, 8, 8))
    xs = jax.random.uniform(jax.random.key(2), (2, 3, 8, 8))
    ts, masks = jnp.array([0, 2]), jnp.zeros((2, 8, 8), bool).at[:, :4].set(True)
    report = evaluate(model, xs, ts, masks=masks, methods=["gradient_x_input"],
                      metrics=["insertion", "localization", "infidelity", "randomization"], key=jax.random.key(0),
                      channel_axis=0, progress=False)
    maps = jax.vmap(lambda x, t: xc.gradient_x_input(model.score(t))(x))(xs, ts)
    direct = [xm.localization(a, m, channel_axis=0) for a, m in zip(maps, masks)]
    np.testing.assert_allclose(report.per_image["gradient_x_input"]["localization"], direct, rtol=1e-5)
    assert report.layers == ["3", "0"]  # torch module names, the output side first


def test_model_agnostic_methods_by_name(setup) -> None:
    """Issue 26: xc.evaluate takes the new names with their options."""
    model, xs, ts, masks = setup
    grid = xc.segments.grid((8, 8, 3), 4)
    methods = {"kernel_shap": ("kernel_shap", {"feature_mask": grid, "samples": 8}),
               "feature_ablation": ("feature_ablation", {"feature_mask": grid}),
               "rise": ("rise", {"samples": 16, "grid": 2})}
    report = evaluate(model, xs, ts, masks=masks, methods=methods, metrics=["deletion", "localization"],
                      key=jax.random.key(0), progress=False)
    assert set(report.scores) == set(methods)
    assert all(np.isfinite(v) for row in report.scores.values() for v in row.values())
