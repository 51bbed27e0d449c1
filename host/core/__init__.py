"""The core customer record: contacts, interactions, tasks and what hangs on
them. Import submodules directly."""
