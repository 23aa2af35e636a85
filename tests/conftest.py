"""Test-wide settings: hypothesis without per-example deadlines (a loaded 2-core CI machine
makes wall-clock deadlines flaky; the properties themselves are what the tests check)."""

from hypothesis import HealthCheck, settings

settings.register_profile('hashpilot', deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile('hashpilot')
