"""Marketing: segments, campaigns, e-mail, web forms, events and greetings."""

from hooks import Plugin

PLUGIN = Plugin(
    name="marketing",
    title="Marketing",
    version="0.1.0",
    description="Segments, campaigns, e-mail, web forms, events and greetings.",
    hooks_api="1.0",
)
