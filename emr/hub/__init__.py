"""The coordination hub: a FHIR R4B server keyed to the national ID. Start with ``emr.hub.app.create_app``."""
