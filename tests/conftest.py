"""Test-wide settings: hypothesis without per-example deadlines (a loaded 2-core CI machine
makes wall-clock deadlines flaky; the properties themselves are what the tests check)."""

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile('hashpilot', deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile('hashpilot')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """item.rep_setup / rep_call / rep_teardown: fixtures can tell a failed test (and then
    print the logs that explain it)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, 'rep_' + rep.when, rep)
