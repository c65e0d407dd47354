"""The live camera-pair pipeline: sources, detection, tracking, cross-camera matching,
gallery, events and the annotated view. Models are opened through :mod:`deen.backends`."""
