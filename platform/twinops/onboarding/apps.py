"""The onboarding app: a line and its history, together or not at all (above lines and telemetry, which it joins)."""

from django.apps import AppConfig


class OnboardingConfig(AppConfig):
    name = "twinops.onboarding"
    label = "onboarding"
