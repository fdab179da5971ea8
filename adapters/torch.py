"""PyTorch adapter: an ``nn.Module`` -> :class:`Model`, a pure JAX function of one example.

The module is converted once, by `torchax <https://github.com/google/torchax>`_
(``torchax.extract_jax``): its parameters and buffers become a dict of JAX arrays
(``m.params``, keyed by the names of ``module.state_dict()``), and its ``forward``
runs with torchax tensors that wrap JAX values, so every ATen op it calls (layers,
``F.relu``, ``torch.flatten``, residual adds, an inline ``torch.softmax``) lands in
one jaxpr. From then on everything is JAX: ``jit``, ``vmap`` and ``grad`` over the
traced program; torch is never called per step. The final softmax is cut on that
jaxpr by the same graph tools as for every framework.

Why torchax rather than our own lowering of ``torch.export`` graphs
(``python -m benchmarks.torch_converters``, ResNet-18 at 224x224x3, 2 CPU cores):
both give the same XLA program (IG-64 bit-identical; 7.7 s against 7.8 s steady,
4.2 s against 4.3 s to compile; logits within 4e-7 of torch), so speed does not decide.
Coverage does: torchax lowers several hundred ATen ops and handles in-place ops,
views and any batch size, while an own lowering needed 11 table entries for
ResNet-18 alone and failed on two of our three test models (``log_softmax``;
``amax``, ``cat``, ``tanh``, ``avg_pool2d``), and fixes the batch size at export.
torchax's cost here is that 0.0.13 fails to import beside torch 2.13:
:mod:`xai_core.adapters._torchax` works around that while it imports, and a test
tells when the workaround can go.

Layout: the input stays in the model's own layout (NCHW), but every convolution is
computed channels-last (:func:`xai_core.graph.channels_last`): XLA:CPU's fast
convolutions are NHWC, and inside the ``lax.scan`` that chunked methods run, NCHW
convolutions were 14x slower on a ResNet-18 (IG-16 at 112x112: 7.0 s chunked against
0.52 s unchunked).

Layers: while the model is traced, a forward hook on every submodule labels its
output (:func:`xai_core.graph.mark`) with the module's name from
``module.named_modules()`` (``"layer1.0.conv1"``), so ``m.layers`` and ``m.split``
see torch names. Hooks are added for the trace only and removed afterwards; the
module's train/eval mode is also restored.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import jax

from xai_core import graph

from ._base import Model, OutputMode, mark_batch_of_one
from ._shapes import _shapes
from ._text import TextModel
from ._torch_inputs import _context, _embedding_module, _example, _pad_id, _Replacement, _warn_float64

__all__ = ["from_torch"]

_INSTALL = ("PyTorch and torchax are needed for from_torch: pip install torch==2.13.0 "
            "'xai-core[torch]' (install a torch build first: a bare 'torch' requirement may "
            "pull a multi-GB CUDA build).")


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised in a subprocess test
        raise ImportError(_INSTALL) from e
    try:
        from . import _torchax
        torchax = _torchax.load()
    except ImportError as e:  # pragma: no cover - exercised in a subprocess test
        raise ImportError(_INSTALL) from e
    return torch, torchax


@contextmanager
def _traced_as_eval(module: Any) -> Iterator[None]:
    """Eval mode for the duration (BatchNorm running stats, no dropout), then restore."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


class _UnsupportedOp(NotImplementedError):
    """An ATen op torchax cannot lower."""


