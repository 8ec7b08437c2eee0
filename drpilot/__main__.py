from drpilot.cli.main import run

run(prog_name="drpilot")
