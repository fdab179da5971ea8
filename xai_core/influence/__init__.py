"""Training-data influence (``xc.influence``): TracIn, which training examples raised or lowered a
test example's loss, and self-influence, as Captum's ``captum.influence`` (``TracInCP``,
``TracInCPFast``, ``TracInCPFastRandProj``). It imports the core and the graph tools; the public
face imports it.

Everything takes the loss of ONE example as a function of the parameters, ``loss_fn(params,
example)``, a list of checkpoints (parameter pytrees, each with its learning rate) and data in any
of three forms (:mod:`~xai_core.influence.data`), read in chunks of ``batch_size`` examples, one
compiled program per chunk over every checkpoint:

- :func:`tracin`: the influence scores ``(tests, trains)``, in three modes (:data:`MODES`): every
  parameter's gradient (``vmap(grad)``), the last dense layer's weight in closed form, or that
  layer's factors randomly projected (:func:`draw_projection`);
- :func:`top_k`: the ``k`` proponents and opponents of each test example, streamed;
- :func:`self_influence`: each example's influence on itself, which finds mislabeled examples;
- :class:`Checkpoint` and :func:`from_state_dict`: checkpoints with learning rates, torch's included.

Example:
    >>> import jax, jax.numpy as jnp, xai_core as xc
    >>> loss = lambda w, ex: (ex[0] @ w - ex[1]) ** 2
    >>> xs, ys = jnp.eye(3), jnp.array([1.0, 1.0, -5.0])
    >>> ckpts = [xc.influence.Checkpoint(jnp.zeros(3), 0.1), xc.influence.Checkpoint(jnp.ones(3), 0.1)]
    >>> int(jnp.argmax(xc.influence.self_influence(loss, ckpts, (xs, ys))))  # the odd label
    2
"""

from xai_core.influence.checkpoints import Checkpoint, from_state_dict
from xai_core.influence.features import MODES, draw_projection
from xai_core.influence.tracin import Influential, self_influence, top_k, tracin

__all__ = ["MODES", "Checkpoint", "Influential", "draw_projection", "from_state_dict", "self_influence", "top_k",
           "tracin"]
