"""Test-suite plugins: fixtures shared across tests/ live in tests/fixtures/.

The repo root is on sys.path through pyproject's ``[tool.pytest.ini_options] pythonpath``.
"""

pytest_plugins = ["tests.fixtures.s3_server", "tests.fixtures.mini", "tests.fixtures.ray_local", "tests.fixtures.threads"]
