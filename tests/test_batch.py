"""xai_core.batch / ``xai-core attribute``: model and data specs, outputs equal direct attributions,
unreadable images recorded, resume and refusal of another job's folder, the help text.

Scale (8 devices, SIGKILL + resume, two processes) is in tests/test_batch_scale.py; the report's
page in a browser in tests/test_batch_report.py."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core.cli import main

FACTORY = textwrap.dedent("""
    import jax, jax.numpy as jnp, flax.linen as nn, numpy as np
    from xai_core.adapters import from_flax

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3))(x))
            return nn.Dense(3)(x.reshape(x.shape[0], -1))

    def model():
        net = Net()
        return from_flax(net, net.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3))))

    def data():
        return np.asarray(jax.random.uniform(jax.random.key(1), (11, 8, 8, 3))), np.arange(11) % 3
""")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> tuple[Path, str]:
    """A folder with a factory module (named per test: sys.modules caches modules by name)."""
    name = f"batchmodels_{request.node.name.replace('[', '_').replace(']', '').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path, name


def _read(out: Path) -> tuple[np.ndarray, dict]:
    import tensorstore as ts

    array = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out / "attributions.zarr")}}).result()
    return array.read().result(), json.loads((out / "manifest.json").read_text())


def usage_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run ``xai-core ARGV`` expecting a user error: exit status 2 and one line on stderr (returned)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 2 and len(lines) == 1, (exit.value.code, lines)
    return lines[0]


def _direct(model, xs: np.ndarray, ts: np.ndarray, **options) -> np.ndarray:
    return np.asarray(jax.jit(jax.vmap(lambda x, t: xc.attribute(model.score(t), x, method="ig", **options)))(xs, ts))


def test_npy_data_with_labels_equals_direct_attribution(workdir) -> None:
    tmp, name = workdir
    module = __import__(name)
    xs, labels = module.data()
    np.save(tmp / "x.npy", xs)
    np.save(tmp / "y.npy", labels)
    assert main(["attribute", "--model", f"{name}:model", "--data", "x.npy", "--labels", "y.npy", "--targets", "label",
                 "--out", "out", "--method", "ig", "-o", "steps=8", "--batch-size", "4"]) == 0
    maps, manifest = _read(tmp / "out")
    expected = _direct(module.model(), xs, labels, steps=8)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)
    examples = manifest["examples"]
    assert examples["targets"] == labels.tolist()
    m = module.model()
    np.testing.assert_allclose(examples["scores"], [float(m.score(int(t))(x)) for x, t in zip(xs, labels)], rtol=1e-5)
    gaps = [float(xc.completeness_gap(m.score(int(t)), x, a)) for x, t, a in zip(xs, labels, expected)]
    np.testing.assert_allclose(examples["gaps"], gaps, rtol=1e-3, atol=1e-6)
    assert manifest["finished"] and manifest["errors"] == 0 and len(manifest["shards"]) == 3  # 4 + 4 + 3
    job = manifest["job"]
    assert job["method"] == "integrated_gradients" and job["options"] == {"steps": 8} and job["shard_size"] == 4
    assert len(job["model"]) == 64 and job["versions"]["jax"] == jax.__version__
    zarr = pytest.importorskip("zarr")  # a data team's reader: zarr-python opens the same array
    opened = zarr.open_array(str(tmp / "out" / "attributions.zarr"), mode="r")
    assert opened.chunks == (4, 8, 8, 3) and np.array_equal(opened[:], maps)


def test_factory_data_predicted_targets_and_sampling_methods(workdir) -> None:
    tmp, name = workdir
    module = __import__(name)
    assert main(["attribute", "--model", f"{name}:model", "--data", f"{name}:data", "--out", "sg", "--method",
                 "smoothgrad", "-o", "samples=4", "--batch-size", "3", "--seed", "5"]) == 0
    maps, manifest = _read(tmp / "sg")
    xs, _ = module.data()
    m = module.model()
    predicted = np.asarray(jax.vmap(lambda x: jnp.argmax(m.logits(x)))(xs))
    assert manifest["examples"]["targets"] == predicted.tolist()
    assert all(g is None for g in manifest["examples"]["gaps"])  # SmoothGrad has no completeness gap
    key = jax.random.fold_in(jax.random.key(5), 7)  # each example's key: the seed folded with its index
    one = xc.attribute(m.score(int(predicted[7])), jnp.asarray(xs[7]), method="smoothgrad", samples=4, key=key)
    np.testing.assert_allclose(maps[7], one, rtol=1e-5, atol=1e-7)


def _write_images(folder: Path, xs: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir()
    for i, x in enumerate(xs):
        Image.fromarray((x * 255).round().astype(np.uint8)).save(folder / f"img{i:02d}.png")


def test_image_folder_with_a_corrupt_image(workdir) -> None:
    tmp, name = workdir
    module = __import__(name)
    xs = np.asarray(jax.random.uniform(jax.random.key(3), (6, 8, 8, 3)))
    _write_images(tmp / "images", xs)
    (tmp / "images" / "img03.png").write_bytes(b"not a png at all")
    from PIL import Image

    Image.fromarray(np.zeros((16, 12, 3), np.uint8)).save(tmp / "images" / "img04.png")  # another size: resized
    assert main(["attribute", "--model", f"{name}:model", "--data", "images", "--out", "out", "--method", "ig",
                 "-o", "steps=4", "--batch-size", "2", "--report", "--report-images", "4", "--input-shape", "8,8,3"]) == 0
    maps, manifest = _read(tmp / "out")
    errors = [json.loads(line) for line in (tmp / "out" / "errors.jsonl").read_text().splitlines()]
    assert [(e["index"], e["name"]) for e in errors] == [(3, "img03.png")] and "decode" in errors[0]["reason"]
    assert manifest["errors"] == 1 and manifest["examples"]["targets"][3] == -1
    assert manifest["examples"]["scores"][3] is None and not maps[3].any()
    decoded = np.round(xs * 255) / 255
    decoded[4] = 0.0
    m = module.model()
    targets = np.asarray(manifest["examples"]["targets"])
    for i in (0, 1, 2, 4, 5):
        np.testing.assert_allclose(maps[i], _direct(m, decoded[i:i + 1], targets[i:i + 1], steps=4)[0],
                                   rtol=1e-5, atol=1e-6)
    page = (tmp / "out" / "report" / "index.html")
    assert page.is_file() and "rows.js" in page.read_text()


def test_resume_refusals_and_force(workdir, capsys) -> None:
    tmp, name = workdir
    base = ["attribute", "--model", f"{name}:model", "--data", f"{name}:data", "--out", "out", "--batch-size", "4"]
    assert main([*base, "--method", "gradient"]) == 0
    assert "--out out: already holds this job's results; pass --resume" in usage_error(capsys, [*base, "--method",
                                                                                               "gradient"])
    assert main([*base, "--method", "gradient", "--resume"]) == 0  # nothing left to do
    assert "another job's results (method: 'gradient' -> 'gradient_x_input'" in usage_error(
        capsys, [*base, "--method", "gradient_x_input", "--resume"])
    assert main([*base, "--method", "gradient_x_input", "--force"]) == 0
    maps, manifest = _read(tmp / "out")
    assert manifest["job"]["method"] == "gradient_x_input" and manifest["finished"]
    (tmp / "other").mkdir()
    (tmp / "other" / "notes.txt").write_text("mine")
    assert "holds no xai-core manifest" in usage_error(capsys, [*base[:-4], "--out", "other", "--batch-size", "4"])


def test_bad_specs_fail_fast(workdir, capsys) -> None:
    tmp, name = workdir
    base = ["--data", f"{name}:data", "--out", "out"]
    assert "no such file" in usage_error(capsys, ["attribute", "--model", "missing.keras", *base])
    assert "cannot import 'nomodule'" in usage_error(capsys, ["attribute", "--model", "nomodule:model", *base])
    (tmp / "pictures").mkdir()
    (tmp / "pictures" / "a.png").write_bytes(b"")
    # a Flax factory's model records no input shape
    assert "pass --input-shape" in usage_error(capsys, ["attribute", "--model", f"{name}:model", "--data", "pictures",
                                                        "--out", "out"])
    assert "expected a .keras" in usage_error(capsys, ["attribute", "--model", "model.onnx", *base])
    assert "Did you mean 'integrated_gradients'" in usage_error(capsys, ["attribute", "--model", f"{name}:model", *base,
                                                                         "--method", "integrated_gradient"])
    np.save(tmp / "plain.npy", np.zeros((2, 8, 8, 3), np.float32))
    assert "--targets label: needs labels" in usage_error(capsys, ["attribute", "--model", f"{name}:model", "--data",
                                                                   "plain.npy", "--out", "out2", "--targets", "label"])
    np.save(tmp / "wrong.npy", np.zeros((2, 4, 4, 3), np.float32))
    assert "could not be applied to one example of shape (4, 4, 3)" in usage_error(
        capsys, ["attribute", "--model", f"{name}:model", "--data", "wrong.npy", "--out", "out3"])
    assert not (tmp / "out").exists() and not (tmp / "out2").exists() and not (tmp / "out3").exists()


def test_help_names_every_option(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["attribute", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--data", "--method", "--out", "--targets", "--batch-size", "--resume", "--force",
                 "--report", "-o KEY=VALUE", ".pt2", "package.module:factory", "examples:"):
        assert flag in text, flag


def test_keras_file_model(workdir, capsys) -> None:
    tmp, _ = workdir
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp / "m.keras")
    xs = np.asarray(jax.random.uniform(jax.random.key(4), (5, 8, 8, 3)))
    np.save(tmp / "x.npy", xs)
    assert main(["attribute", "--model", "m.keras", "--data", "x.npy", "--out", "out", "-o", "steps=4",
                 "--batch-size", "2"]) == 0
    maps, manifest = _read(tmp / "out")
    m = xc.adapters.from_keras(tmp / "m.keras")
    np.testing.assert_allclose(maps, _direct(m, xs, np.asarray(manifest["examples"]["targets"]), steps=4),
                               rtol=1e-5, atol=1e-7)
    (tmp / "junk.keras").write_bytes(b"not a model")
    assert "--model junk.keras: from_keras: 'junk.keras' is not a valid .keras file" in usage_error(
        capsys, ["attribute", "--model", "junk.keras", "--data", "x.npy", "--out", "junk"])


def test_torch_export_file_model(workdir, capsys) -> None:
    """A .pt2 file explained like its module, with no advice about train() / eval(), which an
    exported program (it runs as it was exported) cannot follow; a file that is not one: one line."""
    import warnings

    tmp, _ = workdir
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 3)).eval()
    torch.export.save(torch.export.export(net, (torch.zeros(1, 3, 8, 8),)), str(tmp / "net.pt2"))
    xs = np.asarray(jax.random.uniform(jax.random.key(5), (5, 3, 8, 8)))
    np.save(tmp / "x.npy", xs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["attribute", "--model", "net.pt2", "--data", "x.npy", "--out", "out", "-o", "steps=4",
                     "--batch-size", "2"]) == 0
    said = capsys.readouterr().err + "".join(str(w.message) for w in caught)
    assert "train()" not in said and "eval()" not in said, said
    maps, manifest = _read(tmp / "out")
    m = xc.adapters.from_torch(net, torch.zeros(1, 3, 8, 8))
    np.testing.assert_allclose(maps, _direct(m, xs, np.asarray(manifest["examples"]["targets"]), steps=4),
                               rtol=1e-4, atol=1e-6)
    (tmp / "junk.pt2").write_bytes(b"not a program")
    assert "--model junk.pt2: torch.export.load failed" in usage_error(
        capsys, ["attribute", "--model", "junk.pt2", "--data", "x.npy", "--out", "junk"])


def test_readme_batch_commands_run_as_written(tmp_path: Path) -> None:
    """The site's "Run a batch job" block (docs/batch.md), line by line in a fresh folder (the pip line is
    what this environment already did)."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "docs" / "batch.md").read_text()
    block = readme.split("<!-- batch-commands -->\n```bash\n", 1)[1].split("```", 1)[0]
    commands = [c for c in block.replace("\\\n", " ").splitlines() if c.strip() and not c.startswith("pip install")]
    assert len(commands) == 4
    repo = str(Path(__file__).resolve().parents[1])  # this checkout, whatever the environment has installed
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    assert shutil.which("xai-core", path=env["PATH"])
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    assert re.search(r"\(64, 32, 32, 3\) \(\d+, 32, 32, 3\)", done.stdout)
    manifest = json.loads((tmp_path / "runs" / "ig" / "manifest.json").read_text())
    assert manifest["finished"] and manifest["errors"] == 0 and (tmp_path / "runs/ig/report/index.html").is_file()


