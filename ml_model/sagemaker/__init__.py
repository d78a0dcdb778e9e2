"""SageMaker: the container entry point, a local endpoint speaking the runtime API, deploy."""

from ml_model.sagemaker.deploy import Deployment, deploy, inference_code, package_model
from ml_model.sagemaker.inference import (
    InferenceRequest,
    Prediction,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
)
from ml_model.sagemaker.serve import LocalEndpoint

__all__ = [
    "Deployment",
    "InferenceRequest",
    "LocalEndpoint",
    "Prediction",
    "deploy",
    "inference_code",
    "input_fn",
    "model_fn",
    "output_fn",
    "package_model",
    "predict_fn",
]
