"""The benchmark code runs (the cpu-small suite) and its outputs agree with Captum's.

Never asserts a time: speed lives in benchmarks/results/.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("captum")

REPO = Path(__file__).resolve().parents[1]


def test_cpu_small_suite_runs_and_agrees_with_captum(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "benchmarks.run", "--suite", "cpu-small", "--out", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True, text=True)
    (result_file,) = tmp_path.glob("cpu-small-*.json")
    result = json.loads(result_file.read_text())
    assert {w["method"] for w in result["workloads"]} == {"ig", "smoothgrad", "occlusion"}
    for w in result["workloads"]:
        assert set(w["rows"]) == {"xai-core (torch)", "xai-core (flax)", "captum (best)",
                                  "captum (budget)", "floor (jax)", "floor (torch)"}
        ours = w["rows"]["xai-core (torch)"]
        assert ours["valid"] and ours["max_rel_diff_vs_captum"] <= 1e-4, w["method"]
        assert w["rows"]["captum (budget)"]["max_rel_diff_vs_captum"] <= 1e-4, w["method"]
        # Same computation: float64 agreement, up to Captum's own float32 casts (see float64_check).
        assert w["float64_check"]["ours_vs_captum"] <= 1e-7, w["method"]
        assert ours["max_rel_diff_vs_captum_float64"] == w["float64_check"]["ours_vs_captum"]
        assert all(r["seconds"] > 0 and r["peak_mib"] > 0 for r in w["rows"].values())
        tuning = w["captum_tuning"]
        assert len(tuning) >= 3 and w["rows"]["captum (best)"]["internal_batch"] in map(int, tuning)
        budget = w["rows"]["captum (budget)"]
        if budget["fits_budget"]:
            assert budget["added_mib"] <= ours["added_mib"]
    assert result["memory"]["chunked_temp_mib"] < result["memory"]["unchunked_temp_mib"]
    assert set(result["time_to_accuracy"]["rules"]) == {
        "riemann_left", "riemann_right", "riemann_middle", "trapezoid", "gauss_legendre"}
    for rows in result["time_to_accuracy"]["rules"].values():  # float64 delta, and float32's
        assert all(math.isfinite(v["delta"]) and math.isfinite(v["delta_float32"]) for v in rows.values())
    assert result["machine"]["versions"]["torch"]
    assert result_file.with_suffix(".md").read_text().startswith("# Suite `cpu-small`")
    assert result_file.with_suffix(".png").stat().st_size > 1000


def test_metrics_benchmark_quick_runs(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("quantus") is None:  # importing it needs the torchvision stub: the benchmark does
        pytest.skip("quantus is not installed")
    out = tmp_path / "metrics-quick.json"
    subprocess.run([sys.executable, "-m", "benchmarks.metrics", "--quick", "--repeats", "1", "--out", str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True)
    result = json.loads(out.read_text())
    assert set(result["rows"]) == {
        "PixelFlipping", "RegionPerturbation", "FaithfulnessCorrelation", "MaxSensitivity", "sensitivity_max (Captum)",
        "infidelity (Captum)", "Sparseness", "Complexity", "PointingGame", "RelevanceMassAccuracy", "MPRT",
        "RandomLogit"}
    for name, row in result["rows"].items():
        assert row["peer_seconds"] > 0 and row["ours_seconds"] > 0 and row["ours_compile"] > 0, name
        assert row["ratio"] == pytest.approx(row["peer_seconds"] / row["ours_seconds"]), name
        if row["max_abs_diff"] is not None:
            assert row["max_abs_diff"] <= 1e-4, name
    assert result["machine"]["versions"]["jax"] and result["versions_extra"]["quantus"]
    assert out.with_suffix(".md").read_text().startswith("# Metrics")


def test_occlusion_and_first_layer_benchmarks_run(tmp_path: Path) -> None:
    """Incremental occlusion agrees with the whole model per window and with Captum; IG with the
    stem hoisted out of the path agrees with plain IG (float32 rounding through ReLUs)."""
    out = tmp_path / "occlusion.json"
    subprocess.run([sys.executable, "-m", "benchmarks.occlusion", "--sizes", "32", "--repeats", "1", "--out", str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True)
    row = json.loads(out.read_text())["sizes"]["32"]
    assert row["windows_per_image"] == 9
    assert row["max_rel_diff_vs_whole"] <= 1e-4 and row["max_rel_diff_vs_captum"] <= 1e-4
    assert all(row[k] > 0 for k in ("incremental", "whole_model", "forward_floor", "captum_tuned"))
    out = tmp_path / "first_layer.json"
    subprocess.run([sys.executable, "-m", "benchmarks.first_layer", "--quick", "--out", str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True)
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"small"} and rows["small"]["max_rel_diff"] <= 5e-3


def test_model_agnostic_benchmark_runs_and_agrees_with_captum(tmp_path: Path) -> None:
    """The small CNN at 32² against Captum, shap and lime, and the quality curves on a 3x3 grid:
    feature ablation and Shapley sampling on the same orders agree with Captum, Owen values on
    the same hierarchy with shap's PartitionExplainer."""
    pytest.importorskip("shap")
    pytest.importorskip("lime")
    out = tmp_path / "model_agnostic.json"
    subprocess.run([sys.executable, "-m", "benchmarks.model_agnostic", "--quick", "--sizes", "", "--small-size", "32",
                    "--quality-size", "32", "--quality-grid", "3", "--repeats", "1", "--out", str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True)
    result = json.loads(out.read_text())
    (speed,) = result["speed"]
    assert speed["features"] == 16 and set(speed["methods"]) == {
        "feature_ablation", "shapley_sampling", "kernel_shap", "lime", "owen"}
    for method, w in speed["methods"].items():
        assert {"ours", "forward floor"} <= set(w["rows"]), method
        assert all(r["seconds"] > 0 and r["evaluations"] > 0 for r in w["rows"].values()), method
    fa, ss = speed["methods"]["feature_ablation"], speed["methods"]["shapley_sampling"]
    assert fa["rows"]["ours"]["evaluations"] == fa["rows"]["captum default"]["evaluations"] == 17
    assert ss["rows"]["ours"]["evaluations"] == 4 * 15 + 2 and ss["rows"]["captum default"]["evaluations"] == 4 * 16 + 1
    for w in (fa, ss):
        assert max(w["max_rel_diff_vs_captum"].values()) <= 1e-4
    assert set(fa["max_rel_diff_vs_captum"]) == {"ours", "ours, dense", "captum tuned"}
    assert speed["methods"]["owen"]["max_rel_diff_vs_shap"] <= 1e-4  # the whole tree fits the budget
    assert {"shap PermutationExplainer", "shap KernelExplainer", "lime_image (batch 10)",
            "shap PartitionExplainer"} <= {label for w in speed["methods"].values() for label in w["rows"]}
    q = result["quality"]
    assert q["features"] == 9 and q["table_vs_direct_score"] <= 1e-4
    assert len(q["curves"]) == 6 and all(len(c) == 3 for c in q["curves"].values())
    assert all(math.isfinite(p["error"]) and p["evaluations"] > 0 for c in q["curves"].values() for p in c)
    assert out.with_suffix(".md").read_text().startswith("# Model-agnostic methods")
    assert out.with_suffix(".png").stat().st_size > 1000


def test_lm_benchmark_runs_and_agrees_with_captum(tmp_path: Path) -> None:
    """A 2-layer Llama, 16 prompt tokens: every row is timed, ours equals Captum's teacher-forced
    feature ablation and LayerIG, and reusing the prefix is reported."""
    out = tmp_path / "lm.json"
    subprocess.run([sys.executable, "-m", "benchmarks.lm", "--quick", "--prompts", "16", "--repeats", "0",
                    "--out", str(out)], cwd=REPO, check=True, capture_output=True, text=True)
    (run,) = json.loads(out.read_text())["runs"]
    fa, ss, ig = (run["methods"][k] for k in ("feature_ablation", "shapley_sampling", "ig"))
    assert fa["max rel diff"] <= 1e-4 and ig["max rel diff"] <= 1e-4
    assert {"captum default", "captum fastest", "ours, prefix=False", "prefix / no prefix"} <= set(fa)
    assert {"captum default", "captum fastest"} <= set(ss) and "captum" in ig
    assert all(r["ours"] > 0 for r in (fa, ss, ig))
    assert (tmp_path / "lm.md").read_text().count("| feature_ablation |") == 2


def test_concepts_benchmark_quick_runs_and_agrees_with_captum(tmp_path: Path) -> None:
    """TCAV on the small CNN: every row is timed, and ours given Captum's CAVs gives Captum's scores."""
    out = tmp_path / "concepts.json"
    subprocess.run([sys.executable, "-m", "benchmarks.concepts", "--quick", "--repeats", "0", "--out", str(out)],
                   cwd=REPO, check=True, capture_output=True, text=True)
    (model,) = json.loads(out.read_text())["models"]
    assert {"ours", "ours, CAVs", "ours, scores", "ours, classifiers only", "torch forward of the examples", "captum",
            "captum, CAVs cached"} == set(model["rows"])
    assert all(r["seconds"] > 0 for r in model["rows"].values()) and model["first_call"] > 0
    assert model["agreement"]["sign_count"] <= 1e-6 and model["agreement"]["magnitude"] <= 1e-5
    assert model["agreement"]["p_value"] <= 1e-5  # float32 scores: one CI run measured 1.09e-6
    assert out.with_suffix(".md").read_text().startswith("# TCAV")


def test_paths_benchmark_quick_runs_and_agrees_with_pair(tmp_path: Path) -> None:
    """Guided IG, Blur IG and XRAI against PAIR on the small CNN: every row timed, outputs agree."""
    pytest.importorskip("saliency")
    out = tmp_path / "paths.json"
    subprocess.run([sys.executable, "-m", "benchmarks.paths", "--quick", "--batch", "2", "--repeats", "0",
                    "--out", str(out)], cwd=REPO, check=True, capture_output=True, text=True)
    (run,) = json.loads(out.read_text())["runs"]
    assert set(run["rows"]) == {"guided_ig", "blur_ig", "xrai"}
    for method, rows in run["rows"].items():
        assert rows["ours"]["max_rel_diff_vs_pair"] <= 1e-3, method  # float32 (1e-4 in float64: test_paths_refs)
        assert rows["pair"]["seconds"] > 0 and rows["floor"]["seconds"] > 0 and rows["pair / ours"] > 0
    assert out.with_suffix(".md").read_text().startswith("# Guided IG, Blur IG and XRAI")


def test_robust_influence_benchmark_quick_runs_and_agrees_with_captum(tmp_path: Path) -> None:
    """PGD, FGSM, TracInCP and TracInCPFast against Captum at small sizes: every row timed, outputs agree."""
    pytest.importorskip("captum")
    out = tmp_path / "robust_influence.json"
    subprocess.run([sys.executable, "-m", "benchmarks.robust_influence", "--quick", "--repeats", "0",
                    "--out", str(out)], cwd=REPO, check=True, capture_output=True, text=True)
    result = json.loads(out.read_text())
    (run,) = result["attacks"]
    assert set(run["rows"]) == {"PGD", "FGSM"}
    for method, rows in run["rows"].items():
        assert rows["ours"]["max_abs_diff_vs_captum"] <= 1e-5, method  # same start, same steps
        assert rows["captum"]["seconds"] > 0 and rows["captum / ours"] > 0 and "peak_mib" in rows["ours"]
    rows = result["influence"]["rows"]
    assert set(rows) == {"TracInCP scores", "TracInCP self-influence", "TracInCPFast / last_layer scores",
                         "TracInCPFast / last_layer self-influence"}
    for what, row in rows.items():
        assert row["ours"]["max_rel_diff_vs_captum"] <= 1e-4, what  # float32
        assert row["captum"]["seconds"] > 0 and row["captum / ours"] > 0 and "peak_mib" in row["captum"]
    assert out.with_suffix(".md").read_text().startswith("# Attacks and influence against Captum")