def test_zarr_input_equals_npy_input(workdir) -> None:
    tmp, name = workdir
    import tensorstore as ts

    xs, _ = __import__(name).data()
    np.save(tmp / "x.npy", xs)
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(tmp / "x.zarr")},
                     "metadata": {"shape": list(xs.shape), "data_type": "float32",
                                  "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4, 8, 8, 3]}}},
                     "create": True}).result()
    store.write(xs.astype(np.float32)).result()
    for data, out in (("x.npy", "a"), ("x.zarr", "b")):
        assert main(["attribute", "--model", f"{name}:model", "--data", data, "--out", out, "--method", "gradient",
                     "--batch-size", "4"]) == 0
    (a, _), (b, manifest) = _read(tmp / "a"), _read(tmp / "b")
    assert np.array_equal(a, b) and manifest["examples"]["names"][2] == "x.zarr[2]"


def test_progress_logs_lines_when_not_a_terminal(monkeypatch) -> None:
    from xai_core.batch.progress import Progress

    lines: list[str] = []
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    progress = Progress(10, 8, lines.append, interval=0.0)
    progress.update(4)
    progress.update(6)
    progress.close()
    assert lines[0].startswith("attribute: 4/10 images, ") and "images/s, ETA" in lines[0] and "8 devices" in lines[0]
    assert lines[-1].startswith("attribute: done, 10 images in ") and "on 8 device(s)" in lines[-1]


def test_model_agnostic_methods_with_a_feature_mask_option(workdir) -> None:
    """Issue 26: the batch job takes the new names; a feature mask is a JSON option."""
    tmp, name = workdir
    module = __import__(name)
    grid = xc.segments.grid((8, 8, 3), 4)
    assert main(["attribute", "--model", f"{name}:model", "--data", f"{name}:data", "--out", "ks", "--method",
                 "kernel_shap", "-o", f"feature_mask={json.dumps(grid.tolist())}", "-o", "samples=6",
                 "--batch-size", "4", "--seed", "3"]) == 0
    maps, manifest = _read(tmp / "ks")
    xs, _ = module.data()
    m, t = module.model(), manifest["examples"]["targets"][5]
    one = xc.kernel_shap(m.score(t), feature_mask=grid, samples=6)(jnp.asarray(xs[5]), key=jax.random.fold_in(
        jax.random.key(3), 5))
    np.testing.assert_allclose(maps[5], one, rtol=1e-4, atol=1e-6)
    assert len(np.unique(maps[5])) <= 4  # one value per cell
