"""SageMaker: the container entry point, a local endpoint speaking the runtime API, deploy.

The names from `deploy` and `serve` load on first use (PEP 562), so that
`python -m ml_model.sagemaker.serve` (or `.deploy`) does not import its own module twice: once
as part of this package and once as `__main__`. `ml_model.sagemaker.deploy` is the module; the
function is `ml_model.sagemaker.deploy.deploy`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ml_model.sagemaker.inference import (
    InferenceRequest,
    Prediction,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
)

if TYPE_CHECKING:
    from ml_model.sagemaker.deploy import Deployment, inference_code, package_model
    from ml_model.sagemaker.serve import LocalEndpoint

_LAZY = {
    "Deployment": "ml_model.sagemaker.deploy",
    "inference_code": "ml_model.sagemaker.deploy",
    "package_model": "ml_model.sagemaker.deploy",
    "LocalEndpoint": "ml_model.sagemaker.serve",
}

__all__ = [
    "Deployment",
    "InferenceRequest",
    "LocalEndpoint",
    "Prediction",
    "inference_code",
    "input_fn",
    "model_fn",
    "output_fn",
    "package_model",
    "predict_fn",
]


def __getattr__(name: str) -> Any:
    if name in ("deploy", "serve"):
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
