"""python -m flakehouse.replication"""

from flakehouse.core.server import service_main
from flakehouse.replication.app import ReplicationApp
from flakehouse.replication.settings import ReplicationSettings

service_main("replication", ReplicationSettings, ReplicationApp)
