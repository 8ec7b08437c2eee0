"""What the tests share and no test module holds: the Temporal harness, the simulated world,
the twin started for a test, and the paths and runbooks they run on. Fixtures stay in the
conftest.py files, which import from here; no test module imports another."""
