"""DNS: read and set the weights of a runbook's weighted records, on Route53 or Cloud DNS.

provider.py is what every provider does (and the wait for a change to apply), route53.py and
clouddns.py the two providers, activities.py the activities the worker registers.
"""
