"""Root pytest configuration: doctests run over the packages, except the Faust app module."""

collect_ignore = ["streams/app.py", "streams/cli.py", "streams/demo.py"]
