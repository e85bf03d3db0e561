"""python -m flakehouse.ingest"""

from flakehouse.core.server import service_main
from flakehouse.ingest.app import IngestApp
from flakehouse.ingest.settings import IngestSettings

service_main("ingest", IngestSettings, IngestApp)
