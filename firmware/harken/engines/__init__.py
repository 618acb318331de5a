"""Thin adapters around the engines. Each has a ``load(settings, data_dir)`` factory.

They are imported only inside worker processes (and by the raw-engine bench),
never by the supervisor or the fleet tools.
"""
