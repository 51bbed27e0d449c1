"""Errors that stop the application at start with one clear line."""


class MosaicStartupError(Exception):
    """A misconfiguration found while building the app. ``str(err)`` is the
    single line the CLI prints; the process exits non-zero."""


class ConfigError(MosaicStartupError):
    """A bad configuration value; the message names the key."""


class PluginError(MosaicStartupError):
    """A plugin that cannot be enabled; the message names the plugin."""

    def __init__(self, plugin: str, message: str):
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}")
