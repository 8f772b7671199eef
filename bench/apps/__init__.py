"""The systems under test of bench/throughput.py, one module each, served by gunicorn (1 sync worker).

All of them read the same settings from the environment (see :mod:`apps.common`), so the load generator
can send every one of them the same signed pushes.
"""
