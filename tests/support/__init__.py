"""Test support: helpers shared by test folders and benches; no tests here."""
