"""The ground floor under every method: input checks, pytree inputs, chunked evaluation and the XLA
defaults. It imports only :mod:`xai_core.graph`; every other part of the package may import it.

Modules: :mod:`~xai_core.core.checks` (argument checks and their messages),
:mod:`~xai_core.core.inputs` (one array or a pytree of inputs, :func:`~xai_core.core.inputs.fixed`),
:mod:`~xai_core.core.chunking` (many model evaluations in bounded chunks, one program),
:mod:`~xai_core.core.xla` (XLA:CPU defaults applied at ``import xai_core``). Nothing is imported
here, so ``xai_core.core.xla`` runs before anything starts JAX.
"""
