"""python -m flakehouse.storage"""

from flakehouse.core.server import service_main
from flakehouse.storage.app import StorageApp
from flakehouse.storage.settings import StorageSettings

service_main("storage", StorageSettings, StorageApp)
