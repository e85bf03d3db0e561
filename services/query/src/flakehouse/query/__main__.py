"""python -m flakehouse.query"""

from flakehouse.core.server import service_main
from flakehouse.query.app import QueryApp
from flakehouse.query.settings import QuerySettings

service_main("query", QuerySettings, QueryApp)
