"""Why ``benchmarks.robust_influence``'s attacks differ from Captum's by 16/255 (issue 29).

    python -m benchmarks.attack_agreement            # float32, then float64 (torch .double(), JAX x64)

The small residual CNN at 64², batch 32, FGSM (8/255) and PGD-20 (8/255, step 2/255, Captum's
random start replayed) exactly as in ``benchmarks.robust_influence``. Per dtype: the fraction of
components that differ from Captum's by more than 1e-5, the max abs diff, and for FGSM the
gradient of the per-example cross-entropy at the differing components, ours (``jax.grad``) and
torch's (autograd): its magnitude and whether the two signs agree.
"""

from __future__ import annotations

import os
import sys

# the same XLA:CPU flags as benchmarks.robust_influence; before JAX starts
if "xla_cpu_experimental_ynn_fusion_type" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type="
                               "-individual_convolution,-reduce").strip()

import numpy as np  # noqa: E402

STEPS, SIZE, BATCH = 20, 64, 32


def run(dtype: str) -> None:
    import jax
    import jax.numpy as jnp
    import torch

    from benchmarks.models import torch_small_resnet
    from benchmarks.robust_influence import RADIUS, STEP, attack_setup

    net = torch_small_resnet().to(torch.float64 if dtype == "float64" else torch.float32)
    a = attack_setup(net, BATCH, SIZE, STEPS)
    xs_t, ts_t, m, xs, ts, start = a.xs_t, a.ts_t, a.m, a.xs, a.ts, a.start
    assert xs.dtype == jnp.dtype(dtype), xs.dtype
    torch.manual_seed(5)
    pgd_c = a.pgd_t.perturb(xs_t, RADIUS, STEP, STEPS, ts_t, random_start=True, norm="Linf").detach().numpy()
    fgsm_c = a.fgsm_t.perturb(xs_t, RADIUS, ts_t).detach().numpy()
    pgd_o, fgsm_o = np.asarray(a.pgd(m, xs, ts, start)), np.asarray(a.fgsm(m, xs, ts))

    # the gradients each side's FGSM steps along
    g_o = np.asarray(jax.jit(jax.vmap(jax.grad(lambda x, t: -jax.nn.log_softmax(m.logits(x))[t])))(xs, ts))
    x_req = xs_t.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(net(x_req), ts_t, reduction="sum").backward()
    g_t = x_req.grad.numpy()

    print(f"--- {dtype}")
    for name, o, c in (("FGSM", fgsm_o, fgsm_c), ("PGD-20", pgd_o, pgd_c)):
        d = np.abs(o.astype(np.float64) - c)
        print(f"{name}: max abs diff {d.max():.2e} ({d.max() * 255:.2f}/255), components differing by > 1e-5: "
              f"{(d > 1e-5).sum()} of {d.size} ({(d > 1e-5).mean():.2e}), in {(d > 1e-5).any((1, 2, 3)).sum()} "
              f"of {BATCH} images")
    bad = np.abs(fgsm_o.astype(np.float64) - fgsm_c) > 1e-5
    print(f"gradients: max abs diff ours vs torch {np.abs(g_o - g_t).max():.2e} (max |g| {np.abs(g_t).max():.2e}); "
          f"components with |g_torch| <= 1e-6: {(np.abs(g_t) <= 1e-6).sum()}, sign(g_ours) != sign(g_torch): "
          f"{(np.sign(g_o) != np.sign(g_t)).sum()}")
    for i, j in enumerate(np.argwhere(bad)[:12]):
        j = tuple(j)
        print(f"  FGSM differing component {j}: g_ours {g_o[j]:+.3e}  g_torch {g_t[j]:+.3e}  "
              f"x' ours - captum {(fgsm_o[j] - fgsm_c[j]) * 255:+.2f}/255")
    if bad.any():
        print(f"  all {bad.sum()} differing: max |g_ours| {np.abs(g_o[bad]).max():.2e}, max |g_torch| "
              f"{np.abs(g_t[bad]).max():.2e}, opposite signs {(np.sign(g_o[bad]) != np.sign(g_t[bad])).sum()}, "
              f"one side within the 1e-6 threshold {((np.abs(g_o[bad]) <= 1e-6) ^ (np.abs(g_t[bad]) <= 1e-6)).sum()}")


def main() -> None:
    dtypes = sys.argv[1:] or ["float32", "float64"]
    for dtype in dtypes:
        if dtype == "float64":
            import jax
            jax.config.update("jax_enable_x64", True)
        run(dtype)


if __name__ == "__main__":
    main()
