"""A conformance report as JUnit XML, one test case per property, for CI dashboards."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from emr.conformance.runner import Report

SUITE = "emr conformance"
EXAMPLES = {"vi": "ví dụ", "en": "examples"}


def write_junit(report: Report, path: Path, *, lang: str) -> None:
    failures = [o for o in report.outcomes if not o.passed]
    suites = ET.Element("testsuites", name=SUITE, tests=str(len(report.outcomes)), failures=str(len(failures)),
                        time=f"{report.seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=SUITE, tests=str(len(report.outcomes)),
                          failures=str(len(failures)), errors="0", time=f"{report.seconds:.3f}")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("base_url", report.options.base_url), ("run_id", report.options.run_id),
                        ("seed", str(report.options.seed)), ("max_examples", str(report.options.max_examples))):
        ET.SubElement(properties, "property", name=name, value=value)
    for outcome in report.outcomes:
        case = ET.SubElement(suite, "testcase", classname="emr.conformance", name=outcome.key,
                             time=f"{outcome.seconds:.3f}")
        ET.SubElement(case, "system-out").text = f"{outcome.title(lang)} ({outcome.examples} {EXAMPLES[lang]})"
        if not outcome.passed:
            failure = ET.SubElement(case, "failure", message=outcome.message(lang) or "", type="PropertyViolated")
            failure.text = outcome.replay
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
