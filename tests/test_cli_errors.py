"""Every user error of ``xai-core attribute`` and ``xai-core evaluate`` is one line on stderr that
names the flag, with exit status 2 and no traceback (in-process through ``main``; one subprocess
shows what a shell sees). Keras and torch file models: tests/test_batch.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from xai_core.cli import main

FACTORY = textwrap.dedent("""
    import jax, jax.numpy as jnp, flax.linen as nn, numpy as np
    from xai_core.adapters import from_flax

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(x.reshape(x.shape[0], -1))

    def model():
        return from_flax(Net(), Net().init(jax.random.key(0), jnp.zeros((1, 8, 8, 3))))
""")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A factory module (cli_errors_models:model, 3 classes) and files with something wrong."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    (tmp / "cli_errors_models.py").write_text(FACTORY)
    np.save(tmp / "x.npy", np.zeros((5, 8, 8, 3), np.float32))
    np.save(tmp / "scalar.npy", np.float32(1))
    np.save(tmp / "y4.npy", np.zeros(4, np.int64))
    np.save(tmp / "t9.npy", np.array([0, 1, 2, 9, 0]))
    (tmp / "words.txt").write_text("0\n1\ntwo\n0\n1\n")
    (tmp / "notes.txt").write_text("not a folder")
    return tmp


@pytest.fixture(autouse=True)
def inside(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))


def error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run ``xai-core ARGV`` expecting a user error: exit status 2 and one line on stderr (returned)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (exit.value, err)
    return err.strip()


JOB = ["attribute", "--model", "cli_errors_models:model", "--data", "x.npy", "--out", "out"]

ATTRIBUTE = [  # (flags after JOB, or a whole command line; what the line must say)
    (["--targets", "labels"], "--targets labels: not 'predicted', 'label' or a file"),
    (["--targets", "label"], "--targets label: needs labels; pass --labels FILE"),
    (["--targets", "t9.npy"], "--targets t9.npy: class 9 (example 3) is out of range for a model with 3 classes; "
                              "use 0..2"),
    (["--targets", "missing.npy"], "--targets missing.npy: no such file"),
    (["--targets", "label", "--labels", "missing.txt"], "--labels missing.txt: no such file"),
    (["--targets", "label", "--labels", "y4.npy"], "--labels y4.npy: (4,) values for 5 examples"),
    (["--targets", "label", "--labels", "words.txt"], "--labels words.txt: could not convert string 'two'"),
    (["-o", "steps=abc"], "-o steps=abc: integrated_gradients: steps must be an integer >= 2"),
    (["-o", "nosuchoption=1"], "-o nosuchoption=1: method 'integrated_gradients' got unknown option(s)"),
    (["-o", "steps"], "argument -o/--option: method options are key=value"),
    (["--method", "integrated_gradient"], "--method integrated_gradient: unknown method"),
    (["--method", "smoothgrad", "-o", "samples=0"], "-o samples=0: smoothgrad: samples must be an integer >= 1"),
    (["--input-shape", "8,8"], "--data x.npy: examples of shape (8, 8, 3), but the model takes (8, 8)"),
    (["--input-shape", "8,x"], "argument --input-shape: expected positive integers"),
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got '0'"),
    (["--mean", "0.5,0.5"], "--mean 0.5,0.5: 2 values for images of 3 channel(s)"),
    (["--mean", "grey"], "argument --mean: expected numbers"),
    (["--std", "0"], "argument --std: expected positive numbers"),
    (["--seed", "-1"], "argument --seed: expected an integer in 0..4294967295"),
    (["--resume", "--force"], "argument --force: not allowed with argument --resume"),
    (["--report-images", "-1"], "argument --report-images: expected an integer >= 0"),
    (["--threads", "0"], "argument --threads: expected an integer >= 1"),
    (["--bogus"], "xai-core attribute: unrecognized arguments: --bogus"),
    (["attribute", "--model", "cli_errors_models:model", "--data", "x.npy"], "arguments are required: --out"),
    (["attribute", "--model", "missing.keras", "--data", "x.npy", "--out", "out"],
     "--model missing.keras: no such file"),
    (["attribute", "--model", ":model", "--data", "x.npy", "--out", "out"], "--model ':model': cannot import ''"),
    (["attribute", "--model", "cli_errors_models:nothing", "--data", "x.npy", "--out", "out"],
     "--model 'cli_errors_models:nothing': cli_errors_models has no callable 'nothing'"),
    (["attribute", "--model", "notes.txt", "--data", "x.npy", "--out", "out"],
     "--model 'notes.txt': expected a .keras"),
    (["attribute", "--model", "cli_errors_models:model", "--data", "pictures", "--out", "out"],
     "--data 'pictures': no such file or folder"),
    (["attribute", "--model", "cli_errors_models:model", "--data", "scalar.npy", "--out", "out"],
     "--data scalar.npy: an array of shape (); give a batch of examples"),
    (["attribute", "--model", "cli_errors_models:model", "--data", "x.npy", "--out", "notes.txt"],
     "--out notes.txt: NotADirectoryError"),
]


@pytest.mark.parametrize("flags, says", ATTRIBUTE, ids=[" ".join(flags) for flags, _ in ATTRIBUTE])
def test_attribute_flag_errors_are_one_line(capsys, folder: Path, flags: list[str], says: str) -> None:
    line = error_line(capsys, flags if flags[0] == "attribute" else [*JOB, *flags])
    assert line.startswith("xai-core attribute: ") and says in line, line
    assert not (folder / "out").exists()  # nothing written before the error


EVALUATE = [
    (["--methods", "gradient,nope"], "--methods gradient,nope: unknown 'nope'; choose from gradient"),
    (["--metrics", "delition"], "--metrics delition: unknown 'delition'; choose from deletion"),
    (["--images", "0"], "argument --images: expected an integer in 1..1000"),
    (["--images", "5000"], "argument --images: expected an integer in 1..1000"),
    (["--train-images", "8"], "argument --train-images: expected an integer >= 32"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1"),
    (["--seed", "x"], "argument --seed: expected an integer"),
    (["--out-dir", "notes.txt"], "--out-dir notes.txt: cannot create it (FileExistsError"),
]


@pytest.mark.parametrize("flags, says", EVALUATE, ids=[" ".join(flags) for flags, _ in EVALUATE])
def test_evaluate_flag_errors_are_one_line(capsys, flags: list[str], says: str) -> None:
    line = error_line(capsys, ["evaluate", *flags])
    assert line.startswith("xai-core evaluate: ") and says in line, line


def test_a_shell_sees_one_line_and_status_2(folder: Path) -> None:
    """The newcomer's typo (``--targets labels`` for ``label``) was a FileNotFoundError traceback."""
    res = subprocess.run([sys.executable, "-m", "xai_core.cli", *JOB, "--targets", "labels"], cwd=folder,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [
        "xai-core attribute: --targets labels: not 'predicted', 'label' or a file; pass one of those (a .npy / .txt "
        "file of one class index per example)."]
