"""Service: requests, complaints, SLAs, portal, installed equipment and satisfaction."""

from hooks import Plugin

PLUGIN = Plugin(
    name="service",
    title="Service",
    version="0.1.0",
    description="Requests, complaints, SLAs, portal, installed equipment and satisfaction.",
    hooks_api="1.0",
)
