"""Root pytest configuration: doctests run over the packages, except the Faust app module."""

collect_ignore = ["streams/worker/app.py", "streams/cli.py", "streams/tools/demo.py"]
