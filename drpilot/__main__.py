from drpilot.cli import run

run(prog_name="drpilot")
