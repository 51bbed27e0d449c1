"""Sales: leads, deals through a pipeline, products, quotes, orders, targets."""

from hooks import Plugin

PLUGIN = Plugin(
    name="sales",
    title="Sales",
    version="0.1.0",
    description="Deals through a pipeline, products, quotes, orders and targets.",
    hooks_api="1.0",
)
