"""`make bench`: throughput and latency of `relay dev`, cold start and asset sizes of the Lambdas,
and the cost per million messages counted in real local runs. Never part of the pytest suite."""
