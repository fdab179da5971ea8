"""Attribution at scale: ``xai-core attribute`` and :func:`run`. An application: it imports the
public face, the registry, the demo's model and the adapters; only the command line imports it.

The job loads a model (:func:`~xai_core.batch.sources.load_model`) and data
(:func:`~xai_core.batch.sources.load_data`), explains every example with one jitted program
sharded over all local devices (:mod:`xai_core.batch.job`), commits each shard atomically to a
zarr v3 array with a manifest (:mod:`xai_core.batch.store`), resumes after a kill, shows
progress, and can write a static HTML gallery (``--report``).
"""

from xai_core.batch.job import Job, run

__all__ = ["Job", "run"]
