"""Text classifiers, explained on their token embeddings (framework-free).

Token ids are integers: no gradient flows to them, so every gradient and path method
attributes the output of the model's embedding layer instead, as Captum's
``LayerIntegratedGradients`` on the word embeddings does. An adapter given token ids
(``from_torch``, ``from_keras``) returns a :class:`TextModel`: a :class:`Model` whose one
example is ``{"embeddings": E, "inputs": xc.fixed(inputs)}``, where ``inputs`` are the
model's own inputs for one example (the ids, or a dict with the attention mask, ...), and
``E`` of shape ``(tokens, width)`` replaces the embedding layer's output. The inputs are
fixed: never attributed, and still read by the model (masks, position and segment ids).

Example:
    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> from xai_core import graph
    >>> table = jax.random.normal(jax.random.key(0), (10, 4))
    >>> def apply(p, x):  # x: {"ids": (L,) ints}; the embedding layer is marked "emb"
    ...     e = x.get("embeddings", graph.mark(p["table"][x["ids"]], "emb"))
    ...     return jnp.tanh(e.mean(0)) @ p["w"]
    >>> def apply_text(p, x):  # the same model with the embeddings given
    ...     return apply(p, {"ids": x["inputs"]["ids"], "embeddings": x["embeddings"]})
    >>> m = TextModel(apply_text, apply, {"table": table, "w": jnp.ones((4, 3))}, embedding="emb",
    ...               example={"ids": jnp.zeros(5, jnp.int32)})
    >>> x = m.inputs({"ids": jnp.array([3, 1, 4, 1, 0])})
    >>> a = xc.attribute(m.score(2), x, method="ig", baseline=m.baseline(x))
    >>> a["embeddings"].shape, a["inputs"], xc.token_scores(a).shape
    ((5, 4), None, (5,))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.inputs import Fixed, fixed

from ._base import Model, register_model_pytree

__all__ = ["TextModel", "check_replacement"]


@dataclass(frozen=True)
class _Text:
    ids_model: Model          # the model on its own inputs, layers marked (for the embeddings)
    embedding: str            # the embedding layer's name among ids_model.layers
    ids_leaf: int             # which leaf of one example's inputs holds the token ids
    treedef: Any              # structure of one example's inputs
    pad_id: int
    context: int | None       # the longest sequence the model takes (its position table), if known


class TextModel(Model):
    """A text classifier as a pure JAX function of its token embeddings (see the module doc).

    Args:
        apply_text: ``apply_text(params, {"embeddings": E, "inputs": inputs})`` -> logits for
            one example, with ``E`` in place of the embedding layer's output.
        apply_ids: ``apply_ids(params, inputs)`` -> logits: the plain model on its own inputs,
            with the embedding layer's output marked ``embedding`` (:func:`xai_core.graph.mark`).
        params: the weights (shared by both functions).
        embedding: the name of the embedding layer.
        example: one example's inputs (arrays or ``ShapeDtypeStruct``s): the token ids, or a
            pytree holding them (a dict's ``"input_ids"``, else its only integer leaf).
        pad_id: the padding token (the default baseline token).
        context: the longest sequence the model takes (a position table's size), if known;
            :mod:`xai_core.lm` refuses longer prompts plus targets.
        **options: passed to :class:`Model` (``output``, ``name``, ...).
    """

    def __init__(self, apply_text: Callable[[Any, Any], Any], apply_ids: Callable[[Any, Any], Any],
                 params: Any, *, embedding: str, example: Any, pad_id: int = 0, context: int | None = None,
                 **options: Any) -> None:
        super().__init__(apply_text, params, **options)
        name = self.name
        leaves, treedef = jax.tree_util.tree_flatten_with_path(example)
        ints = [k for k, (_, a) in enumerate(leaves) if jnp.issubdtype(a.dtype, jnp.integer)]
        named = [k for k, (path, _) in enumerate(leaves) if jax.tree_util.keystr(path) == "['input_ids']"]
        if not (named or len(ints) == 1):
            raise ValueError(f"{name}: cannot tell which input holds the token ids: give them as the one "
                             "integer input, or under the key 'input_ids' of a dict of inputs.")
        ids_model = Model(apply_ids, params, name=name, warn_probabilities=False)
        self._static.extra = _Text(ids_model, embedding, (named or ints)[0], treedef, int(pad_id),
                                    None if context is None else int(context))
        ids_model._program(example)  # trace it: its layers name the split points
        layers = {layer.name: layer for layer in ids_model.layers}
        if embedding not in layers:
            raise ValueError(f"{name}: no layer named {embedding!r}; layers: {', '.join(layers)}.")
        out = layers[embedding]  # trace the model on embeddings now: errors surface here
        self.jaxpr({"embeddings": jax.ShapeDtypeStruct(out.shape, out.dtype), "inputs": example})

    @property
    def _text(self) -> _Text:
        return self._static.extra

    @property
    def embedding(self) -> str:
        """The name of the embedding layer whose output is attributed."""
        return self._text.embedding

    @property
    def pad_id(self) -> int:
        """The padding token: the default baseline token, and what :meth:`pad` fills with."""
        return self._text.pad_id

    @property
    def context(self) -> int | None:
        """The longest sequence the model takes (its position table's size), or ``None`` if unknown."""
        return self._text.context

    def embed(self, inputs: Any) -> jax.Array:
        """The embedding layer's output for one example's inputs: ``(tokens, width)``."""
        ids_model = self._text.ids_model.with_params(self._params)
        head, _ = ids_model.split(self.embedding, inputs)
        return head(inputs)

    def inputs(self, inputs: Any) -> dict[str, Any]:
        """``{"embeddings": embed(inputs), "inputs": xc.fixed(inputs)}``: one example ready
        for every method, e.g. ``xc.attribute(m.score(t), m.inputs(ids), method="ig")``.
        Works under ``jax.vmap`` over a padded batch."""
        return {"embeddings": self.embed(inputs), "inputs": fixed(inputs)}

    def baseline(self, x: Any, token: int | None = None, keep: Sequence[int] = ()) -> dict[str, Any]:
        """The IG / DeepLift baseline of ``x``: every token's embedding replaced by that of
        ``token`` (default :attr:`pad_id`; a ``[MASK]`` id is the other common choice), except
        the tokens in ``keep`` (e.g. ``(cls_id, sep_id)``, as in Captum's BERT tutorial) and
        padding, which keep their own. Pass it as ``baseline=`` (the fixed inputs need none)."""
        inputs = x["inputs"].value if isinstance(x["inputs"], Fixed) else x["inputs"]
        leaves = jax.tree.leaves(inputs)
        ids = leaves[self._text.ids_leaf]
        token = self.pad_id if token is None else int(token)
        stays = jnp.isin(ids, jnp.asarray([*keep, self.pad_id], ids.dtype))
        leaves[self._text.ids_leaf] = jnp.where(stays, ids, jnp.asarray(token, ids.dtype))
        return {"embeddings": self.embed(jax.tree.unflatten(self._text.treedef, leaves)), "inputs": None}

    def pad(self, sequences: Sequence[Sequence[int]], length: int | None = None) -> Any:
        """A batch of token-id sequences of different lengths, padded to one length (the
        longest, or ``length``) with :attr:`pad_id`, in the structure of the model's inputs:
        the ids alone, or a dict with ``attention_mask`` 1 on tokens and 0 on padding (other
        entries, e.g. ``token_type_ids``, zeros). Map :meth:`inputs` over it with ``jax.vmap``."""
        lengths = [len(s) for s in sequences]
        n = max(lengths) if length is None else int(length)
        if not sequences or n < max(lengths):
            raise ValueError(f"{self.name}.pad: give one or more sequences no longer than length={n}.")
        ids = np.full((len(sequences), n), self.pad_id, np.int32)
        mask = np.zeros((len(sequences), n), np.int32)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)], mask[row, :len(seq)] = seq, 1
        return self.from_ids(jnp.asarray(ids), jnp.asarray(mask))

    def from_ids(self, ids: jax.Array, attention_mask: jax.Array | None = None) -> Any:
        """Token ids (a traced array works) in the structure of the model's inputs: the ids
        alone, or a dict with ``attention_mask`` (default ones) and any other entry zeros."""
        text = self._text
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(
            text.treedef.unflatten([0] * text.treedef.num_leaves))[0]]
        mask = jnp.ones_like(ids) if attention_mask is None else attention_mask
        filled = [ids if k == text.ids_leaf else mask if p == "['attention_mask']" else jnp.zeros_like(ids)
                  for k, p in enumerate(paths)]
        return text.treedef.unflatten(filled)


register_model_pytree(TextModel)


def check_replacement(layer: str, calls: int, computed: Sequence[int], given: Sequence[int]) -> None:
    """Errors of an adapter that replaces embedding layer ``layer``'s output (a batch of one,
    of shape ``computed``) by given embeddings of one example (``given``), on its ``calls``-th run."""
    if calls > 1:
        raise ValueError(f"the embedding layer {layer!r} runs more than once per forward, so its output "
                         "cannot be replaced by one input; name another layer with embedding='...'.")
    if tuple(computed) != (1, *given):
        raise ValueError(f"embeddings of shape {tuple(given)} given, but the embedding layer {layer!r} "
                         f"computes {tuple(computed[1:])} for one example; make them with m.inputs(ids).")
