"""``emr conformance``: property-based interoperability tests against any FHIR R4/R4B server.

``run_conformance(Options(...))`` checks each property with Hypothesis-generated
data (from ``emr.testing``) over HTTP and returns a :class:`Report`; a failing
property carries its shrunk counterexample as a replayable curl script.
"""

from emr.conformance.runner import Options, Outcome, Report, run_conformance

__all__ = ["Options", "Outcome", "Report", "run_conformance"]
