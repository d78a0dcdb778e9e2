"""Training, model artifacts and scorers (local scikit-learn or a SageMaker endpoint)."""
