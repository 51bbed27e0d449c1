"""Access control for the host and every plugin: users, roles, permissions,
record scope, sessions and tokens, audit. Import submodules directly."""
