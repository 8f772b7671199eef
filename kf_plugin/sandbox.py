"""Deprecated: the WeChat API sandbox moved to :mod:`kf_plugin.testing.sandbox`.

``from kf_plugin.sandbox import Sandbox`` still works and warns; write
``from kf_plugin.testing import Sandbox`` (or ``from kf_plugin.testing.sandbox import ...``).
The sandbox's modules (``kf_plugin.sandbox.endpoints`` and the like) are only under the new path.
"""
import warnings

from .testing.sandbox import DEFAULT_QUOTAS, ApiError, Call, Faults, Sandbox, SandboxServer

__all__ = ["Sandbox", "SandboxServer", "ApiError", "Call", "Faults", "DEFAULT_QUOTAS"]

# stacklevel 2 names the importing line: the warnings module skips the import machinery's own frames.
warnings.warn("kf_plugin.sandbox is deprecated and will be removed: import from kf_plugin.testing.sandbox "
              "(e.g. `from kf_plugin.testing import Sandbox`)", DeprecationWarning, stacklevel=2)
