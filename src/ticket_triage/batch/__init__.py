"""Batch scoring and evaluation of whole datasets: in-process or on Apache Spark.

``frames`` (one chunk of rows -> decisions; both engines run it), ``score`` (``triage score``:
inputs, the local engine, progress), ``spark`` (the Spark engine: session, ``mapInPandas``
scoring, labelled-set evaluation). PySpark is imported only by ``spark``.
"""
