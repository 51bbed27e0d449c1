"""Reports: reports, dashboards, forecasts and customer-value analysis."""

from hooks import Plugin

PLUGIN = Plugin(
    name="reports",
    title="Reports",
    version="0.1.0",
    description="Reports, dashboards, forecasts and customer-value analysis.",
    hooks_api="1.0",
)
