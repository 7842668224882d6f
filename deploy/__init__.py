"""Shipping NeuroQuant to a device: the edge requirements, the device bundle and its start-time check.

Standard library only (plus the project's torch-free ``backends.manifest``/``backends.profiles``), so the
bundle's own copy of ``deploy.verify`` runs with whatever ``python3`` a device has, before anything is
installed. ``install_edge.sh`` is the one edge install that both the bundle's ``run.sh`` and the Dockerfile's
edge stage run.
"""
