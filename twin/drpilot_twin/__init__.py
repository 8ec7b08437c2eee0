"""The sandbox twin: a test double of a runbook's world on 127.0.0.1 (Kubernetes API,
S3 and Route53 through moto, Cloud DNS, Velero, model servers, users sending requests, a
Temporal dev server). A distribution of its own (drpilot-twin) that production never
installs: it may use drpilot's runbook model, never the provider code it stands in for."""
