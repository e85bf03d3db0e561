"""python -m flakehouse.quota"""

from flakehouse.core.server import service_main
from flakehouse.quota.app import QuotaApp
from flakehouse.quota.settings import QuotaSettings

service_main("quota", QuotaSettings, QuotaApp)
