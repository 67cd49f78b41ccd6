"""The project's one error tree.

Domain code raises these; the hub turns each into a FHIR OperationOutcome with the
HTTP status the class names, and the CLI prints ``str(error)`` on one line and exits
non-zero. Nothing else in the project builds an HTTP error response.

    EmrError                          500  exception   (never raised on purpose)
    ├── InvalidInput                  400  invalid     malformed request or value
    │   ├── InvalidNationalId         400  value       a personal identification number breaks a rule
    │   ├── ProfileViolation          422  processing  a resource fails the project's profile checks
    │   ├── UnsupportedSearch         400  not-supported   unknown search parameter or modifier
    │   └── DataFileError             400  invalid     a data file (hospitals/, scenarios/, data/) is wrong
    ├── Unauthorized                  401  login       no valid access token
    ├── Forbidden                     403  forbidden   the token's scopes, facility or the patient's consent do not allow it
    ├── NotFound                      404  not-found
    ├── Gone                          410  deleted
    ├── MethodNotAllowed              405  not-supported
    ├── Conflict                      409  conflict
    ├── PreconditionFailed            412  duplicate / conflict  (conditional interactions, If-Match)
    ├── PayloadTooLarge               413  too-costly
    └── UnsupportedMediaType          415  not-supported
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One finding: what is wrong, and where (a FHIRPath-like location)."""

    message: str
    location: str | None = None
    code: str = "invalid"


class EmrError(Exception):
    status: int = 500
    issue_code: str = "exception"

    def __init__(self, message: str, *, location: str | None = None, problems: list[Problem] | None = None):
        super().__init__(message)
        self.message = message
        self.problems = problems or [Problem(message, location, self.issue_code)]

    def __str__(self) -> str:
        if len(self.problems) <= 1:
            return self.message
        return f"{self.message}: " + "; ".join(_describe(p) for p in self.problems)


def _describe(problem: Problem) -> str:
    return f"{problem.location}: {problem.message}" if problem.location else problem.message


class InvalidInput(EmrError):
    status = 400
    issue_code = "invalid"


class InvalidNationalId(InvalidInput):
    """Carries the name of the rule the number broke, e.g. ``length`` or ``province``."""

    issue_code = "value"

    def __init__(self, rule: str, message: str, *, location: str | None = None):
        super().__init__(message, location=location)
        self.rule = rule


class ProfileViolation(InvalidInput):
    status = 422
    issue_code = "processing"


class UnsupportedSearch(InvalidInput):
    issue_code = "not-supported"


class DataFileError(InvalidInput):
    pass


class Unauthorized(EmrError):
    """The request carries no valid access token (the hub answers with ``WWW-Authenticate``)."""

    status = 401
    issue_code = "login"


class Forbidden(EmrError):
    status = 403
    issue_code = "forbidden"


class NotFound(EmrError):
    status = 404
    issue_code = "not-found"


class Gone(EmrError):
    status = 410
    issue_code = "deleted"


class MethodNotAllowed(EmrError):
    status = 405
    issue_code = "not-supported"


class Conflict(EmrError):
    status = 409
    issue_code = "conflict"


class PreconditionFailed(EmrError):
    status = 412
    issue_code = "conflict"


class PayloadTooLarge(EmrError):
    status = 413
    issue_code = "too-costly"


class UnsupportedMediaType(EmrError):
    status = 415
    issue_code = "not-supported"


__all__ = [
    "Conflict",
    "DataFileError",
    "EmrError",
    "Forbidden",
    "Gone",
    "InvalidInput",
    "InvalidNationalId",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Problem",
    "ProfileViolation",
    "Unauthorized",
    "UnsupportedMediaType",
    "UnsupportedSearch",
]
