from drpilot.cli import app

app(prog_name="drpilot")
