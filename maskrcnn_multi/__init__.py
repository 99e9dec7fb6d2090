"""maskrcnn_multi: Faster / Mask R-CNN whose model code never names a device.

The layers, each importing only from those on its left (docs/ARCHITECTURE.md):
config -> backends -> ops -> structures -> modeling -> data / engine / evaluation -> tools.
"""

__version__ = "0.1.0"
