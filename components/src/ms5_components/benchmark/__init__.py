"""Benchmarks as a Pulumi resource: :mod:`.plan` (pure: data, queries, verdicts), :mod:`.runner`
(the scratch schema, binary COPY ingest, timed queries, compression), :mod:`.provider` (the
``Benchmark`` dynamic resource)."""
