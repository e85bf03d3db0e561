"""The upload formats' names in the service and in the API."""

from __future__ import annotations

from flakehouse.ingest.uploads import JSON_LINES, JUNIT_XML
from flakehouse.ingest.v1 import ingest_pb2

FORMATS = {
    ingest_pb2.UPLOAD_FORMAT_UNSPECIFIED: None,
    ingest_pb2.UPLOAD_FORMAT_JUNIT_XML: JUNIT_XML,
    ingest_pb2.UPLOAD_FORMAT_JSON_LINES: JSON_LINES,
}
FORMAT_ENUMS = {
    JUNIT_XML: ingest_pb2.UPLOAD_FORMAT_JUNIT_XML,
    JSON_LINES: ingest_pb2.UPLOAD_FORMAT_JSON_LINES,
}
