"""DNS: read and set the weights of a runbook's weighted records, on Route53 or Cloud DNS.

provider.py is what every provider does (and the wait for a change to apply), route53.py and
clouddns.py the two providers, activities.py the activities the worker registers.

The twin builds its DNS emulators' seeding on the providers; until it stops, their names
stay importable from here.
"""

from activities.dns.clouddns import CloudDnsProvider, clouddns_client, managed_zone_name
from activities.dns.route53 import Route53Provider

__all__ = ["CloudDnsProvider", "Route53Provider", "clouddns_client", "managed_zone_name"]
