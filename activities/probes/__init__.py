"""HTTP probes of a region: warm-up, the health gate, and traffic analysis for a shift step.

activities.py holds the activities and where they dial; warmup.py, gate.py and analysis.py
what each does; sending.py the requests they send; prometheus.py the PromQL client (also a
drill's); exposition.py the /metrics text parser; clock.py a rehearsal's time.
"""
