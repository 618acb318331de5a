"""Making the language model smaller: re-quantize and prune it (``run``), measure each variant
(``evaluate``), and choose among the installed variants at start (``variants``).

A workstation's job (``harken models optimize``, the ``optimize`` extra); the device itself
imports only ``variants``, which needs nothing beyond the model store.
"""
