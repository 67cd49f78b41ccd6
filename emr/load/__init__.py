"""``emr loadtest``: a realistic mix of requests driven at a hub on this machine.

``plan`` checks what was asked (a hub on 127.0.0.1 only, bounded rate, duration and
count, a known mix); ``workload`` writes the requests a province's facilities would
send — visit Bundles with results, searches by national ID, ``$check-reuse`` — from
a seeded stream; ``driver`` sends them open-loop at the asked rate and times each
from the moment it was due; ``report`` turns the timings into throughput, latency
percentiles and errors, in Vietnamese or English.
"""
