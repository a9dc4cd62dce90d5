"""Models, always local: the spec registry (``registry``), the sentence encoder
(``encoders``) and the tiny test model builder (``tiny``).

Import submodules directly; ``resolve_model`` is re-exported because everything needs it.
"""

from rayalign.models.registry import ModelResolutionError, ResolvedModel, resolve_model

__all__ = ["ModelResolutionError", "ResolvedModel", "resolve_model"]