@contextmanager
def _marked_layers(module: Any, torchax: Any) -> Iterator[list[str]]:
    """Label each submodule's output while tracing; yields the stack of modules
    being run (innermost last), for error messages."""
    env = torchax.default_env()
    Tensor = torchax.tensor.Tensor
    stack: list[str] = []
    handles = []

    def enter(name: str) -> Any:
        def pre_hook(mod: Any, args: Any) -> None:
            stack.append(name)
        return pre_hook

    def leave(name: str) -> Any:
        def hook(mod: Any, args: Any, out: Any) -> Any:
            if stack and stack[-1] == name:
                stack.pop()
            return Tensor(mark_batch_of_one(out.jax(), name), env) if isinstance(out, Tensor) else out
        return hook

    for name, sub in module.named_modules():
        if name:
            handles.append(sub.register_forward_pre_hook(enter(name)))
            handles.append(sub.register_forward_hook(leave(name)))
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def from_torch(module: Any, example_input: Any, *, output: OutputMode = "logits",
               name: str | None = None, embedding: str | None = None) -> Model:
    """Wrap a PyTorch ``nn.Module`` as a :class:`Model` of one example that returns logits.

    Args:
        module: the model. Its weights are copied to JAX now; later changes to the
            module are not seen (build a new model, or use ``m.with_params``). A model
            in ``train()`` mode is traced with eval semantics (BatchNorm running
            statistics, no dropout) and a warning; the module's mode is left as it was.
        example_input: a batch exactly as you feed the model, e.g. a tensor of shape
            ``(1, 3, 224, 224)`` (NCHW); a tuple of tensors for ``forward(x, y)``; a dict
            (a tokenizer's output) for keyword inputs. Only shapes (without the batch
            axis) and dtypes are used.
        output: ``"logits"`` (default), ``"probs"`` or ``"log_probs"``; see :class:`Model`.
        name: for messages (default: the module's class name).
        embedding: for a model of token ids: the name of its embedding module (default:
            HuggingFace's ``get_input_embeddings()``, else the one ``nn.Embedding``).

    ``m.logits(x)`` takes ONE example in the model's own layout without the batch
    axis, e.g. ``(3, 224, 224)``, or a tuple / dict of them as the example was given;
    batch with ``jax.vmap``. ``m.params`` is a dict of JAX arrays named as in
    ``module.state_dict()``. A HuggingFace model is passed as it is: its input goes in by
    keyword (``pixel_values=``) and the ``logits`` of its ``ModelOutput`` are taken.
    Given integer token ids, the result is a :class:`TextModel`, explained on the output of
    the embedding module (the ids and the attention mask are fixed inputs).

    Example:
        >>> import torch, jax.numpy as jnp
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=-1)).eval()
        >>> m = from_torch(net, torch.zeros(1, 4))
        >>> m.cut, m.logits(jnp.ones(4)).shape, [layer.name for layer in m.layers]
        ('softmax', (3,), ['0', '1'])
    """
    torch, torchax = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}.")
    name = name or type(module).__name__
    example, spec = _example(torch, example_input, name)
    if any(m.training for m in module.modules()):
        warnings.warn(f"from_torch: {name} is in train() mode; it is traced with eval semantics "
                      "(BatchNorm running statistics, no dropout). Call module.eval() first to "
                      "silence this warning.", UserWarning, stacklevel=2)
    _warn_float64(torch, module, example, name)

    with _traced_as_eval(module):
        params, jax_fn = torchax.extract_jax(module)
    keyword = getattr(module, "main_input_name", None) if hasattr(module, "config") else None
    ints = [t.dtype for t in jax.tree.leaves(example) if not t.is_floating_point()]
    replace = (_Replacement(_embedding_module(torch, module, embedding, name, ints[0]), torchax)
               if ints else None)

    def forward(params: Any, xb: Any) -> Any:
        if isinstance(xb, dict):
            return jax_fn(params, (), xb)
        if isinstance(xb, tuple):
            return jax_fn(params, xb)
        return jax_fn(params, (), {keyword: xb}) if keyword else jax_fn(params, (xb,))

    def run(params: Any, x: Any, embeddings: Any = None) -> Any:
        # The replacement's hook runs first, so the embedding layer's mark is on the given value.
        with _traced_as_eval(module), (replace.using(embeddings) if embeddings is not None
                                       else nullcontext()), _marked_layers(module, torchax) as stack:
            try:
                xb = jax.tree.map(lambda a: a[None], x)
                out = graph.channels_last(lambda p, xb: _logits_of(forward(p, xb), name))(params, xb)
            except torchax.tensor.OperatorNotFound as e:
                where = f" in layer {stack[-1]!r} ({_module_type(module, stack[-1])})" if stack else ""
                raise _UnsupportedOp(f"{name}: the PyTorch op {_op_name(e)}{where} has no JAX "
                                     "lowering in torchax, so the model cannot be converted. "
                                     "Rewrite that part with supported ops, or report it to "
                                     "torchax.") from None
        return out[0]

    try:
        if replace is None:
            m = Model(run, params, output=output, input_shape=_shapes(spec), name=name)
            m.jaxpr(spec)  # trace now: unsupported ops and shape errors surface here
            return m
        return TextModel(lambda p, x: run(p, x["inputs"], x["embeddings"]), run, params,
                         embedding=replace.name, example=spec, pad_id=_pad_id(module), context=_context(module),
                         output=output, name=name)
    except ValueError as e:
        if isinstance(e.__cause__, (_UnsupportedOp, _NotOneTensor)):
            raise e.__cause__ from None
        raise


class _NotOneTensor(TypeError):
    """A forward that returns something other than one tensor (or a ModelOutput's logits)."""


def _logits_of(out: Any, name: str) -> Any:
    """The class scores a forward returned: one tensor, or a HuggingFace ``ModelOutput``'s
    ``logits``; anything else is an error that says to wrap the module."""
    if isinstance(out, (tuple, list)) and len(out) == 1:
        out = out[0]
    if isinstance(out, dict) and any(c.__name__ == "ModelOutput" for c in type(out).__mro__) \
            and out.get("logits") is not None:
        out = out["logits"]
    if not isinstance(out, jax.Array):
        raise _NotOneTensor(f"{name}.forward must return one tensor (the class scores) or a "
                            f"HuggingFace ModelOutput with logits; it returned {type(out).__name__}. "
                            "Wrap the module so forward returns the logits tensor.")
    return out


def _op_name(e: Exception) -> str:
    text = str(e)
    prefix = "Operator with name "
    return text[len(prefix):].split(" ")[0] if text.startswith(prefix) else text


def _module_type(module: Any, path: str) -> str:
    return type(module.get_submodule(path)).__name__
